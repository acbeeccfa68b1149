"""The python tool: each escape attempt is a real run in the sandbox, and the tool still works after it."""

import os
import socket
import time
from pathlib import Path

import pytest

from baobab.tools import Observation, Tool
from baobab.tools.python import python


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def sandbox(workspace: Path) -> Tool:
    return python(workspace, time_limit=5.0, memory_mb=256, output_limit=2_000)


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    secret = tmp_path_factory.mktemp("outside") / "secret.txt"
    secret.write_text("top secret")
    return secret


def run(sandbox: Tool, code: str) -> Observation:
    return sandbox.run_sync({"code": code})


def still_works(sandbox: Tool) -> None:
    assert run(sandbox, "print(1 + 1)") == Observation(tool="python", content="2\n")


@pytest.mark.parametrize(("code", "shown"), [("2**10", "1024\n"), ("x = [3]\nx * 2", "[3, 3]\n"),
                                           ("print('a')\n'b'", "a\n'b'\n")])
def test_a_last_line_that_is_an_expression_is_shown(sandbox: Tool, code: str, shown: str) -> None:
    assert run(sandbox, code) == Observation(tool="python", content=shown)  # small models forget print


def test_a_syntax_error_shows_only_the_programs_line(sandbox: Tool) -> None:
    observation = run(sandbox, "def f(:")
    assert observation.error and observation.content.startswith('  File "<code>", line 1')


def test_prints_and_is_fast(sandbox: Tool) -> None:
    start = time.perf_counter()
    assert run(sandbox, "print(17 * 23)") == Observation(tool="python", content="391\n")
    assert time.perf_counter() - start < 0.5
    assert sandbox.spec()["parameters"]["required"] == ["code"]


def test_files_persist_in_the_workspace(sandbox: Tool, workspace: Path) -> None:
    assert not run(sandbox, "open('data.txt', 'w').write('42')").error
    assert (workspace / "data.txt").read_text() == "42"
    assert run(sandbox, "import os; print(open('data.txt').read(), os.getcwd() == os.environ['HOME'])").content == \
        "42 True\n"


def test_imports_from_the_standard_library_and_site_packages_work(sandbox: Tool) -> None:
    code = "import json, decimal, asyncio, pydantic; print(json.dumps(asyncio.run(asyncio.sleep(0, [1]))))"
    assert run(sandbox, code).content == "[1]\n"


def test_loop_forever_is_stopped_by_the_time_limit(workspace: Path) -> None:
    impatient = python(workspace, time_limit=0.5)
    start = time.perf_counter()
    obs = run(impatient, "print('started', flush=True)\nwhile True:\n    pass")
    assert obs == Observation(tool="python", content="started\n[python: stopped after the time limit of 0.5 s]",
                              error=True)
    assert time.perf_counter() - start < 2
    still_works(impatient)


def test_unbounded_allocation_is_stopped_by_the_memory_limit(sandbox: Tool) -> None:
    obs = run(sandbox, "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))")
    assert obs.error
    assert "MemoryError" in obs.content
    assert obs.content.endswith("[python: the memory limit of 256 MB was exceeded]")
    still_works(sandbox)


