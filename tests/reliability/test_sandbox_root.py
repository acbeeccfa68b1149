"""Red team, second pass (issue 26, findings 1-3): the python tool's sandbox holds when we are root.

As root (CI, many containers) the child must not keep root's uid or capabilities: it runs as its own uid with no
capabilities, no_new_privs and a seccomp filter that refuses what only root or a debugger needs. Its writes are
bounded per call and per workspace. Each attack is a real run of the tool, or of the child's own confinement with
ctypes loaded before it (the program itself cannot load ctypes); the same attacks run as an ordinary user too.
"""

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from baobab.tools import Tool
from baobab.tools.files import files
from baobab.tools.python import BOOT, SANDBOX_ID, python
from baobab.tools.workspace import disk_usage

ROOT = os.geteuid() == 0
EPERM = 1
CFFI = pytest.mark.skipif(importlib.util.find_spec("cffi") is None, reason="cffi is not installed: the native-code "
                                                                           "attacks need it")
MACHINE = platform.machine()
COLUMN = {"x86_64": 0, "aarch64": 1}.get(MACHINE)
NATIVE = pytest.mark.skipif(COLUMN is None, reason=f"syscall numbers are known for x86_64 and aarch64, not {MACHINE}")

# What the child must not do: (x86_64, aarch64) numbers from the kernel's unistd headers, and arguments that are
# harmless even where a call were allowed (NULL pointers, bad magic, queries). Strings name buffers the probe fills.
PROBES: dict[str, tuple[tuple[int, int | None], list[int | str]]] = {
    "perf_event_open": ((298, 241), ["PERF", "PPID", -1, -1, 0]),  # finding 1: counting the parent
    "bpf": ((321, 280), [0, "BPF", 64]),  # BPF_MAP_CREATE of a one-entry array
    "reboot": ((169, 142), [0, 0, 0, 0]), "settimeofday": ((164, 170), [0, 0]),
    "clock_settime": ((227, 112), [0, 0]), "clock_adjtime": ((305, 266), [0, 0]), "adjtimex": ((159, 171), ["ZERO"]),
    "sethostname": ((170, 161), [0, 1000]), "setdomainname": ((171, 162), [0, 1000]),
    "unshare": ((272, 97), [0x10000000 | 0x40000000 | 0x00020000]),  # CLONE_NEWUSER | NEWNET | NEWNS
    "setns": ((308, 268), [-1, 0]), "mount": ((165, 40), [0, 0, 0, 0, 0]), "umount2": ((166, 39), [0, 0]),
    "pivot_root": ((155, 41), [0, 0]), "chroot": ((161, 51), [0]), "ptrace": ((101, 117), [3, "PPID", 0, 0]),
    "process_vm_readv": ((310, 270), ["PPID", 0, 0, 0, 0, 0]),
    "process_vm_writev": ((311, 271), ["PPID", 0, 0, 0, 0, 0]),
    "setrlimit": ((160, 164), [7, "RLIMIT"]), "prlimit64": ((302, 261), [0, 7, "RLIMIT", 0]),
    "keyctl": ((250, 219), [0, -3, 0]), "add_key": ((248, 217), [0, 0, 0, 0, 0]),
    "request_key": ((249, 218), [0, 0, 0, 0]), "syslog": ((103, 116), [10, 0, 0]),  # klogctl: the log's size
    "kexec_load": ((246, 104), [0, 0, 0, 0]), "kexec_file_load": ((320, 294), [-1, -1, 0, 0, 0]),
    "init_module": ((175, 105), [0, 0, 0]), "finit_module": ((313, 273), [-1, 0, 0]),
    "delete_module": ((176, 106), [0, 0]), "swapon": ((167, 224), [0, 0]), "swapoff": ((168, 225), [0]),
    "acct": ((163, 89), [1]), "quotactl": ((179, 60), [0, 0, 0, 0]), "quotactl_fd": ((443, 443), [-1, 0, 0, 0]),
    "open_by_handle_at": ((304, 265), [-1, 0, 0]), "name_to_handle_at": ((303, 264), [-100, 0, 0, 0, 0]),
    "userfaultfd": ((323, 282), [0]), "fanotify_init": ((300, 262), [0, 0]), "open_tree": ((428, 428), [-1, 0, 0]),
    "move_mount": ((429, 429), [-1, 0, -1, 0, 0]), "fsopen": ((430, 430), [0, 0]),
    "fsconfig": ((431, 431), [-1, 0, 0, 0, 0]), "fsmount": ((432, 432), [-1, 0, 0]), "fspick": ((433, 433), [-1, 0, 0]),
    "mount_setattr": ((442, 442), [-1, 0, 0, 0, 0]), "iopl": ((172, None), [0]), "ioperm": ((173, None), [0, 0, 0]),
}

