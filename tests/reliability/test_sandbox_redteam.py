"""Red team: programs and paths that try to leave the python tool's sandbox or the file tools' workspace.

Every attempt must be contained (nothing read, written, reached or killed outside), reported as an
observation the agent can read, and leave the tool working for the next call. Attacks in native code (cffi)
or that tamper with the audit hook meet the kernel's confinement (Landlock and seccomp) instead of the hook.
"""

import ctypes
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from baobab.agents import Agent
from baobab.engine import Choice, ScriptedLLM, ToolCall, load_llm
from baobab.tools import Tool
from baobab.tools.files import files
from baobab.tools.python import python

SECRET = "s3cr3t-value-never-shown"


def landlock_abi() -> int:
    """The kernel's Landlock version, 0 without it (landlock_create_ruleset with LANDLOCK_CREATE_RULESET_VERSION)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return max(0, int(libc.syscall(ctypes.c_long(444), None, ctypes.c_long(0), ctypes.c_long(1))))


KERNEL = pytest.mark.skipif(landlock_abi() < 1, reason="this kernel has no Landlock: only the audit hook confines "
                                                       "files there, and a race or a tampered hook gets past it")
CFFI = pytest.mark.skipif(importlib.util.find_spec("cffi") is None,
                          reason="cffi is not installed: the native-code attacks need it")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the workspace holding a file the programs must not read or change."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "private.txt").write_text("private data")
    return folder


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tool:
    monkeypatch.setenv("BAOBAB_TEST_SECRET", SECRET)
    return python(tmp_path / "ws", time_limit=3, memory_mb=256, output_limit=2000)


def still_works(tool: Tool) -> None:
    assert tool.run_sync({"code": "print(6 * 7)"}).content == "42\n"


def untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["private.txt"]
    assert (outside / "private.txt").read_text() == "private data"


def last_json(content: str) -> Any:
    """The JSON value an attack program printed on its last line."""
    return json.loads(content.strip().splitlines()[-1])


# ---- python tool: files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", [
    "print(open('{outside}/private.txt').read())",
    "import os; print(os.listdir('{outside}'))",
    "open('{outside}/planted.txt', 'w').write('x')",
    "import os; os.symlink('{outside}/private.txt', 'link'); print(open('link').read())",
    "import os; os.link('{outside}/private.txt', 'hard'); print(open('hard').read())",
    "import os; os.rename('{outside}/private.txt', 'stolen.txt')",
    "import shutil; shutil.copy('{outside}/private.txt', 'copy.txt')",
    "import os; fd = os.open('.', os.O_RDONLY); print(os.open('../outside/private.txt', os.O_RDONLY, dir_fd=fd))",
    "print(open('/proc/' + str(__import__('os').getppid()) + '/environ', 'rb').read())",
])
def test_files_outside_the_workspace_stay_out_of_reach(sandbox: Tool, outside: Path, attack: str) -> None:
    result = sandbox.run_sync({"code": attack.format(outside=outside)})
    assert result.error and "sandbox:" in result.content and "private data" not in result.content
    assert SECRET not in result.content
    untouched(outside)
    still_works(sandbox)


@pytest.mark.parametrize(("attack", "ran"), [
    ("import os; print(dict(os.environ))", True),  # it runs, and our environment is simply not there
    ("import os; print(os.environ.get('BAOBAB_TEST_SECRET'))", True),
    ("print(open('/proc/self/environ').read())", False),  # refused, though its own would hold nothing of ours
    ("print(open('/proc/1/environ').read())", False),
    ("import os; print([open(f'/proc/{p}/environ').read() for p in os.listdir('/proc') if p.isdigit()])", False),
])
def test_the_programs_never_see_our_secrets(sandbox: Tool, attack: str, ran: bool) -> None:
    assert os.environ["BAOBAB_TEST_SECRET"] == SECRET  # the test process does hold it
    result = sandbox.run_sync({"code": attack})
    assert result.error != ran, result.content
    assert SECRET not in result.content and "BAOBAB_TEST_SECRET" not in result.content
    still_works(sandbox)


# A relative link L -> sub/../../REST lands inside the workspace while `sub` is a link to a folder two deep, and
# outside while `sub` is a plain folder: a thread swaps the two while the main thread opens L, so the hook may
# check one and the kernel open the other. The program reports what each open did.
RACE = """
import json, os, sys, threading, time
sys.setswitchinterval(1e-6)
target, ancestor, mode = {target}, {ancestor}, {mode!r}
rest = os.path.relpath(target, ancestor)
depth = os.getcwd().count("/") - ancestor.rstrip("/").count("/") + 1  # ".." from a link in sub up to `ancestor`
deep = "/".join(f"d{{i}}" for i in range(depth))
os.makedirs(deep)
os.makedirs("sub")
os.makedirs(os.path.dirname(rest) or ".", exist_ok=True)
open(rest, "w").write("decoy")  # where L leads while the hook looks (inside)
os.symlink(deep, "sublink")
os.symlink("sub/" + "../" * depth + rest, "L")
stop, swaps, seen = False, [0], {{}}
def swap():
    while not stop:
        os.rename("sub", "plain"); os.rename("sublink", "sub")
        os.rename("sub", "sublink"); os.rename("plain", "sub")
        swaps[0] += 1
