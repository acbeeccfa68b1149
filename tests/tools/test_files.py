"""read_file, write_file and list_files stay inside their workspace, symlinks included."""

from pathlib import Path

import pytest

from baobab.tools import Observation, Tool
from baobab.tools.files import files, read_file


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "ws"
    folder.mkdir()
    return folder


@pytest.fixture
def tools(workspace: Path) -> dict[str, Tool]:
    return {t.name: t for t in files(workspace, max_bytes=100)}


def test_write_then_read_then_list(tools: dict[str, Tool], workspace: Path) -> None:
    wrote = tools["write_file"].run_sync({"path": "notes/today.txt", "content": "héllo"})
    assert wrote == Observation(tool="write_file", content="wrote 6 bytes to notes/today.txt")
    assert (workspace / "notes" / "today.txt").read_text() == "héllo"
    assert tools["read_file"].run_sync({"path": "notes/today.txt"}).content == "héllo"
    assert tools["read_file"].run_sync({"path": str(workspace / "notes/today.txt")}).content == "héllo"
    (workspace / "a.txt").write_text("abc")
    assert tools["list_files"].run_sync({}).content == "a.txt  3 bytes\nnotes/"
    assert tools["list_files"].run_sync({"path": "notes"}).content == "today.txt  6 bytes"


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "notes/../../outside.txt"])
def test_paths_outside_the_workspace_are_refused(tools: dict[str, Tool], workspace: Path, path: str) -> None:
    (workspace.parent / "outside.txt").write_text("secret")
    read = tools["read_file"].run_sync({"path": path})
    assert read == Observation(tool="read_file", content=f"{path!r} is outside the workspace", error=True)
    assert tools["write_file"].run_sync({"path": path, "content": "x"}).error
    assert (workspace.parent / "outside.txt").read_text() == "secret"
    assert tools["list_files"].run_sync({"path": ".."}).content == "'..' is outside the workspace"


def test_symlinks_escaping_the_workspace_are_refused(tools: dict[str, Tool], workspace: Path) -> None:
    outside = workspace.parent / "private"
    outside.mkdir()
    (outside / "key.txt").write_text("secret")
    (workspace / "link").symlink_to(outside)
    (workspace / "key-link.txt").symlink_to(outside / "key.txt")
    for obs in (tools["read_file"].run_sync({"path": "key-link.txt"}),
                tools["read_file"].run_sync({"path": "link/key.txt"}),
                tools["write_file"].run_sync({"path": "link/new.txt", "content": "x"}),
                tools["list_files"].run_sync({"path": "link"})):
        assert obs.error and "outside the workspace" in obs.content and "secret" not in obs.content
    assert sorted(p.name for p in outside.iterdir()) == ["key.txt"]


def test_a_symlink_within_the_workspace_is_fine(tools: dict[str, Tool], workspace: Path) -> None:
    (workspace / "real.txt").write_text("data")
    (workspace / "alias.txt").symlink_to(workspace / "real.txt")
    assert tools["read_file"].run_sync({"path": "alias.txt"}).content == "data"


def test_sizes_are_bounded(tools: dict[str, Tool], workspace: Path) -> None:
    (workspace / "big.txt").write_text("x" * 150)
    assert tools["read_file"].run_sync({"path": "big.txt"}).content == "x" * 100 + \
        "\n... [cut: the file is larger than 100 bytes]"
    too_big = tools["write_file"].run_sync({"path": "out.txt", "content": "y" * 101})
    assert too_big == Observation(tool="write_file", content="content is 101 bytes; the limit is 100", error=True)
    assert not (workspace / "out.txt").exists()


def test_missing_files_and_folders_say_so(tools: dict[str, Tool], workspace: Path) -> None:
    (workspace / "folder").mkdir()
    assert tools["read_file"].run_sync({"path": "nope.txt"}).content == "'nope.txt' does not exist"
    assert tools["read_file"].run_sync({"path": "folder"}).content == "'folder' is not a file"
    assert tools["write_file"].run_sync({"path": "folder", "content": ""}).content == "'folder' is a folder"
    assert tools["list_files"].run_sync({"path": "nope"}).content == "'nope' does not exist"
    assert tools["list_files"].run_sync({"path": "folder"}).content == "(empty folder)"


def test_a_new_workspace_folder_is_created(tmp_path: Path) -> None:
    reader = read_file(tmp_path / "new" / "ws")
    assert (tmp_path / "new" / "ws").is_dir()
    assert reader.run_sync({"path": "x"}).content == "'x' does not exist"
