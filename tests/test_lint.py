"""The code bar: ruff clean, and mypy --strict on the package."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    out = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    # mypy finds a package by its folder's name; the checkout's folder may be called anything
    (tmp_path / "baobab").symlink_to(ROOT, target_is_directory=True)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "baobab",
         "--exclude", "baobab/(tests|benchmarks|examples)/"],
        capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
