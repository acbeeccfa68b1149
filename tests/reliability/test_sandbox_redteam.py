"""Red team: programs and paths that try to leave the python tool's sandbox or the file tools' workspace.

Every attempt must be contained (nothing read, written, reached or killed outside), reported as an
observation the agent can read, and leave the tool working for the next call.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from baobab.agents import Agent
from baobab.engine import Choice, ScriptedLLM, ToolCall
from baobab.tools import Tool
from baobab.tools.files import files
from baobab.tools.python import python

SECRET = "s3cr3t-value-never-shown"


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
    return python(tmp_path / "ws", time_limit=5, memory_mb=256, output_limit=2000)


def still_works(tool: Tool) -> None:
    assert tool.run_sync({"code": "print(6 * 7)"}).content == "42\n"


@pytest.mark.parametrize("attack", [
    "print(open('{outside}/private.txt').read())",
    "import os; print(os.listdir('{outside}'))",
    "open('{outside}/planted.txt', 'w').write('x')",
    "import os; os.symlink('{outside}/private.txt', 'link'); print(open('link').read())",
    "import os; os.link('{outside}/private.txt', 'hard'); print(open('hard').read())",
    "import os; os.rename('{outside}/private.txt', 'stolen.txt')",
    "import shutil; shutil.copy('{outside}/private.txt', 'copy.txt')",
    "print(open('/proc/' + str(__import__('os').getppid()) + '/environ', 'rb').read())",
])
def test_files_outside_the_workspace_stay_out_of_reach(sandbox: Tool, outside: Path, attack: str) -> None:
    result = sandbox.run_sync({"code": attack.format(outside=outside)})
    assert result.error and "sandbox:" in result.content and "private data" not in result.content
    assert sorted(p.name for p in outside.iterdir()) == ["private.txt"]
    assert (outside / "private.txt").read_text() == "private data"
    still_works(sandbox)


@pytest.mark.parametrize("attack", [
    "import os; print(os.environ)",
    "import os; print(open('/proc/self/environ').read())",
    "import os; print(open('/proc/1/environ').read())",
])
def test_the_programs_never_see_our_secrets(sandbox: Tool, attack: str) -> None:
    result = sandbox.run_sync({"code": attack})
    assert SECRET not in result.content and "BAOBAB_TEST_SECRET" not in result.content
    still_works(sandbox)


def test_no_network_not_even_loopback(sandbox: Tool) -> None:
    accepted: list[object] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(3)
        port = server.getsockname()[1]
        waiter = threading.Thread(target=lambda: accepted.append(_accept(server)))
        waiter.start()
        result = sandbox.run_sync({"code": f"import socket; socket.create_connection(('127.0.0.1', {port}))"})
        waiter.join()
    assert result.error and "socket" in result.content and accepted == [None]
    still_works(sandbox)


def _accept(server: socket.socket) -> object:
    try:
        return server.accept()
    except TimeoutError:
        return None


@pytest.mark.parametrize(("attack", "said"), [
    ("import os\nwhile True: os.fork()", "sandbox: os.fork is not allowed"),
    ("import subprocess; subprocess.run(['sh', '-c', ':(){ :|:& };:'])", "sandbox: subprocess.Popen is not allowed"),
    ("import os; os.system('sleep 100 &')", "sandbox: os.system is not allowed"),
    ("import multiprocessing as m; p = m.Process(target=print); p.start()", "not allowed"),
    ("import os; os.kill(os.getppid(), 9)", "signalling other processes is not allowed"),
    ("import os, signal; os.kill(1, signal.SIGTERM)", "signalling other processes is not allowed"),
    ("import ctypes", "importing ctypes is not allowed"),
])
def test_processes_cannot_be_started_or_signalled(sandbox: Tool, attack: str, said: str) -> None:
    started = time.monotonic()
    result = sandbox.run_sync({"code": attack})
    assert result.error and said in result.content, result.content
    assert time.monotonic() - started < 10
    still_works(sandbox)  # and this process is alive to say so


@pytest.mark.parametrize(("attack", "said"), [
    ("x = bytearray(8 * 2**30)", "memory limit"),
    ("x = []\nwhile True: x.append(' ' * 2**20)", "memory limit"),
    ("while True: pass", "time limit"),
    ("import time; time.sleep(60)", "time limit"),
    ("while True: print('spam' * 1000)", "time limit"),
    ("open('big', 'wb').write(b'0' * 100 * 2**20)", "file-size limit"),
])
def test_resource_bombs_end_within_their_limits(sandbox: Tool, attack: str, said: str) -> None:
    started = time.monotonic()
    result = sandbox.run_sync({"code": attack})
    took = time.monotonic() - started
    assert result.error and said in result.content, result.content[-300:]
    assert took < 12, took  # the 5 s limit and the teardown
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


@pytest.mark.parametrize("path", ["../outside/private.txt", "{outside}/private.txt", "a/../../outside/private.txt",
                                  "x\x00y", "a/" * 3000 + "f"])
def test_file_tools_refuse_paths_that_leave_the_workspace(tools: dict[str, Tool], outside: Path, path: str) -> None:
    path = path.format(outside=outside)
    read = tools["read_file"].run_sync({"path": path})
    wrote = tools["write_file"].run_sync({"path": path, "content": "planted"})
    listed = tools["list_files"].run_sync({"path": path})
    for result in (read, wrote, listed):
        assert result.error and "private data" not in result.content
    assert sorted(p.name for p in outside.iterdir()) == ["private.txt"]
    assert (outside / "private.txt").read_text() == "private data"
    assert tools["write_file"].run_sync({"path": "ok.txt", "content": "fine"}).content == "wrote 4 bytes to ok.txt"


def test_symlinks_out_of_the_workspace_are_refused(tools: dict[str, Tool], tmp_path: Path, outside: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "to_file").symlink_to(outside / "private.txt")
    (workspace / "to_dir").symlink_to(outside)
    for path in ["to_file", "to_dir/private.txt", "to_dir/new.txt"]:
        assert "outside the workspace" in tools["read_file"].run_sync({"path": path}).content
        assert "outside the workspace" in tools["write_file"].run_sync({"path": path, "content": "x"}).content
    assert "outside the workspace" in tools["list_files"].run_sync({"path": "to_dir"}).content
    assert sorted(p.name for p in outside.iterdir()) == ["private.txt"]


SWAPPER = """
import os, sys
link, target, i = sys.argv[1], sys.argv[2], 0
while True:  # move the real folder away, put a link to outside in its place, take it out again
    i += 1
    try:
        if os.path.isdir(link) and not os.path.islink(link):
            os.rename(link, link + str(i))
        os.symlink(target, link)
        os.unlink(link)
    except OSError:
        pass
