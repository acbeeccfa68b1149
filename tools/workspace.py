"""The folder a tool may touch: a given directory, or a fresh scratch one; and the check that confines paths to it."""

import atexit
import shutil
import tempfile
from pathlib import Path

from baobab.tools.tool import ToolError


def workspace(path: str | Path | None) -> Path:
    """The resolved workspace folder, created if missing; a new temporary folder (removed at exit) for None.

    >>> workspace(None).is_dir()
    True
    """
    if path is None:
        scratch = tempfile.mkdtemp(prefix="baobab-workspace-")
        atexit.register(shutil.rmtree, scratch, True)
        return Path(scratch)
    folder = Path(path).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def confine(root: Path, path: str) -> Path:
    """`path` (relative to root, or absolute) resolved with its symlinks; a ToolError if it leaves root.

    >>> confine(Path("/srv/ws"), "notes/a.txt")
    PosixPath('/srv/ws/notes/a.txt')
    >>> confine(Path("/srv/ws"), "../etc/passwd")
    Traceback (most recent call last):
    ...
    baobab.tools.tool.ToolError: '../etc/passwd' is outside the workspace
    """
    resolved = (root / path).resolve()
    if resolved != root and root not in resolved.parents:
        raise ToolError(f"{path!r} is outside the workspace")
    return resolved