# The child's own confinement (sandbox_boot.confine, as the tool's child calls it), with ctypes loaded before it;
# then every probe; then it waits on stdin while the test reads its /proc/PID/status.
HARNESS = """
import ctypes, importlib.util, json, os, resource, struct, sys
spec = importlib.util.spec_from_file_location("sandbox_boot", sys.argv[1])
boot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(boot)
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
workspace, column, probes = os.getcwd(), int(sys.argv[3]), json.loads(sys.argv[4])
readable = tuple({os.path.realpath(p) for p in (workspace, sys.prefix, sys.base_prefix, sys.exec_prefix)})
boot.confine(workspace, readable, network=False, user=int(sys.argv[2]))
buffers = {name: ctypes.create_string_buffer(256) for name in ("PERF", "BPF", "RLIMIT", "ZERO")}
struct.pack_into("IIQ", buffers["PERF"], 0, 1, 128, 0)  # PERF_TYPE_SOFTWARE, size, PERF_COUNT_SW_CPU_CLOCK
struct.pack_into("IIII", buffers["BPF"], 0, 2, 4, 4, 1)  # BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry
struct.pack_into("QQ", buffers["RLIMIT"], 0, 64, 64)
named = {"PPID": os.getppid()} | {name: ctypes.addressof(buffer) for name, buffer in buffers.items()}
def errno_of(number, args):
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(named.get(a, a)) for a in args))
    return 0 if result >= 0 else ctypes.get_errno()
report = {name: errno_of(numbers[column], args) for name, (numbers, args) in probes.items()
          if numbers[column] is not None}
report["getrlimit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # (prlimit64 without a new limit)
report["ids"] = [os.getresuid(), os.getresgid(), os.getgroups()]
print(json.dumps(report), flush=True)
sys.stdin.read()
"""


