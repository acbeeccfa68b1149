"""The folder a tool may touch: a given directory, or a fresh scratch one; the check that confines paths to it, and
an open that cannot be redirected out of it by a symlink swapped in between the check and the use."""

import atexit
import contextlib
import errno
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from baobab.tools.tool import ToolError

MAX_PATH, MAX_DEPTH = 4096, 64  # Linux's PATH_MAX; folders deep enough for any project, few enough to bound a walk
BLOCK = 4096  # the least an entry counts for in disk_usage: a name and an inode cost space too
UNMEASURED = 2**50  # what a folder that cannot be walked counts for: more than any quota, so nothing hides in it


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


def open_confined(root: Path, path: str, flags: int, *, parents: bool = False) -> int:
    """A descriptor for `path` in root, opened one component at a time without following symlinks.

    `path` is first resolved and checked (`confine`, so links inside the workspace work); the walk then
    refuses any symlink, so one swapped in after the check cannot send the open elsewhere. `parents`
    creates missing folders on the way. The caller closes the descriptor.

    >>> os.close(open_confined(workspace(None), "notes/a.txt", os.O_WRONLY | os.O_CREAT, parents=True))
    """
    folder, name = _folder_of(root, path, parents)
    if name is None:
        return folder
    try:
        return os.open(name, flags | os.O_NOFOLLOW, 0o644, dir_fd=folder)
    except OSError as exc:
        raise _swapped(path) if exc.errno == errno.ELOOP else exc from None
    finally:
        os.close(folder)


def replace_confined(root: Path, path: str, data: bytes) -> None:
    """Write `data` to `path` in root as a new file renamed over the old one (folders created on the way).

    A hard link to a file elsewhere is replaced, never written through, and no reader sees half a file.

    >>> replace_confined(workspace(None), "notes/a.txt", b"hi")
    """
    folder, name = _folder_of(root, path, parents=True)
    try:
        if name is None:
            raise IsADirectoryError(errno.EISDIR, "the workspace itself", path)
        temp = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=folder)
        try:
            with contextlib.suppress(FileNotFoundError):  # keep the permissions of the file replaced
                os.fchmod(fd, stat.S_IMODE(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.rename(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder)
            raise
    finally:
        os.close(folder)


def disk_usage(root: Path, owner: tuple[int, int] | None = None) -> int:
    """The bytes the workspace takes on disk: blocks allocated, each entry counted as at least BLOCK (so a quota
    of Q bytes also bounds the entries, and this walk, to Q / 4096). Walked through descriptors, following no
    symlink; a folder deeper than MAX_DEPTH, or that cannot be read, counts as UNMEASURED.

    With `owner` (uid, gid), each entry is also given to it on the way: the python tool's child runs as that uid
    when we are root. A file with several hard links is left alone: another name may lie outside the workspace.

    >>> disk_usage(workspace(None))
    0
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if owner is not None and os.fstat(fd)[4:6] != owner:  # st_uid, st_gid
            os.fchown(fd, *owner)
        return _usage(fd, 1, owner)
    finally:
        os.close(fd)


def _usage(folder: int, depth: int, owner: tuple[int, int] | None) -> int:
    """disk_usage of the folder open as `folder`, `depth` folders below the workspace."""
    total = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                if owner is not None and (info.st_uid, info.st_gid) != owner and (
                        stat.S_ISDIR(info.st_mode) or info.st_nlink == 1):
                    os.chown(entry.name, *owner, dir_fd=folder, follow_symlinks=False)
                total += max(info.st_blocks * 512, BLOCK)
                if not stat.S_ISDIR(info.st_mode):
                    continue
                if depth >= MAX_DEPTH:
                    total += UNMEASURED
                    continue
                inner = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EPERM):
                    total += UNMEASURED  # (a folder the program closed to a parent that is not root)
                elif exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    raise
                continue  # removed or replaced by a running program while we walked: what is there now counts next time
            try:
                total += _usage(inner, depth + 1, owner)
            finally:
                os.close(inner)
    return total


def _folder_of(root: Path, path: str, parents: bool) -> tuple[int, str | None]:
    """A descriptor of the folder holding `path` (walked without following symlinks) and the last name in it
    (None for the workspace itself, whose descriptor is returned). The caller closes the descriptor."""
    if len(path) > MAX_PATH:
        raise ToolError(f"the path is {len(path)} characters long; the limit is {MAX_PATH}")
    if "\0" in path:  # the kernel cannot take one: Python would raise a bare ValueError
        raise ToolError(f"{path!r} contains a NUL byte")
    parts = confine(root, path).relative_to(root).parts
    if len(parts) > MAX_DEPTH:
        raise ToolError(f"{path!r} is {len(parts)} folders deep; the limit is {MAX_DEPTH}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            if parents:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
    except OSError as exc:
        os.close(fd)
        raise _swapped(path) if exc.errno == errno.ELOOP else exc from None
    return fd, (parts[-1] if parts else None)


def _swapped(path: str) -> ToolError:
    return ToolError(f"{path!r} changed while it was being opened (a symlink appeared); not opened")