@pytest.mark.parametrize(("code", "refused"), [
    ("import os; os.fork()", "os.fork is not allowed"),
    ("import subprocess; subprocess.run(['echo', 'hi'])", "subprocess.Popen is not allowed"),
    ("import os; os.system('echo hi')", "os.system is not allowed"),
    ("import os; os.execv('/bin/echo', ['echo', 'hi'])", "os.exec is not allowed"),
    ("import os; os.posix_spawn('/bin/echo', ['echo'], {})", "os.posix_spawn is not allowed"),
    ("import _posixsubprocess; _posixsubprocess.fork_exec()", "creating processes is not allowed"),
    ("import multiprocessing; multiprocessing.Process(target=print).start()", "os.fork is not allowed"),
    ("import ctypes", "importing ctypes is not allowed"),
    ("import resource; resource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "resource.setrlimit is not allowed"),
])
def test_process_creation_and_escape_hatches_are_refused(sandbox: Tool, code: str, refused: str) -> None:
    parent = os.getpid()
    obs = run(sandbox, code)
    assert obs.error
    assert f"PermissionError: sandbox: {refused}" in obs.content or f"ImportError: sandbox: {refused}" in obs.content
    assert "hi\n" not in obs.content
    assert os.getpid() == parent
    still_works(sandbox)


def test_signalling_the_parent_is_refused(sandbox: Tool) -> None:
    obs = run(sandbox, f"import os, signal; os.kill({os.getpid()}, signal.SIGTERM)")
    assert obs.error and "signalling other processes is not allowed" in obs.content
    still_works(sandbox)


@pytest.mark.parametrize("path", ["/etc/passwd", "/proc/1/environ", "OUTSIDE"])
def test_reading_outside_the_workspace_is_refused(sandbox: Tool, outside: Path, path: str) -> None:
    path = str(outside) if path == "OUTSIDE" else path
    obs = run(sandbox, f"print(open({path!r}).read())")
    assert obs.error
    assert f"PermissionError: sandbox: reading {path!r} is not allowed" in obs.content
    assert "top secret" not in obs.content and "root:" not in obs.content
    still_works(sandbox)


def test_a_symlink_out_of_the_workspace_and_listings_are_refused(sandbox: Tool, outside: Path) -> None:
    code = f"import os\nos.symlink({str(outside)!r}, 'link.txt')\nprint(open('link.txt').read())"
    obs = run(sandbox, code)
    assert obs.error and "reading 'link.txt' is not allowed" in obs.content and "top secret" not in obs.content
    listing = run(sandbox, f"import os; print(os.listdir({str(outside.parent)!r}))")
    assert listing.error and "listing" in listing.content and "secret.txt" not in listing.content
    still_works(sandbox)


def test_writing_or_deleting_outside_the_workspace_is_refused(sandbox: Tool, outside: Path) -> None:
    target = outside.parent / "planted.txt"
    obs = run(sandbox, f"open({str(target)!r}, 'w').write('x')")
    assert obs.error and "writing" in obs.content and not target.exists()
    removed = run(sandbox, f"import os; os.remove({str(outside)!r})")
    assert removed.error and "os.remove" in removed.content and outside.read_text() == "top secret"
    still_works(sandbox)


def test_the_parent_environment_is_not_visible(sandbox: Tool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAOBAB_TEST_SECRET", "s3cret")
    obs = run(sandbox, "import os; print(os.environ.get('BAOBAB_TEST_SECRET')); print(dict(os.environ))")
    assert not obs.error
    assert obs.content.startswith("None\n")
    assert "s3cret" not in obs.content
    assert "BAOBAB_TEST_SECRET" not in run(sandbox, "print(open('/proc/self/environ').read())").content
    still_works(sandbox)


def test_network_is_refused_by_default(sandbox: Tool) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        obs = run(sandbox, f"import socket; socket.socket().connect(('127.0.0.1', {port}))")
    assert obs.error and "socket.connect is not allowed" in obs.content
    still_works(sandbox)


def test_failures_show_the_program_traceback_only(sandbox: Tool) -> None:
    obs = run(sandbox, "def f():\n    raise ValueError('boom')\nprint('before')\nf()")
    assert obs.error
    lines = obs.content.splitlines()
    assert lines[0] == "before"
    assert lines[-3:] == ["    raise ValueError('boom')", "ValueError: boom", "[python: exit status 1]"]
    assert "    f()" in lines
    assert "sandbox_boot" not in obs.content
    assert run(sandbox, "import sys; sys.exit(3)").content == "[python: exit status 3]"
    assert "SyntaxError" in run(sandbox, "print(").content


def test_output_is_cut_in_the_middle(sandbox: Tool) -> None:
    obs = run(sandbox, "print('a' * 5000 + 'b' * 5000)\nraise SystemExit('the end')")
    assert obs.error
    assert obs.content.startswith("a" * 1000)
    assert "characters cut" in obs.content
    assert obs.content.endswith("the end\n[python: exit status 1]")
    assert len(obs.content) < 2_200
    assert run(sandbox, "pass").content == "(no output: print the values you want to see)"


def test_resource_limits_are_set_in_the_child(sandbox: Tool, workspace: Path) -> None:
    code = "import resource as r; print([r.getrlimit(k) for k in (r.RLIMIT_AS, r.RLIMIT_CPU, r.RLIMIT_FSIZE)])"
    assert run(sandbox, code).content == f"[{(256 * 2**20,) * 2}, (5, 6), {(64 * 2**20,) * 2}]\n"
    big = run(sandbox, "open('big.bin', 'wb').write(bytes(65 * 2**20))")
    assert big.error and big.content.endswith("[python: the file-size limit of 64 MB was exceeded]")
    assert (workspace / "big.bin").stat().st_size <= 64 * 2**20
    still_works(sandbox)


def test_a_fresh_scratch_workspace_when_none_is_given() -> None:
    scratch = python()
    assert run(scratch, "import os; print(os.getcwd().startswith(os.environ['TMPDIR']), os.listdir('.'))").content \
        == "True []\n"


def test_dir_fd_operations_work_inside_and_cannot_reach_outside(sandbox: Tool) -> None:
    inside = "import os, shutil\nos.makedirs('tree/a/b')\nopen('tree/a/b/f', 'w').close()\nshutil.rmtree('tree')\n" \
             "print(os.path.exists('tree'))"
    assert run(sandbox, inside).content == "False\n"
    obs = run(sandbox, "import os, sys\nfd = os.open(sys.prefix, os.O_RDONLY)\nos.remove('x', dir_fd=fd)")
    assert obs.error and "opening the directory" in obs.content
    still_works(sandbox)