swapper = threading.Thread(target=swap)
swapper.start()
start = time.monotonic()  # 2 s, and up to 10 while the hook has not been raced past (rare on a loaded machine)
while time.monotonic() < start + 2 or ("[Errno 13] Permission denied" not in seen and time.monotonic() < start + 10):
    try:
        if mode == "read":
            text = open("L").read()
            key = "read the decoy" if text == "decoy" else "LEAKED " + text[:300]
        else:
            open("L", "w").write("planted")
            key = "wrote"
    except OSError as exc:
        key = str(exc).split(":")[0]
    seen[key] = seen.get(key, 0) + 1
stop = True
swapper.join()
print(json.dumps({{"swaps": swaps[0], "seen": seen}}))
"""


@KERNEL
@pytest.mark.parametrize(("target", "ancestor", "mode"), [
    ("OUTSIDE + '/private.txt'", "os.path.dirname(OUTSIDE)", "read"),
    ("OUTSIDE + '/planted.txt'", "os.path.dirname(OUTSIDE)", "write"),
    ("f'/proc/{os.getppid()}/environ'", "'/'", "read"),
])
def test_a_symlink_swapped_by_the_program_itself_never_lets_it_out(tmp_path: Path, outside: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, target: str,
                                                                  ancestor: str, mode: str) -> None:
    monkeypatch.setenv("BAOBAB_TEST_SECRET", SECRET)
    tool = python(tmp_path / "ws", time_limit=15)
    code = f"OUTSIDE = {str(outside)!r}\nimport os\n" + RACE.format(target=target, ancestor=ancestor, mode=mode)
    result = tool.run_sync({"code": code})
    assert not result.error, result.content
    report = last_json(result.content)
    print(report)  # the figure: how often the hook was beaten and the kernel refused
    assert report["swaps"] > 0 and not any(key.startswith("LEAKED") for key in report["seen"])
    assert report["seen"].get("[Errno 13] Permission denied", 0) > 0  # the hook was raced past; the kernel held
    assert SECRET not in result.content and "private data" not in result.content
    untouched(outside)
    still_works(tool)


TAMPER = """
import builtins, os, sys
try:
    open({private!r})
except PermissionError as refused:  # the hook's frame: its module's globals, and builtins, are the program's to change
    frame = refused.__traceback__
    while frame.tb_next:
        frame = frame.tb_next
    hooked = frame.tb_frame.f_globals
    hooked["DEVICES"] = frozenset({{{private!r}}})
    hooked["MUTATING"].clear()
    hooked["NO_IMPORT"] = frozenset()
    builtins.any = lambda *args: True
    builtins.str = lambda *args: "harmless"
results = []
for attempt in [lambda: open({private!r}).read(), lambda: os.rename({private!r}, "stolen.txt"),
                lambda: open({planted!r}, "w").write("x"),
                lambda: (sys.modules.pop("_posixsubprocess"), __import__("_posixsubprocess").fork_exec)]:
    try:
        results.append(repr(attempt()))
    except Exception as exc:
        results.append(type(exc).__name__ + ": " + builtins.__dict__["repr"](exc))
