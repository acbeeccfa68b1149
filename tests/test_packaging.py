"""The root-as-package layout: every sub-package ships, and `import baobab` loads nothing heavy."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = {"tests", "benchmarks", "examples", "build", "dist"}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        "baobab." + ".".join(p.parent.relative_to(ROOT).parts)
        for p in ROOT.rglob("__init__.py")
        if p.parent != ROOT and not (set(p.relative_to(ROOT).parts) & NOT_SHIPPED)
        and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    }
    assert folders | {"baobab"} == listed


def test_import_is_lazy_and_exposes_the_api() -> None:
    code = ("import sys, baobab; heavy = [m for m in ('sqlalchemy', 'networkx', 'baobab.graphs') "
            "if m in sys.modules]; print(heavy); print(baobab.Graph.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "baobab.graphs.graph"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    import baobab

    try:
        baobab.Nope  # noqa: B018
    except AttributeError as exc:
        assert "Nope" in str(exc)
    else:
        raise AssertionError("baobab.Nope should not exist")


def test_no_stray_scripts_at_the_root() -> None:
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["__init__.py", "aio.py", "cli.py", "errors.py", "jsonl.py"]
