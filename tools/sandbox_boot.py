"""The python tool's child process: set resource limits, confine the interpreter with an audit hook, run the code.

Run as ``python -I -u sandbox_boot.py MEMORY_BYTES CPU_SECONDS FILE_BYTES NETWORK`` in the workspace, with the
program on stdin. Nothing here imports Baobab: the child must not read the project's files.
"""

import linecache
import os
import resource
import site
import sys
import traceback
from collections.abc import Callable
from typing import Any

REFUSED = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
    "os.chdir",  # a fixed cwd keeps relative paths (and dir_fd tricks) resolving against the workspace
    "resource.setrlimit", "resource.prlimit",  # root could raise its own hard limits
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",  # would reach this hook's closure
})
NETWORK = frozenset({
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.getnameinfo",
})
NO_IMPORT = frozenset({"ctypes", "_ctypes", "_posixsubprocess"})  # raw memory and an unaudited fork_exec
# Events that change the file system: (position of a path that must lie in the workspace, position of its dir_fd)
MUTATING: dict[str, tuple[tuple[int, int | None], ...]] = {
    "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),), "os.rename": ((0, 2), (1, 3)),
    "os.link": ((0, 2), (1, 3)), "os.symlink": ((1, 2),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
    "os.utime": ((0, 3),), "os.truncate": ((0, None),), "os.setxattr": ((0, None),),
    "os.removexattr": ((0, None),), "shutil.rmtree": ((0, 1),),
}
DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def main() -> None:
    """Read the program, limit and confine this process, run the program as ``__main__``."""
    memory, cpu, file_size, network = (int(arg) for arg in sys.argv[1:5])
    code = sys.stdin.read()
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the program's stdin, open for its whole life
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    import _posixsubprocess
    import subprocess  # noqa: F401 - imported now so that later imports of it work without _posixsubprocess

    vars(_posixsubprocess)["fork_exec"] = _refuse_fork_exec
    sys.addaudithook(_hook(os.path.realpath(os.getcwd()), network=bool(network)))
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    linecache.cache["<code>"] = (len(code), None, code.splitlines(True), "<code>")  # tracebacks show the lines
    try:
        exec(compile(code, "<code>", "exec"), namespace)
    except SystemExit:
        raise
    except BaseException as exc:
        namespace.clear()  # frees what the program held (after a MemoryError, the report needs memory)
        report = traceback.TracebackException.from_exception(exc)
        link: traceback.TracebackException | None = report
        while link is not None:  # show the program's frames, not this file's (the hook's included)
            link.stack = traceback.StackSummary.from_list([f for f in link.stack if f.filename != __file__])
            link = link.__cause__ or link.__context__
        sys.stderr.write("".join(report.format()))
        sys.exit(1)


def _refuse_fork_exec(*args: Any) -> None:
    raise PermissionError("sandbox: creating processes is not allowed")


def _hook(workspace: str, *, network: bool) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook; what it allows is captured in immutable values that the program cannot reach."""
    prefixes = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages())
    readable = tuple({os.path.realpath(p) for p in (workspace, *prefixes)})
    refused = REFUSED if network else REFUSED | NETWORK
    pid, group = os.getpid(), os.getpgrp()

    def inside(path: Any, roots: tuple[str, ...], dir_fd: Any = None) -> str | None:
        """The resolved path (relative to dir_fd's folder if given) if it lies under one of roots, else None."""
        base = os.readlink(f"/proc/self/fd/{dir_fd}") if isinstance(dir_fd, int) and dir_fd >= 0 else ""
        real = os.path.realpath(os.path.join(base, os.fsdecode(path)))
        return real if any(real == root or real.startswith(root + os.sep) for root in roots) else None

    def check_open(path: Any, mode: Any, flags: Any) -> None:
        if isinstance(path, int):
            return  # an already open descriptor
        writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & WRITE_FLAGS)
        real = os.path.realpath(os.fsdecode(path))
        if real in DEVICES and (not writing or real == "/dev/null"):
            return
        if writing and inside(real, (workspace,)) is None:
            raise PermissionError(f"sandbox: writing {os.fsdecode(path)!r} is not allowed (outside the workspace)")
        if inside(real, readable) is None:
            raise PermissionError(f"sandbox: reading {os.fsdecode(path)!r} is not allowed (outside the workspace)")
        if inside(real, (workspace,)) is None and os.path.isdir(real):
            raise PermissionError(f"sandbox: opening the directory {os.fsdecode(path)!r} is not allowed")

    def check_mutation(event: str, args: tuple[Any, ...]) -> None:
        for path, dir_fd in MUTATING[event]:
            fd = None if dir_fd is None else args[dir_fd]
            if isinstance(args[path], int) or inside(args[path], (workspace,), fd) is None:
                raise PermissionError(f"sandbox: {event} on {args[path]!r} is not allowed (outside the workspace)")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in refused or event.startswith("ctypes."):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and str(args[0]).partition(".")[0] in NO_IMPORT:
            raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            check_open(*args)
        elif event in MUTATING:
            check_mutation(event, args)
        elif event in ("os.listdir", "os.scandir") and not isinstance(args[0], int | None):
            if inside(args[0], readable) is None:
                raise PermissionError(f"sandbox: listing {args[0]!r} is not allowed (outside the workspace)")
        elif (event == "os.kill" and args[0] not in (0, pid)) or (event == "os.killpg" and args[0] != group):
            raise PermissionError("sandbox: signalling other processes is not allowed")

    return hook


if __name__ == "__main__":
    main()
