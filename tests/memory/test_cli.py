"""`baobab memory add|search|show|graph` on a real database with the packaged embedder."""

from pathlib import Path

from typer.testing import CliRunner

from baobab.cli import app


def test_memory_commands(tmp_path: Path) -> None:
    runner, db = CliRunner(), f"sqlite:///{tmp_path / 'm.db'}"
    first = runner.invoke(app, ["memory", "add", "The deploy failed because the disk was full.", "--db", db,
                                "--tag", "ops"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["memory", "add", "The deploy failed: the disk was full again.", "--db", db])
    assert "-> 1 (similar" in second.output
    found = runner.invoke(app, ["memory", "search", "why did the deploy fail", "--db", db, "--k", "1"])
    assert found.exit_code == 0 and "disk was full" in found.output
    shown = runner.invoke(app, ["memory", "show", "1", "--db", db])
    assert "tags: ops" in shown.output and "link 2 -> 1: similar" in shown.output
    cut = runner.invoke(app, ["memory", "add", "The disk filled again.", "--db", db, "--model", "scripted:{\"keywords"])
    assert cut.exit_code == 0, cut.output  # a model that writes no valid JSON: the note is kept, and says so
    shown = runner.invoke(app, ["memory", "show", "3", "--db", db])
    assert '"made_by": "fallback"' in shown.output and "attributes: scripted" in shown.output
    missing = runner.invoke(app, ["memory", "show", "9", "--db", db])
    assert missing.exit_code != 0 and "no note 9" in missing.output
    drawn = runner.invoke(app, ["memory", "graph", "--db", db])
    assert drawn.output.startswith("graph LR") and "n2 -->|similar| n1" in drawn.output
    page = tmp_path / "memory.html"
    assert runner.invoke(app, ["memory", "graph", "--db", db, "--html", str(page)]).exit_code == 0
    assert "The deploy failed because the disk was full." in page.read_text()