print(results)
"""


@KERNEL
def test_a_program_that_rewrites_the_audit_hooks_globals_and_builtins_is_still_confined(
        sandbox: Tool, outside: Path) -> None:
    code = TAMPER.format(private=str(outside / "private.txt"), planted=str(outside / "planted.txt"))
    result = sandbox.run_sync({"code": code})
    assert "private data" not in result.content and "built-in function fork_exec" not in result.content
    # the kernel refused all three (as root, a workspace in a folder closed to the sandbox's uid is reached through
    # bind mounts, and a rename across two of them is refused as such before Landlock looks)
    refused = result.content.count("Permission denied") + result.content.count("Invalid cross-device link")
    assert refused == 3, result.content
    assert "importing _posixsubprocess is not allowed" in result.content  # the hook's closure is out of reach
    untouched(outside)
    still_works(sandbox)


# ---- python tool: native code (cffi calls libc directly; no audit event is raised) -----------------------

LIBC = """
import cffi
ffi = cffi.FFI()
ffi.cdef("int getppid(void); int kill(int, int); int fork(void); int system(const char *); int open(const char *, int);"
         "int socket(int, int, int); int connect(int, const void *, unsigned int);"
         "long sendto(int, const void *, unsigned long, int, const void *, unsigned int);")
C = ffi.dlopen(None)
def inet(port):
    return bytes([2, 0]) + port.to_bytes(2, "big") + bytes([127, 0, 0, 1]) + bytes(8)
def say(result):
    print(result, ffi.errno)
