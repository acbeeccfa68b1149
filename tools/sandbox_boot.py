"""The python tool's child process: set resource limits, confine it in the kernel, add an audit hook, run the code.

Run as ``python -I -u sandbox_boot.py MEMORY_BYTES CPU_SECONDS FILE_BYTES NETWORK USER`` in the workspace, with the
program on stdin. Nothing here imports Baobab: the child must not read the project's files.

The kernel is the boundary: started as root, the child becomes uid and gid USER with no capabilities left; Landlock
(Linux >= 5.13) limits files, TCP and signals; seccomp forbids new processes and what only root or a debugger needs;
native code (cffi, a patched hook) cannot undo any of them. The audit hook refuses the same things first with a clear
message, and alone is what confines the program on a kernel without Landlock (best effort: Python can tamper with it).
"""

import ast
import importlib.machinery
import importlib.util
import linecache
import os
import resource
import secrets
import site
import stat
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

_CTYPES = importlib.machinery.PathFinder.find_spec("_ctypes")
if _CTYPES is not None and _CTYPES.origin is not None:  # an extension module file (not built in)
    # loaded under a name nobody can guess: CPython keeps loaded extensions by (file, name) and hands a kept one
    # out again with no "import" audit event, so under its own name the program could load it past the hook
    _SPEC = importlib.util.spec_from_file_location(f"_{secrets.token_hex(16)}._ctypes", _CTYPES.origin)
    assert _SPEC is not None
    sys.modules["_ctypes"] = importlib.util.module_from_spec(_SPEC)
import ctypes  # noqa: E402 - after the above

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
NO_IMPORT = frozenset({  # raw memory, an unaudited fork_exec, interpreters without this hook, C-API test hooks
    "ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_xxinterpchannels", "_testcapi",
    "_testinternalcapi", "_testmultiphase", "_testsinglephase", "_testbuffer", "_testimportmultiple"})
# Events that change the file system: (position of a path that must lie in the workspace, position of its dir_fd)
MUTATING: dict[str, tuple[tuple[int, int | None], ...]] = {
    "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),), "os.rename": ((0, 2), (1, 3)),
    "os.link": ((0, 2), (1, 3)), "os.symlink": ((1, 2),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
    "os.utime": ((0, 3),), "os.truncate": ((0, None),), "os.setxattr": ((0, None),),
    "os.removexattr": ((0, None),), "shutil.rmtree": ((0, 1),),
}
DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
OPEN_FILES = 1024  # the parent counts what unlinked files the program holds open through /proc/PID/fd
LIBRARIES = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/etc/ld.so.cache")  # what the loader reads for extensions
# Landlock's file rights (uapi/linux/landlock.h); a rule on a file (not a folder) may hold only FILE_RIGHTS
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR, MAKE_CHAR, MAKE_BLOCK, TRUNCATE = 1, 2, 4, 8, 1 << 6, 1 << 11, 1 << 14
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | 1 << 15
# seccomp, per machine: (audit arch, {syscall: action}, {syscall: action} without network). Actions: "clone" for
# threads only; clone3 "enosys" so that threads fall back to clone; "own": signals to this process or its group only;
# io_uring is denied (it opens and connects unseen); "family": sockets of AF_UNIX/INET/INET6 only (no netlink or raw
# packets), which cannot connect, bind, listen or send to an address ("noaddr": asyncio's socketpair still works)
SECCOMP = {"x86_64": (0xC000003E, {56: "clone", 57: "deny", 58: "deny", 59: "deny", 322: "deny", 435: "enosys",
                                   62: "own", 234: "own", 129: "own", 297: "own", 200: "deny", 424: "deny",
                                   425: "deny"},
                      {41: "family", 42: "deny", 49: "deny", 50: "deny", 44: "noaddr", 46: "deny", 307: "deny"}),
           "aarch64": (0xC00000B7, {220: "clone", 221: "deny", 281: "deny", 435: "enosys", 129: "own", 131: "own",
                                    138: "own", 240: "own", 130: "deny", 424: "deny", 425: "deny"},
                       {198: "family", 203: "deny", 200: "deny", 201: "deny", 206: "noaddr", 211: "deny",
                        269: "deny"})}
# Denied too, on top of the privileges dropped: what reads other processes (perf_event_open sampled our parent's
# environment, ptrace, process_vm_*), changes the machine (clock, names, modules, swap, reboot, kexec, accounting,
# quotas, port I/O), enters or makes namespaces and mounts, reaches kernel objects (bpf, keys, the kernel log,
# file handles, userfaultfd, fanotify) or raises limits. (x86_64, aarch64) numbers from the kernel's unistd headers.
PRIVILEGED = {
    "perf_event_open": (298, 241), "bpf": (321, 280), "reboot": (169, 142), "settimeofday": (164, 170),
    "clock_settime": (227, 112), "clock_adjtime": (305, 266), "adjtimex": (159, 171), "sethostname": (170, 161),
    "setdomainname": (171, 162), "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "setrlimit": (160, 164), "keyctl": (250, 219), "add_key": (248, 217),
    "request_key": (249, 218), "syslog": (103, 116), "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106), "swapon": (167, 224),
    "swapoff": (168, 225), "acct": (163, 89), "quotactl": (179, 60), "quotactl_fd": (443, 443),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264), "userfaultfd": (323, 282),
    "fanotify_init": (300, 262), "open_tree": (428, 428), "move_mount": (429, 429), "fsopen": (430, 430),
    "fsconfig": (431, 431), "fsmount": (432, 432), "fspick": (433, 433), "mount_setattr": (442, 442),
    "iopl": (172, None), "ioperm": (173, None),
    "prlimit64": (302, 261)}  # "query" only: no new limit (glibc's getrlimit calls it)


