"""README.md and every page under docs/ as a user runs them: each Python and bash block runs as written and prints
the lines of the `text` block that follows it, each YAML block is a workflow `baobab validate` accepts, each JSON
block parses; the README's quickstart prints its documented result and its test command is the one `.ci/run` runs.

A block that is not meant to run alone says so in its first line, `# fragment: why` (a running server, a cluster,
an install); `# long: why` runs it in CI's second step (`pytest -m long`). A `text` block is output, a synopsis or
a file that is not a workflow; it never runs."""

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from baobab.agents.config import read_config

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").rglob("*.md"))]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
FRAGMENT = "# fragment"  # the first line of a block that is not meant to run alone (it says why after this)
LONG = "# long"  # the first line of a block that runs in CI's second step (it says why after this)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
RUN = {"python": [sys.executable], "bash": ["bash", "-euo", "pipefail"]}
LANGUAGES = {*RUN, "yaml", "json", "text"}


@dataclass
class Block:
    document: Path
    language: str
    code: str
    line: int  # of its opening fence
    prints: list[str]  # the lines of the `text` block right after it: what it prints, in order

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def header(self) -> str:
        return self.code.split("\n", 1)[0]


def blocks(document: Path) -> list[Block]:
    """A document's code blocks; a `text` block right after another (blank lines between) is its output."""
    text = document.read_text()
    found = list(FENCE.finditer(text))
    out = []
    for i, match in enumerate(found):
        if match.group(1) == "text":
            continue
        after = found[i + 1] if i + 1 < len(found) else None
        follows = after is not None and after.group(1) == "text" and not text[match.end():after.start()].strip()
        prints = [line for line in after.group(2).splitlines() if line.strip()] if follows and after else []
        out.append(Block(document, match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1, prints))
    return out


ALL = [block for document in DOCUMENTS for block in blocks(document)]
QUICKSTART = ALL[0]  # the README's first block
RUNS = [b for b in ALL[1:] if b.language in RUN and not b.header.startswith(FRAGMENT)]
WORKFLOWS = [b for b in ALL if b.language == "yaml" and not b.header.startswith(FRAGMENT)]


def _param(block: Block) -> object:
    return pytest.param(block, id=block.where, marks=[pytest.mark.long] if block.header.startswith(LONG) else [])


def test_every_block_is_in_a_known_language_and_each_fragment_says_why() -> None:
    for block in ALL:
        assert block.language in LANGUAGES, f"{block.where}: a block in {block.language or 'no'} language (" \
            f"{', '.join(sorted(LANGUAGES))}; a synopsis, an output or a file that is not a workflow is text)"
        if block.header.startswith((FRAGMENT, LONG)):
            assert block.header.split(":", 1)[-1].strip() and ":" in block.header, f"{block.where}: say why"
    assert QUICKSTART.document == README and QUICKSTART.language == "bash"
    assert len(RUNS) >= 12 and len(WORKFLOWS) >= 1


@pytest.mark.parametrize("block", [_param(b) for b in RUNS])
def test_a_block_runs_as_written_and_prints_what_its_page_says(block: Block, tmp_path: Path) -> None:
    for folder in ("examples", "benchmarks"):  # the pages' paths are the repository's, as in a checkout
        (tmp_path / folder).symlink_to(ROOT / folder, target_is_directory=True)
    script = tmp_path / f"block.{'py' if block.language == 'python' else 'sh'}"
    script.write_text(block.code)
    out = subprocess.run([*RUN[block.language], str(script)], capture_output=True, text=True, cwd=tmp_path, env=ENV,
                         timeout=1200)
    assert out.returncode == 0, f"{block.where}: {out.stderr[-3000:]}"
    lines = iter(out.stdout.splitlines())
    for expected in block.prints:  # in order; other lines may come between
        assert any(line.rstrip() == expected.rstrip() for line in lines), \
            f"{block.where}: {expected!r} not printed (in order); it printed:\n{out.stdout}"


@pytest.mark.parametrize("block", [_param(b) for b in WORKFLOWS])
def test_a_yaml_block_is_a_valid_workflow(block: Block, tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(block.code)
    read_config(tmp_path / "flow.yaml")  # raises ConfigError, one line per problem


def test_a_json_block_parses() -> None:
    for block in [b for b in ALL if b.language == "json"]:
        json.loads(block.code)  # a JSONDecodeError names the line; the block is found by its text


def test_the_quickstart_is_two_commands_and_the_first_prints_its_documented_result(tmp_path: Path) -> None:
    install_and_run, install_and_test = QUICKSTART.code.strip().splitlines()
    assert install_and_test in (ROOT / ".ci" / "run").read_text()  # CI runs the README's test command
    run = shlex.split(install_and_run.split(" && ")[-1])  # installed here already: the run as written
    assert run[:3] == ["baobab", "run", "examples/analyst.yaml"]
    out = subprocess.run([*run[:2], str(ROOT / run[2]), *run[3:]], capture_output=True, text=True, cwd=tmp_path,
                         env=ENV, timeout=1200)
    assert out.returncode == 0, out.stderr
    assert 'python({"code": "print(17 * 23)"}) -> 391' in out.stdout and 'result: "391"' in out.stdout