def status(pid: int) -> dict[str, str]:
    """The fields of /proc/PID/status."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def unprivileged(fields: dict[str, str], uid: int) -> None:
    """The process runs as `uid` (the first of real, effective, saved, fs) with no capabilities and no_new_privs."""
    assert fields["Uid"].split() == [str(uid)] * 4 and fields["Gid"].split() == [str(uid)] * 4, fields["Uid"]
    assert fields["Groups"] == "", fields["Groups"]
    for key in ("CapInh", "CapPrm", "CapEff", "CapAmb") + (("CapBnd",) if ROOT else ()):
        assert int(fields[key], 16) == 0, (key, fields[key])
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    folder = tmp_path / "ws"
    folder.mkdir()
    return folder


@pytest.fixture
def sandbox(ws: Path) -> Tool:
    return python(ws, time_limit=5, memory_mb=256, output_limit=2000)


# ---- findings 1 and 2: privileges ---------------------------------------------------------------------------


@NATIVE
def test_the_childs_confinement_refuses_every_privileged_syscall(ws: Path) -> None:
    disk_usage(ws, (SANDBOX_ID, SANDBOX_ID) if ROOT else None)  # as the tool does before each call
    probes = json.dumps(PROBES)
    harness = subprocess.Popen([sys.executable, "-I", "-c", HARNESS, str(BOOT), str(SANDBOX_ID), str(COLUMN), probes],
                               cwd=ws, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert harness.stdin is not None and harness.stdout is not None
    try:
        report = json.loads(harness.stdout.readline())
        fields = status(harness.pid)
    finally:
        harness.stdin.close()
        harness.wait(5)
    assert harness.returncode == 0
    allowed = {name: code for name, code in report.items() if name in PROBES and code != EPERM}
    assert allowed == {}, allowed  # each refused with EPERM, by seccomp (and, as root before, by the kernel)
    assert report["getrlimit"] > 0  # reading a limit still works: glibc's getrlimit is prlimit64 without a new one
    uid = SANDBOX_ID if ROOT else os.geteuid()
    assert report["ids"][:2] == [[uid] * 3, [SANDBOX_ID if ROOT else os.getegid()] * 3]
    if ROOT:
        unprivileged(fields, uid)


def test_the_tools_child_runs_as_its_own_uid_without_capabilities(ws: Path, sandbox: Tool) -> None:
    code = ("import os, time\nopen('pid', 'w').write(str(os.getpid()))\nend = time.monotonic() + 4\n"
            "while not os.path.exists('go') and time.monotonic() < end: time.sleep(0.01)\nprint(os.getresuid())")
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(sandbox.run_sync, {"code": code})
        deadline = time.monotonic() + 4
        while not (ws / "pid").exists() or not (ws / "pid").read_text():
            assert time.monotonic() < deadline, "the program never started"
            time.sleep(0.01)
        fields = status(int((ws / "pid").read_text()))
        (ws / "go").touch()
        result = call.result()
    uid = SANDBOX_ID if ROOT else os.geteuid()
    assert not result.error and result.content == f"{(uid, uid, uid)}\n", result.content
    if ROOT:
        unprivileged(fields, uid)
    assert int(fields["CapEff"], 16) == 0 and fields["NoNewPrivs"] == "1"


LIBC = """
import cffi, os, struct
ffi = cffi.FFI()
ffi.cdef("long syscall(long, ...);")
C = ffi.dlopen(None)
def sys_(number, *args):
    result = C.syscall(ffi.cast("long", number), *(ffi.cast("long", a) for a in args))
    print(result, ffi.errno if result < 0 else 0)
def buffer(data):
    held.append(ffi.from_buffer(bytearray(data.ljust(256, b"\\0"))))
    return int(ffi.cast("uintptr_t", held[-1]))