def main() -> None:
    """Read the program, limit and confine this process, run the program as ``__main__``."""
    memory, cpu, file_size, network, user = (int(arg) for arg in sys.argv[1:6])
    code = sys.stdin.read()
    sys.stdin = open(os.devnull)  # noqa: SIM115 - the program's stdin, open for its whole life
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))  # bounds the parent's look at them
    import _posixsubprocess
    import subprocess  # noqa: F401 - imported now so that later imports of it work without _posixsubprocess

    vars(_posixsubprocess)["fork_exec"] = _refuse_fork_exec
    workspace = os.path.realpath(os.getcwd())
    prefixes = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages())
    readable = tuple({os.path.realpath(p) for p in (workspace, *prefixes)})
    confine(workspace, readable, network=bool(network), user=user)
    sys.addaudithook(_hook(workspace, readable, network=bool(network)))
    main = types.ModuleType("__main__")  # `import __main__` must not hand the program this module
    sys.modules["__main__"] = main
    namespace = vars(main)
    namespace["__builtins__"] = __builtins__
    linecache.cache["<code>"] = (len(code), None, code.splitlines(True), "<code>")  # tracebacks show the lines
    try:
        _run(code, namespace)
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


def _run(code: str, namespace: dict[str, Any]) -> None:
    """Run the program; a last line that is an expression is shown as in a notebook (`2**10` prints 1024)."""
    tree = compile(code, "<code>", "exec", ast.PyCF_ONLY_AST)  # not ast.parse: its frame would show in errors
    assert isinstance(tree, ast.Module)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
    exec(compile(tree, "<code>", "exec"), namespace)
    if isinstance(last, ast.Expr):
        value = eval(compile(ast.Expression(last.value), "<code>", "eval"), namespace)
        if value is not None:
            print(repr(value))


def _refuse_fork_exec(*args: Any) -> None:
    raise PermissionError("sandbox: creating processes is not allowed")