"""


@CFFI
@pytest.mark.parametrize(("attack", "said"), [
    ("say(C.kill(C.getppid(), 9))", "-1 1"),  # EPERM
    ("say(C.kill(-1, 9))", "-1 1"),
    ("say(sum(C.fork() for _ in range(1000)))", "-1000 1"),
    ("say(C.system(b'touch {outside}/planted.txt'))", "32512 1"),  # 127 << 8: the shell never started
    ("say(C.open(b'{outside}/private.txt', 0))", "-1 13"),  # EACCES
    ("say(C.open(b'{outside}/planted.txt', 0o101))", "-1 13"),
])
def test_native_code_meets_the_kernels_refusal(sandbox: Tool, outside: Path, attack: str, said: str) -> None:
    started = time.monotonic()
    result = sandbox.run_sync({"code": LIBC + attack.format(outside=outside)})
    assert not result.error and result.content == said + "\n", result.content[-300:]
    assert time.monotonic() - started < 5
    untouched(outside)
    still_works(sandbox)  # and this process is alive to say so


@pytest.mark.parametrize("attack", [
    pytest.param("import socket; socket.create_connection(('127.0.0.1', {tcp}))", id="tcp"),
    pytest.param("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {udp}))",
                 id="udp"),
    pytest.param(LIBC + "s = C.socket(2, 1, 0); say(C.connect(s, inet({tcp}), 16))", marks=CFFI, id="native-tcp"),
    pytest.param(LIBC + "s = C.socket(2, 2, 0); say(C.sendto(s, b'x', 1, 0, inet({udp}), 16))", marks=CFFI,
                 id="native-udp"),
    pytest.param(LIBC + "say(C.socket(16, 3, 0))", marks=CFFI, id="native-netlink"),  # root could reconfigure
])
def test_no_network_not_even_loopback(sandbox: Tool, attack: str) -> None:
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for server in (tcp, udp):
            server.bind(("127.0.0.1", 0))
            server.setblocking(False)
        tcp.listen()
        code = attack.format(tcp=tcp.getsockname()[1], udp=udp.getsockname()[1])
        result = sandbox.run_sync({"code": code})
        with pytest.raises(BlockingIOError):  # a connect completes before the program ends: it would be queued
            tcp.accept()
        with pytest.raises(BlockingIOError):
            udp.recv(16)
    assert "sandbox: socket" in result.content or result.content == "-1 1\n", result.content
    still_works(sandbox)


# ---- python tool: processes, signals, resources -----------------------------------------------------------


@pytest.mark.parametrize(("attack", "said"), [
    ("import os\nwhile True: os.fork()", "sandbox: os.fork is not allowed"),
    ("import subprocess; subprocess.run(['sh', '-c', ':(){ :|:& };:'])", "sandbox: subprocess.Popen is not allowed"),
    ("import os; os.system('sleep 100 &')", "sandbox: os.system is not allowed"),
    ("import multiprocessing as m; p = m.Process(target=print); p.start()", "not allowed"),
    ("import os; os.kill(os.getppid(), 9)", "signalling other processes is not allowed"),
    ("import os, signal; os.kill(1, signal.SIGTERM)", "signalling other processes is not allowed"),
    ("import os, signal; signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)",
     "Operation not permitted"),
    ("import ctypes", "importing ctypes is not allowed"),
    ("import _xxsubinterpreters", "importing _xxsubinterpreters is not allowed"),  # a new interpreter has no hook
    ("import __main__; print(__main__.REFUSED)", "has no attribute 'REFUSED'"),  # the boot module is not __main__
])
def test_processes_cannot_be_started_or_signalled(sandbox: Tool, attack: str, said: str) -> None:
    started = time.monotonic()
    result = sandbox.run_sync({"code": attack})
    assert result.error and said in result.content, result.content
    assert time.monotonic() - started < 5
    still_works(sandbox)  # and this process is alive to say so


@pytest.mark.parametrize(("attack", "said"), [
    ("x = bytearray(8 * 2**30)", "memory limit"),
    ("x = []\nwhile True: x.append(' ' * 2**20)", "memory limit"),
    ("import threading, time\nwhile True: threading.Thread(target=time.sleep, args=(60,)).start()",
     "can't start new thread|MemoryError"),  # which comes first depends on the stacks mapped by then
    ("while True: pass", "time limit"),
    ("import time; time.sleep(60)", "time limit"),
    ("while True: print('spam' * 1000)", "time limit"),
    ("import sys\nwhile True: sys.stdout.buffer.write(b'\\xff' * 65536)", "time limit"),
    ("open('big', 'wb').write(b'0' * 100 * 2**20)", "file-size limit"),
])
def test_resource_bombs_end_within_their_limits(sandbox: Tool, attack: str, said: str) -> None:
    started = time.monotonic()
    result = sandbox.run_sync({"code": attack})
    took = time.monotonic() - started
    print(f"{took:.2f} s")
    assert result.error and re.search(said, result.content), result.content[-300:]
    assert took < 8, took  # the 3 s limit and the teardown
    assert len(result.content) < 2 * 2000 + 200  # output is cut to its limit
    still_works(sandbox)


def test_killing_its_own_process_group_harms_only_itself(sandbox: Tool) -> None:
    result = sandbox.run_sync({"code": "import os, signal; print('bye', flush=True); os.killpg(0, signal.SIGKILL)"})
    assert result.error and "bye" in result.content and "SIGKILL" in result.content
    still_works(sandbox)


# ---- file tools -------------------------------------------------------------------------------------------


@pytest.fixture
def tools(tmp_path: Path) -> dict[str, Tool]:
    return {t.name: t for t in files(tmp_path / "ws")}


def files_still_work(tools: dict[str, Tool]) -> None:
    assert tools["write_file"].run_sync({"path": "ok.txt", "content": "fine"}).content == "wrote 4 bytes to ok.txt"
    assert tools["read_file"].run_sync({"path": "ok.txt"}).content == "fine"


CLEAR = ["outside the workspace", "contains a NUL byte", "the limit is 4096", "File name too long"]


@pytest.mark.parametrize("path", ["../outside/private.txt", "{outside}/private.txt", "a/../../outside/private.txt",
                                  "x\x00y", "a/" * 3000 + "f", "x" * 300, "/proc/self/environ"])
def test_file_tools_refuse_paths_that_leave_the_workspace(tools: dict[str, Tool], outside: Path, path: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAOBAB_TEST_SECRET", SECRET)
    path = path.format(outside=outside)
    read = tools["read_file"].run_sync({"path": path})
    wrote = tools["write_file"].run_sync({"path": path, "content": "planted"})
    listed = tools["list_files"].run_sync({"path": path})
    for result in (read, wrote, listed):
        assert result.error and "private data" not in result.content and SECRET not in result.content
        assert "Traceback" not in result.content and len(result.content) < 500
        assert any(reason in result.content for reason in CLEAR), result.content  # says why, not a bare exception
    untouched(outside)
    files_still_work(tools)


def test_symlinks_out_of_the_workspace_are_refused(tools: dict[str, Tool], tmp_path: Path, outside: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "to_file").symlink_to(outside / "private.txt")
    (workspace / "to_dir").symlink_to(outside)
    for path in ["to_file", "to_dir/private.txt", "to_dir/new.txt"]:
        assert "outside the workspace" in tools["read_file"].run_sync({"path": path}).content
        assert "outside the workspace" in tools["write_file"].run_sync({"path": path, "content": "x"}).content
    assert "outside the workspace" in tools["list_files"].run_sync({"path": "to_dir"}).content
    untouched(outside)
    files_still_work(tools)


def test_links_and_fifos_made_by_the_python_tool_do_not_lead_the_file_tools_out(
        tools: dict[str, Tool], sandbox: Tool, outside: Path) -> None:
    made = sandbox.run_sync({"code": f"import os\nos.symlink({str(outside)!r}, 'out')\nos.mkfifo('fifo')\n"
                                     f"os.link({str(outside / 'private.txt')!r}, 'hard')"})
    assert made.error and "sandbox: os.link" in made.content  # the symlink and the FIFO were made; the link was not
    assert "outside the workspace" in tools["read_file"].run_sync({"path": "out/private.txt"}).content
    assert "does not exist" in tools["read_file"].run_sync({"path": "hard"}).content
    started = time.monotonic()
    assert "is not a file" in tools["read_file"].run_sync({"path": "fifo"}).content  # opened without blocking
    assert time.monotonic() - started < 2
    assert "wrote 1 bytes" in tools["write_file"].run_sync({"path": "fifo", "content": "x"}).content
    untouched(outside)


def test_a_hard_link_already_in_the_workspace_is_replaced_not_written_through(
        tools: dict[str, Tool], tmp_path: Path, outside: Path) -> None:
    os.link(outside / "private.txt", tmp_path / "ws" / "hard")
    assert tools["write_file"].run_sync({"path": "hard", "content": "planted"}).content == "wrote 7 bytes to hard"
    assert tools["read_file"].run_sync({"path": "hard"}).content == "planted"
    untouched(outside)


SWAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
os.symlink(sys.argv[2], "link")
while True:  # the real folder d (the decoy d/private.txt is inside) and a link to outside swap names atomically
    if libc.renameat2(-100, b"d", -100, b"link", 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
        raise OSError(ctypes.get_errno(), "renameat2")
"""