held = []
"""


@CFFI
@NATIVE
@pytest.mark.parametrize(("name", "args"), [
    ("perf_event_open", "buffer(struct.pack('IIQ', 1, 128, 0)), os.getppid(), -1, -1, 0"),  # finding 1
    ("settimeofday", "0, 0"), ("sethostname", "0, 1000"), ("reboot", "0, 0, 0, 0"),
    ("bpf", "0, buffer(struct.pack('IIII', 2, 4, 4, 1)), 64"), ("syslog", "3, buffer(b''), 256"),
    ("unshare", "0x10000000 | 0x40000000 | 0x00020000"), ("setrlimit", "7, buffer(struct.pack('QQ', 1, 1))"),
    ("prlimit64", "0, 7, buffer(struct.pack('QQ', 1, 1)), 0"),
])
def test_native_code_in_the_tool_cannot_use_roots_privileges(sandbox: Tool, name: str, args: str) -> None:
    number = PROBES[name][0][COLUMN or 0]
    result = sandbox.run_sync({"code": LIBC + f"sys_({number}, {args})"})
    assert not result.error and result.content == "-1 1\n", result.content[-300:]  # EPERM
    assert sandbox.run_sync({"code": "print(6 * 7)"}).content == "42\n"


@pytest.mark.parametrize("name", ["pkg._ctypes", "_ctypes", "x.ctypes"])
def test_ctypes_cannot_be_loaded_through_importlib_under_another_name(sandbox: Tool, name: str) -> None:
    code = textwrap.dedent(f"""
        import glob, importlib.util, os
        so = glob.glob(os.path.join(os.path.dirname(os.__file__), "lib-dynload", "_ctypes*.so"))[0]
        module = importlib.util.module_from_spec(importlib.util.spec_from_file_location({name!r}, so))
        print(module.dlopen)""")
    result = sandbox.run_sync({"code": code})
    assert result.error and f"ImportError: sandbox: importing {name} is not allowed" in result.content, result.content


def test_files_the_child_writes_stay_the_parents_to_read_replace_and_delete(ws: Path, sandbox: Tool) -> None:
    tools = {t.name: t for t in files(ws)}
    assert tools["write_file"].run_sync({"path": "notes/ours.txt", "content": "ours"}).content.startswith("wrote")
    made = sandbox.run_sync({"code": "import os\nopen('notes/ours.txt', 'a').write('+child')\n"
                                     "os.makedirs('out/deep')\nopen('out/deep/made.txt', 'w').write('made')"})
    assert not made.error, made.content  # the file our tool wrote is the child's to append to
    assert tools["read_file"].run_sync({"path": "notes/ours.txt"}).content == "ours+child"
    assert tools["read_file"].run_sync({"path": "out/deep/made.txt"}).content == "made"
    replaced = tools["write_file"].run_sync({"path": "out/deep/made.txt", "content": "replaced"})
    assert replaced.content.startswith("wrote")
    assert tools["read_file"].run_sync({"path": "out/deep/made.txt"}).content == "replaced"
    shutil.rmtree(ws / "out")
    os.remove(ws / "notes" / "ours.txt")
    assert sorted(p.name for p in ws.rglob("*")) == ["notes"]


# ---- finding 3: disk ------------------------------------------------------------------------------------------

FLOOD = "import os\nfor i in range(40):\n    open(f'f{i}', 'wb').write(os.urandom(60 * 2**20))"  # 2.4 GB, 60 MB a file


def test_a_call_writing_gigabytes_is_stopped_at_its_quota_and_a_full_workspace_refuses_writes(ws: Path) -> None:
    started = time.monotonic()
    result = python(ws, time_limit=20).run_sync({"code": FLOOD})
    took, held = time.monotonic() - started, disk_usage(ws)
    print(f"stopped after {took:.2f} s; the workspace holds {held / 2**20:.0f} MB")  # the figures
    assert result.error and "over the disk quota of 256 MB per call" in result.content, result.content
    assert 256 * 2**20 < held < (256 + 64) * 2**20  # overshoot: less than one POLL of writing, one file at most
    assert took < 10
    small = python(ws, workspace_disk_mb=256)  # the same workspace, now over its quota
    full = small.run_sync({"code": "open('more.txt', 'w').write('x')"})
    assert full.error and "the workspace is full" in full.content and "quota of 256 MB" in full.content, full.content
    freed = small.run_sync({"code": "import glob, os\nfor name in glob.glob('f*'): os.remove(name)\nprint('freed')"})
    assert freed.content == "freed\n"  # a call may still delete
    assert small.run_sync({"code": "open('more.txt', 'w').write('x')"}).content == "1\n"


@pytest.mark.parametrize("hide", [
    "fd = os.open(f'h{i}', os.O_RDWR | os.O_CREAT); os.unlink(f'h{i}')",  # space without a name
    "fd = os.memfd_create(f'h{i}')",
])
def test_space_held_in_open_files_without_a_name_counts(ws: Path, hide: str) -> None:
    code = f"import os\nheld = []\nfor i in range(40):\n    {hide}\n    os.write(fd, bytes(30 * 2**20))\n" \
           "    held.append(fd)\nimport time; time.sleep(5)"
    result = python(ws, time_limit=8, call_disk_mb=64).run_sync({"code": code})
    assert result.error and "over the disk quota of 64 MB per call" in result.content, result.content


def test_a_folder_too_deep_to_measure_counts_as_full_until_removed(ws: Path) -> None:
    tool = python(ws, time_limit=5)
    result = tool.run_sync({"code": "import os; os.makedirs('/'.join(['d'] * 70))"})
    assert result.error and "cannot be measured" in result.content, result.content
    write = tool.run_sync({"code": "open('x.txt', 'w').write('x')"})
    assert write.error and "the workspace is full: it holds folders that cannot be measured" in write.content
    assert tool.run_sync({"code": "import shutil; shutil.rmtree('d'); print('ok')"}).content == "ok\n"
    assert not tool.run_sync({"code": "open('x.txt', 'w').write('x')"}).error


# ---- the same attacks as an ordinary user ---------------------------------------------------------------------

ORDINARY = """
import importlib.util, json, os, sys, tempfile
spec = importlib.util.spec_from_file_location("sandbox_boot", sys.argv[1])
boot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(boot)
if os.geteuid() == 0:  # become nobody, with a way to Python and to Baobab (see _become)
    import site
    paths = (sys.prefix, sys.base_prefix, *site.getsitepackages(), sys.argv[2])
    boot._become(boot._libc(), 65534, "/tmp", tuple({os.path.realpath(p) for p in paths}))