def confine(workspace: str, readable: tuple[str, ...], *, network: bool, user: int) -> None:
    """Kernel confinement. Started as root, become uid and gid `user` (see `_become`); then no capabilities
    whatever the uid, no_new_privs, Landlock (read `readable` and the loader's libraries, write only the workspace,
    execute nothing, no TCP unless `network`, no signals or abstract sockets beyond this process) and a seccomp
    filter refusing new processes (threads aside), exec, signals to other processes, io_uring, PRIVILEGED and, unless
    `network`, any socket that could reach an address. ctypes is dropped afterwards: the program cannot import it.

    >>> confine(os.getcwd(), (sys.prefix,), network=False, user=65533)  # doctest: +SKIP
    """
    libc = _libc()
    try:
        root = os.geteuid() == 0
        if root:
            _become(libc, user, workspace, readable)
        _call(libc.prctl, 47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
        header, nothing = (ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)()  # _LINUX_CAPABILITY_VERSION_3
        _call(libc.capset, ctypes.addressof(header), ctypes.addressof(nothing))  # effective, permitted, inheritable
        if not root:  # a parent of our uid, without privileges, counts the files it holds open in /proc/PID/fd
            _call(libc.prctl, 4, 1, 0, 0, 0)  # PR_SET_DUMPABLE (changing capabilities cleared it)
        _call(libc.prctl, 38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: required by both below, and kept by any child
        abi = int(libc.syscall(ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1)))  # Landlock's version
        if abi > 0:
            _landlock(libc.syscall, abi, workspace, readable, network)
        machine = os.uname().machine
        if machine in SECCOMP:
            arch, syscalls, sockets = SECCOMP[machine]
            column = ("x86_64", "aarch64").index(machine)
            privileged = {number: "query" if name == "prlimit64" else "deny"
                          for name, pair in PRIVILEGED.items() if (number := pair[column]) is not None}
            _seccomp(libc.prctl, arch, syscalls | privileged if network else syscalls | privileged | sockets)
    finally:
        for name in [n for n in sys.modules if n == "_ctypes" or n.partition(".")[0] == "ctypes"]:
            del sys.modules[name]


def _libc() -> Any:
    """The C library, through ctypes, with errno kept."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype, libc.prctl.restype = ctypes.c_long, ctypes.c_int
    return libc


def _call(fn: Any, *args: int | bytes | None) -> int:
    """Call C function `fn` (ints passed as C longs); an OSError if it fails."""
    result = int(fn(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args)))
    if result < 0:
        raise OSError(ctypes.get_errno(), f"sandbox: confining the process failed ({fn.__name__})")
    return result


def _become(libc: Any, user: int, workspace: str, readable: tuple[str, ...]) -> None:
    """Root no more: empty the capability bounding set, then take uid and gid `user` with no groups (the kernel
    clears the capabilities). The parent gave it the workspace; a folder on the way to the workspace or to Python
    that `user` may not pass (pyenv installs Python under /root, mode 700; pytest's folders are 700) is opened for
    it in a mount namespace of our own (`_open_way`)."""
    namespaced = False
    for path in (workspace, *readable):
        parts = path.split(os.sep)
        for ancestor in (os.sep.join(parts[:i]) for i in range(2, len(parts))):
            if _passable(ancestor, user):
                continue
            if not namespaced:
                _call(libc.unshare, 0x00020000)  # CLONE_NEWNS (needs CAP_SYS_ADMIN: a clear error without it)
                _call(libc.mount, None, b"/", None, 0x4000 | 0x40000, None)  # MS_REC | MS_PRIVATE: none reach the host
                namespaced = True
            _open_way(libc, ancestor)
    if namespaced:
        os.chdir(workspace)  # the same folder, reached through the new mounts
    with open("/proc/sys/kernel/cap_last_cap") as last:
        for capability in range(int(last.read()) + 1):
            _call(libc.prctl, 24, capability, 0, 0, 0)  # PR_CAPBSET_DROP
    os.setgroups([])
    os.setresgid(user, user, user)
    os.setresuid(user, user, user)


def _open_way(libc: Any, folder: str) -> None:
    """Cover `folder` with a tmpfs anyone may pass, holding the same entries: each bound back in, each symlink made
    again. Only its search bit changes; what lies in it keeps its owner, mode and Landlock rules."""
    entries: list[tuple[str, str | None, int]] = []  # name, symlink target, descriptor of anything else
    try:
        with os.scandir(folder) as listing:
            for entry in listing:
                link = os.readlink(entry.path) if entry.is_symlink() else None
                entries.append((entry.name, link, -1 if link else os.open(entry.path, os.O_PATH | os.O_NOFOLLOW)))
        _call(libc.mount, b"tmpfs", os.fsencode(folder), b"tmpfs", 2 | 4 | 8, b"mode=755")  # nosuid, nodev, noexec
        for name, link, fd in entries:
            path = os.path.join(folder, name)
            if link is not None:
                os.symlink(link, path)
                continue
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.mkdir(path)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0))  # a file to mount on
            _call(libc.mount, os.fsencode(f"/proc/self/fd/{fd}"), os.fsencode(path), None, 4096 | 0x4000, None)
    finally:
        for _, _, fd in entries:
            if fd >= 0:
                os.close(fd)


def _passable(folder: str, user: int) -> bool:
    """Whether uid and gid `user`, with no other group, may pass through `folder` (its search bit)."""
    info = os.stat(folder)
    shift = 6 if info.st_uid == user else 3 if info.st_gid == user else 0
    return bool(info.st_mode >> shift & 1)


def _landlock(syscall: Any, abi: int, workspace: str, readable: tuple[str, ...],
              network: bool) -> None:
    """Apply a Landlock ruleset with the rights this kernel's `abi` knows."""
    handled = (1 << (13 + (abi >= 2) + (abi >= 3) + (abi >= 5))) - 1  # REFER (2), TRUNCATE (3), IOCTL_DEV (5)
    net, scoped = (0 if network or abi < 4 else 3), (3 if abi >= 6 else 0)  # TCP bind+connect; sockets+signals
    attr = (ctypes.c_uint64 * 3)(handled, net, scoped)
    ruleset = _call(syscall, 444, ctypes.addressof(attr), 8 if abi < 4 else 16 if abi < 6 else 24, 0)

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    rules = [(workspace, handled & ~(EXECUTE | MAKE_CHAR | MAKE_BLOCK)),
             ("/dev/null", READ_FILE | WRITE_FILE | TRUNCATE),
             *((path, READ_FILE | READ_DIR) for path in (*readable, *LIBRARIES, *DEVICES))]
    try:
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                rule = PathBeneath(rights & handled & (-1 if is_dir else FILE_RIGHTS), fd)
                _call(syscall, 445, ruleset, 1, ctypes.addressof(rule), 0)  # LANDLOCK_RULE_PATH_BENEATH
            finally:
                os.close(fd)
        _call(syscall, 446, ruleset, 0)
    finally:
        os.close(ruleset)


def _seccomp(prctl: Any, arch: int, syscalls: dict[int, str]) -> None:
    """A seccomp filter: each listed syscall gets its action (see SECCOMP); so does any call through another
    machine's ABI ("deny")."""
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, errno_ = 0x7FFF0000, 0x00050000
    Op = tuple[int, int | str, int | str, int]  # code, jump if true, jump if false (labels or 0: next), k

    def one_of(offset: int, values: tuple[int, ...]) -> list[Op]:
        return [(load, 0, 0, offset), *((jeq, "allow", 0 if v != values[-1] else "deny", v) for v in values)]

    def zero(arg: int) -> list[Op]:  # allow only if the argument is 0 (NULL): both halves
        return [(load, 0, 0, 16 + 8 * arg), (jeq, 0, "deny", 0), (load, 0, 0, 20 + 8 * arg), (jeq, "allow", "deny", 0)]

    blocks: dict[str, list[Op]] = {  # seccomp_data: nr at 0, arch at 4, args[i] at 16 + 8 i (low half first)
        "clone": [(load, 0, 0, 16), (jset, "allow", "deny", 0x10000)],  # CLONE_THREAD
        "own": one_of(16, (os.getpid(), -os.getpgrp() & 0xFFFFFFFF, 0)),
        "family": one_of(16, (1, 2, 10)),  # AF_UNIX, AF_INET, AF_INET6
        "noaddr": zero(4),  # sendto's address
        "query": zero(2)}  # prlimit64's new limit
    program: list[Op] = [(load, 0, 0, 4), (jeq, 0, "deny", arch), (load, 0, 0, 0),
                         (jge, "deny", 0, 0x40000000),  # x32 calls on x86_64
                         *((jeq, action, 0, number) for number, action in syscalls.items()), (ret, 0, 0, allow)]
    labels: dict[str, int] = {}
    for name in sorted(blocks.keys() & set(syscalls.values())):  # jumps go forward only: blocks after the dispatch
        labels[name] = len(program)
        program += blocks[name]
    labels |= {"allow": len(program), "deny": len(program) + 1, "enosys": len(program) + 2}
    program += [(ret, 0, 0, allow), (ret, 0, 0, errno_ | 1), (ret, 0, 0, errno_ | 38)]  # EPERM, ENOSYS

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    def jump(at: int, to: int | str) -> int:
        offset = labels[to] - at - 1 if isinstance(to, str) else to
        if not 0 <= offset < 256:  # a jump is one byte: a longer one would silently land elsewhere
            raise ValueError(f"sandbox: the seccomp filter is too long ({len(program)} instructions)")
        return offset

    filters = (Filter * len(program))(*(Filter(code, jump(i, jt), jump(i, jf), k)
                                        for i, (code, jt, jf, k) in enumerate(program)))

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.c_void_p)]

    fprog = Program(len(program), ctypes.addressof(filters))
    _call(prctl, 22, 2, ctypes.addressof(fprog), 0, 0)  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def _hook(workspace: str, readable: tuple[str, ...], *, network: bool) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook. What it refuses outright lives in its closure as frozensets and is tested with str methods
    only, so a program that rebinds module globals or builtins cannot widen it."""
    refused = REFUSED if network else REFUSED | NETWORK
    no_import, mutating, devices, write_flags = NO_IMPORT, dict(MUTATING), DEVICES, WRITE_FLAGS
    pid, group = os.getpid(), os.getpgrp()

    def inside(path: Any, roots: tuple[str, ...], dir_fd: Any = None) -> str | None:
        """The resolved path (relative to dir_fd's folder if given) if it lies under one of roots, else None."""
        base = os.readlink(f"/proc/self/fd/{dir_fd}") if isinstance(dir_fd, int) and dir_fd >= 0 else ""
        real = os.path.realpath(os.path.join(base, os.fsdecode(path)))
        return real if any(real == root or real.startswith(root + os.sep) for root in roots) else None

    def check_open(path: Any, mode: Any, flags: Any) -> None:
        if isinstance(path, int):
            return  # an already open descriptor
        writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & write_flags)
        real = os.path.realpath(os.fsdecode(path))
        if real in devices and (not writing or real == "/dev/null"):
            return
        if writing and inside(real, (workspace,)) is None:
            raise PermissionError(f"sandbox: writing {os.fsdecode(path)!r} is not allowed (outside the workspace)")
        if inside(real, readable) is None:
            raise PermissionError(f"sandbox: reading {os.fsdecode(path)!r} is not allowed (outside the workspace)")
        if inside(real, (workspace,)) is None and os.path.isdir(real):
            raise PermissionError(f"sandbox: opening the directory {os.fsdecode(path)!r} is not allowed")

    def check_mutation(event: str, args: tuple[Any, ...]) -> None:
        for path, dir_fd in mutating[event]:
            fd = None if dir_fd is None else args[dir_fd]
            if isinstance(args[path], int) or inside(args[path], (workspace,), fd) is None:
                raise PermissionError(f"sandbox: {event} on {args[path]!r} is not allowed (outside the workspace)")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in refused or event.startswith("ctypes."):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and any(part in no_import for part in args[0].split(".")):  # "x._ctypes" loads _ctypes
            raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            check_open(*args)
        elif event in mutating:
            check_mutation(event, args)
        elif event in ("os.listdir", "os.scandir") and not isinstance(args[0], int | None):
            if inside(args[0], readable) is None:
                raise PermissionError(f"sandbox: listing {args[0]!r} is not allowed (outside the workspace)")
        elif (event == "os.kill" and args[0] not in (0, pid)) or (event == "os.killpg" and args[0] != group):
            raise PermissionError("sandbox: signalling other processes is not allowed")

    return hook


if __name__ == "__main__":
    main()
