"""README.md as a user runs it: every Python block runs as written (a fragment says so in its first line) and
prints the lines of the `text` block that follows it; the quickstart's first command prints its documented result
and its second is the command `.ci/run` runs."""

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
FRAGMENT = "# fragment"  # the first line of a block that is not meant to run alone (it says why after this)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


@dataclass
class Block:
    language: str
    code: str
    line: int  # of its opening fence in README.md
    prints: list[str]  # the lines of the `text` block right after it: what it prints, in order


def readme_blocks() -> list[Block]:
    """The README's code blocks; a `text` block right after a Python block (blank lines between) is its output."""
    text = README.read_text()
    found = list(FENCE.finditer(text))
    blocks = []
    for i, match in enumerate(found):
        if match.group(1) == "text":
            continue
        after = found[i + 1] if i + 1 < len(found) else None
        follows = after is not None and after.group(1) == "text" and not text[match.end():after.start()].strip()
        prints = [line for line in after.group(2).splitlines() if line.strip()] if follows and after else []
        blocks.append(Block(match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1, prints))
    return blocks


PYTHON = [b for b in readme_blocks() if b.language == "python" and not b.code.startswith(FRAGMENT)]


def test_every_block_is_python_bash_or_a_declared_fragment() -> None:
    for block in readme_blocks():
        assert block.language in ("python", "bash"), f"README.md:{block.line}: a block in {block.language or 'no'} " \
            "language (python and bash run; a synopsis or an output is a text block)"
    fragments = [b for b in readme_blocks() if b.code.startswith(FRAGMENT)]
    assert all(b.code.split("\n", 1)[0].removeprefix(FRAGMENT).strip(": ") for b in fragments)  # each says why
    assert len(PYTHON) >= 4  # agents, a graph, models, memory


@pytest.mark.parametrize("block", PYTHON, ids=[f"line{b.line}" for b in PYTHON])
def test_a_python_block_runs_as_written_and_prints_what_the_readme_says(block: Block, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(block.code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=ENV,
                         timeout=1200)
    assert out.returncode == 0, f"README.md:{block.line}: {out.stderr[-3000:]}"
    lines = iter(out.stdout.splitlines())
    for expected in block.prints:  # in order; other lines may come between
        assert any(line.rstrip() == expected.rstrip() for line in lines), \
            f"README.md:{block.line}: {expected!r} not printed (in order); it printed:\n{out.stdout}"


def test_the_quickstart_is_two_commands_and_the_first_prints_its_documented_result(tmp_path: Path) -> None:
    quickstart = next(b for b in readme_blocks() if b.language == "bash")
    install_and_run, install_and_test = quickstart.code.strip().splitlines()
    assert install_and_test in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command
    run = shlex.split(install_and_run.split(" && ")[-1])  # installed here already: the run as written
    assert run[:3] == ["baobab", "run", "examples/analyst.yaml"]
    out = subprocess.run([*run[:2], str(ROOT / run[2]), *run[3:]], capture_output=True, text=True, cwd=tmp_path,
                         env=ENV, timeout=1200)
    assert out.returncode == 0, out.stderr
    assert 'python({"code": "print(17 * 23)"}) -> 391' in out.stdout and 'result: "391"' in out.stdout