os.environ["BAOBAB_TEST_SECRET"] = "s3cr3t-value-never-shown"
from baobab.tools.python import python
from baobab.tools.workspace import disk_usage
workspace = tempfile.mkdtemp()
tool = python(workspace, time_limit=5, call_disk_mb=16)
attacks = json.loads(sys.argv[3])
report = {name: tool.run_sync({"code": code}).content for name, code in attacks.items()}
report["held"] = disk_usage(workspace)
report["uid"] = os.geteuid()
print(json.dumps(report))
"""


def test_as_an_ordinary_user_the_sandbox_holds_too() -> None:
    if ROOT and not Path("/proc/self/ns/mnt").exists():
        pytest.skip("no mount namespaces here: nobody could not reach Python under a closed folder")
    attacks = {"ids": "import os; print(os.getresuid())",
               "secret": "import os; print(os.environ.get('BAOBAB_TEST_SECRET'))",
               "environ": "print(open(f'/proc/{__import__(\"os\").getppid()}/environ').read())",
               "flood": "for i in range(10): open(f'f{i}', 'wb').write(bytes(8 * 2**20))",
               "ctypes": "import importlib.util as u, glob, os\nso = glob.glob(os.path.dirname(os.__file__) + "
                         "'/lib-dynload/_ctypes*.so')[0]\n"
                         "u.module_from_spec(u.spec_from_file_location('p._ctypes', so))"}
    if importlib.util.find_spec("cffi") is not None and COLUMN is not None:
        attacks["perf"] = LIBC + f"sys_({PROBES['perf_event_open'][0][COLUMN]}, " \
                                 "buffer(struct.pack('IIQ', 1, 128, 0)), os.getppid(), -1, -1, 0)"
    package = str(Path(__import__("baobab").__file__).parent)
    run = subprocess.run([sys.executable, "-c", ORDINARY, str(BOOT), package, json.dumps(attacks)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    uid = 65534 if ROOT else os.geteuid()
    print(f"ran as uid {report['uid']}")
    assert report["uid"] == uid and report["ids"] == f"{(uid, uid, uid)}\n"
    assert report["secret"] == "None\n"
    assert "s3cr3t" not in report["environ"] and "sandbox: reading" in report["environ"]
    # 80 MB can be written between two of the parent's looks (50 ms): the call is refused, its files stay
    print(f"held after the flood: {report['held'] / 2**20:.0f} MB")
    assert "over the disk quota of 16 MB per call" in report["flood"]
    assert "importing p._ctypes is not allowed" in report["ctypes"]
    assert report.get("perf", "-1 1\n") == "-1 1\n"
