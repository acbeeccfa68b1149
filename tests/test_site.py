"""The documentation site builds with `mkdocs build --strict`: every page in the nav, every link and anchor
resolves, the API reference renders from the docstrings, and the generated YAML and command pages match the
code."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                         timeout=300)
    assert out.returncode == 0, out.stderr[-5000:]
    yaml_page = (tmp_path / "site" / "reference" / "yaml" / "index.html").read_text()
    assert "max_model_calls" in yaml_page and "choice_points" in yaml_page  # the models' fields, from the code
    assert "--resume" in (tmp_path / "site" / "reference" / "cli" / "run" / "index.html").read_text()
    assert "checkpointer" in (tmp_path / "site" / "reference" / "api" / "graphs" / "index.html").read_text()
