"""The viewer's static files ship in the wheel (package-data), licences included."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_static_file_is_package_data() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["baobab.ui"]
    files = [p.relative_to(ROOT / "ui").as_posix() for p in (ROOT / "ui" / "static").rglob("*") if p.is_file()]
    assert files and [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
    vendor = {p.name for p in (ROOT / "ui" / "static" / "vendor").iterdir()}
    assert {"cytoscape.min.js", "cytoscape-dagre.min.js", "LICENSE.cytoscape", "LICENSE.cytoscape-dagre",
            "LICENSE.dagre"} <= vendor