"""


def test_a_symlink_swapped_in_during_writes_never_lets_a_write_out(tools: dict[str, Tool], tmp_path: Path,
                                                                   outside: Path) -> None:
    # a separate process, so the swaps run in parallel with the tool (with a check-then-open tool,
    # planted.txt landed outside in a 3 s run of this race on this machine)
    attacker = subprocess.Popen([sys.executable, "-c", SWAPPER, str(tmp_path / "ws" / "d"), str(outside)])
    refused = 0
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            refused += tools["write_file"].run_sync({"path": "d/planted.txt", "content": "x"}).error
    finally:
        attacker.kill()
        attacker.wait()
    assert refused > 0  # the attacker did get its link in, often
    assert sorted(p.name for p in outside.iterdir()) == ["private.txt"]


def test_an_agent_meets_an_attack_as_an_observation_and_carries_on(tmp_path: Path, outside: Path) -> None:
    code = f"print(open('{outside}/private.txt').read())"
    steal = ToolCall(id="1", name="python", arguments=json.dumps({"code": code}))
    honest = ToolCall(id="2", name="python", arguments=json.dumps({"code": "print(2 + 2)"}))
    model = ScriptedLLM([Choice(tool_calls=[steal]), Choice(tool_calls=[honest]), "The answer is 4."])
    result = Agent("mallory", model=model, tools=[python(tmp_path / "ws")], max_steps=4).run("steal, then add")
    assert result.output == "The answer is 4."
    seen = [m.content for m in model.requests[-1].messages or [] if m.role == "tool"]
    assert len(seen) == 2 and "sandbox: reading" in str(seen[0]) and "private data" not in str(seen[0])
    assert str(seen[1]).strip() == "4"
    assert os.listdir(outside) == ["private.txt"]
