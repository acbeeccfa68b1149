"""File tools confined to a workspace: read_file, write_file and list_files (paths that leave it are refused)."""

import os
import stat
from pathlib import Path

from baobab.tools.tool import Tool, ToolError, tool
from baobab.tools.workspace import open_confined, replace_confined
from baobab.tools.workspace import workspace as make_workspace


def read_file(workspace: str | Path | None = None, max_bytes: int = 1_000_000) -> Tool:
    """A `read_file(path)` tool reading text from the workspace (at most `max_bytes`).

    >>> read_file("/tmp/ws").run_sync({"path": "../etc/passwd"}).content  # doctest: +SKIP
    "'../etc/passwd' is outside the workspace"
    """
    root = make_workspace(workspace)

    @tool(name="read_file")
    def read(path: str) -> str:
        """Read a text file from the workspace.

        Args:
            path: the file, relative to the workspace.
        """
        try:
            fd = open_confined(root, path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
        except (FileNotFoundError, NotADirectoryError):
            raise ToolError(f"{path!r} does not exist") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ToolError(f"{path!r} is not a file")
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(max_bytes + 1)
        text = data[:max_bytes].decode(errors="replace")
        return text if len(data) <= max_bytes else f"{text}\n... [cut: the file is larger than {max_bytes} bytes]"

    return read


def write_file(workspace: str | Path | None = None, max_bytes: int = 1_000_000) -> Tool:
    """A `write_file(path, content)` tool writing text into the workspace (creating folders, at most `max_bytes`).

    >>> write_file("/tmp/ws").run_sync({"path": "a.txt", "content": "hi"}).content  # doctest: +SKIP
    'wrote 2 bytes to a.txt'
    """
    root = make_workspace(workspace)

    @tool(name="write_file")
    def write(path: str, content: str) -> str:
        """Write a text file in the workspace, replacing it if it exists.

        Args:
            path: the file, relative to the workspace.
            content: the whole new text of the file.
        """
        data = content.encode()
        if len(data) > max_bytes:
            raise ToolError(f"content is {len(data)} bytes; the limit is {max_bytes}")
        try:
            replace_confined(root, path, data)
        except IsADirectoryError:
            raise ToolError(f"{path!r} is a folder") from None
        except NotADirectoryError:
            raise ToolError(f"a folder on the way to {path!r} is a file") from None
        return f"wrote {len(data)} bytes to {(root / path).resolve().relative_to(root)}"

    return write


def list_files(workspace: str | Path | None = None, max_entries: int = 1000) -> Tool:
    """A `list_files(path=".")` tool listing a workspace folder (folders end in "/", files show their size).

    >>> list_files("/tmp/ws").run_sync({}).content  # doctest: +SKIP
    'a.txt  2 bytes'
    """
    root = make_workspace(workspace)

    @tool(name="list_files")
    def listing(path: str = ".") -> str:
        """List the files and folders in a workspace folder.

        Args:
            path: the folder, relative to the workspace.
        """
        try:
            fd = open_confined(root, path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            raise ToolError(f"{path!r} does not exist") from None
        except NotADirectoryError:
            raise ToolError(f"{path!r} is not a folder") from None
        try:
            with os.scandir(fd) as found:
                entries = sorted(found, key=lambda e: e.name)
            lines = [f"{e.name}/" if e.is_dir() else f"{e.name}  {e.stat(follow_symlinks=False).st_size} bytes"
                     for e in entries[:max_entries]]
        finally:
            os.close(fd)
        if len(entries) > max_entries:
            lines.append(f"... [{len(entries) - max_entries} more entries]")
        return "\n".join(lines) or "(empty folder)"

    return listing


def files(workspace: str | Path | None = None, max_bytes: int = 1_000_000) -> list[Tool]:
    """read_file, write_file and list_files sharing one workspace.

    >>> [t.name for t in files()]
    ['read_file', 'write_file', 'list_files']
    """
    root = make_workspace(workspace)
    return [read_file(root, max_bytes), write_file(root, max_bytes), list_files(root)]