@pytest.mark.parametrize("tool", ["read_file", "write_file"])
def test_a_symlink_swapped_in_during_the_call_never_lets_it_out(tools: dict[str, Tool], tmp_path: Path,
                                                                outside: Path, tool: str) -> None:
    # a separate process, so the swaps run in parallel with the tool (with a check-then-open tool,
    # planted.txt landed outside in a 3 s run of this race on this machine)
    (tmp_path / "ws" / "d").mkdir()
    (tmp_path / "ws" / "d" / "private.txt").write_text("decoy")
    attacker = subprocess.Popen([sys.executable, "-c", SWAPPER, "d", str(outside)], cwd=tmp_path / "ws")
    arguments = {"path": "d/private.txt"} | ({"content": "x"} if tool == "write_file" else {})
    outcomes: dict[bool, int] = {True: 0, False: 0}
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            result = tools[tool].run_sync(arguments)
            assert "private data" not in result.content
            outcomes[result.error] += 1
    finally:
        attacker.kill()
        attacker.wait()
    assert attacker.returncode == -9  # it was swapping all along
    print(outcomes)
    assert outcomes[True] > 0 and outcomes[False] > 0  # the attacker's link was met, and so was the real folder
    untouched(outside)


# ---- an agent under attack --------------------------------------------------------------------------------


def test_an_agent_meets_attacks_as_observations_and_carries_on(tmp_path: Path, outside: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAOBAB_TEST_SECRET", SECRET)
    attacks = [("python", {"code": f"print(open('{outside}/private.txt').read())"}),
               ("python", {"code": "import os; print(os.environ.get('BAOBAB_TEST_SECRET'))"}),
               ("python", {"code": "import os; os.kill(os.getppid(), 9)"}),
               ("python", {"code": "import os\nwhile True: os.fork()"}),
               ("python", {"code": "x = bytearray(8 * 2**30)"}),
               ("read_file", {"path": "../outside/private.txt"}),
               ("write_file", {"path": f"{outside}/planted.txt", "content": "x"}),
               ("python", {"code": "print(2 + 2)"})]
    calls = [Choice(tool_calls=[ToolCall(id=str(i), name=name, arguments=json.dumps(arguments))])
             for i, (name, arguments) in enumerate(attacks)]
    model = load_llm("scripted:", replies=[*calls, "The answer is 4."])
    assert isinstance(model, ScriptedLLM)
    tools = [python(tmp_path / "ws", time_limit=5), *files(tmp_path / "ws")]
    result = Agent("mallory", model=model, tools=tools, max_steps=len(attacks) + 2).run("try everything, then add")
    assert result.output == "The answer is 4."
    seen = [str(m.content) for m in model.requests[-1].messages or [] if m.role == "tool"]
    assert len(seen) == len(attacks)
    assert "sandbox: reading" in seen[0] and seen[1] == "None\n" and "signalling other processes" in seen[2]
    assert "os.fork is not allowed" in seen[3] and "memory limit" in seen[4]
    assert "outside the workspace" in seen[5] and "outside the workspace" in seen[6]
    assert seen[7].strip() == "4"
    assert not any("private data" in text or SECRET in text for text in seen)
    untouched(outside)
