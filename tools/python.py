"""The `python` tool: run a program in a separate, limited and confined process; return what it printed."""

import asyncio
import contextlib
import math
import os
import signal
import stat
import sys
import time
from pathlib import Path

from baobab.tools.tool import Tool, ToolError, tool
from baobab.tools.workspace import UNMEASURED, disk_usage
from baobab.tools.workspace import workspace as make_workspace

BOOT = Path(__file__).with_name("sandbox_boot.py")
FILE_LIMIT = 64 * 2**20  # the largest file the program may write
SANDBOX_ID = 65533  # the uid and gid the child takes when we are root: no account has it, it owns nothing else
POLL = 0.05  # seconds between looks at the workspace's size while a program runs
_SIGNALS = {signal.SIGXCPU: "the CPU-time limit", signal.SIGKILL: "SIGKILL (likely the memory limit)"}


def python(workspace: str | Path | None = None, time_limit: float = 10.0, memory_mb: int = 512,
           output_limit: int = 10_000, network: bool = False, call_disk_mb: int = 256,
           workspace_disk_mb: int = 1024) -> Tool:
    """A tool that runs Python code in a sandboxed child process (cwd and HOME = the workspace).

    The child sees no environment of ours, cannot create processes, open files outside the workspace (reading
    Python's own installation aside), use the network (unless `network`), or outlive `time_limit` seconds;
    its memory is capped at `memory_mb`. Started by root, it runs as uid SANDBOX_ID (the workspace is given to that
    uid before each call), always without capabilities. Disk: one call may add `call_disk_mb` to the workspace,
    which may hold `workspace_disk_mb` in all; the child is stopped within about POLL seconds of going over (each
    file is also capped at 64 MB by the kernel), and a full workspace refuses writes until files are deleted.

    >>> python(call_disk_mb=16).run_sync({"code": "print(17 * 23)"}).content
    '391\\n'
    """
    folder = make_workspace(workspace)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(folder),
           "TMPDIR": str(folder), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    owner = (SANDBOX_ID, SANDBOX_ID) if os.geteuid() == 0 else None
    quota = _Quota(call_disk_mb * 2**20, workspace_disk_mb * 2**20)

    @tool(name="python", timeout=time_limit + 10)
    async def run(code: str) -> str:
        """Run a Python program and return what it prints (stdout and stderr), and the value of its last line
        if that is an expression (as in a notebook). Files it writes stay in its working folder between calls;
        it cannot start processes or read files outside that folder.

        Args:
            code: the whole program; print the values you want to see.
        """
        before = await asyncio.to_thread(disk_usage, folder, owner)
        budget = quota.budget(before)
        argv = [sys.executable, "-I", "-B", "-u", "-X", "utf8", str(BOOT), str(memory_mb * 2**20),
                str(math.ceil(time_limit)), str(min(FILE_LIMIT, budget)), str(int(network)), str(SANDBOX_ID)]
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=folder, env=env, start_new_session=True)  # its own process group, killed as a whole below
        output = _Output(output_limit)
        assert process.stdin is not None and process.stdout is not None
        watcher = asyncio.create_task(_watch(process.pid, folder, before + budget))
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(code.encode())
                await process.stdin.drain()
                process.stdin.close()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + time_limit
            async with asyncio.timeout_at(deadline):
                while chunk := await process.stdout.read(65536):
                    output.add(chunk)
                    if loop.time() > deadline:  # a flood of output never lets the loop run the timeout
                        raise TimeoutError
                await process.wait()
        except TimeoutError:
            raise ToolError(_noted(output.text(), f"stopped after the time limit of {time_limit:g} s")) from None
        finally:
            watcher.cancel()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):  # (bounded: nothing may leave the pipe open, but if it did)
                async with asyncio.timeout(5):
                    while await process.stdout.read(65536):  # unread output keeps wait() from ever returning
                        pass
                    await process.wait()
        seen = watcher.result() if watcher.done() and not watcher.cancelled() else 0  # what got it stopped
        after = max(seen, await asyncio.to_thread(disk_usage, folder))  # (unlinked files are gone by now)
        if after - before > budget:  # stopped by the watcher, or went over between its looks and ended
            raise ToolError(_noted(output.text(), quota.exceeded(before, after)))
        if budget < FILE_LIMIT and "OSError: [Errno 27] File too large" in output.text()[-2000:]:
            raise ToolError(_noted(output.text(), quota.full(before)))
        return _result(process.returncode, output.text(), memory_mb)

    return run


class _Quota:
    """The disk a call may add to the workspace: `per_call` bytes, and none past `per_workspace` in all."""

    def __init__(self, per_call: int, per_workspace: int) -> None:
        self.per_call, self.per_workspace = per_call, per_workspace

    def budget(self, used: int) -> int:
        """What a call may add to a workspace that holds `used` bytes."""
        return max(0, min(self.per_call, self.per_workspace - used))

    def exceeded(self, before: int, after: int) -> str:
        """The note for a call that took the workspace from `before` to `after` bytes, past its budget."""
        if self.budget(before) == 0:
            return self.full(before)
        if after >= UNMEASURED:
            return (f"stopped: it made a folder that cannot be measured (nested over 64 deep, or unreadable), "
                    f"which counts as over the disk quota of {_mb(self.per_workspace)} per workspace")
        limit = (f"the disk quota of {_mb(self.per_call)} per call" if self.budget(before) == self.per_call else
                 f"the disk quota of {_mb(self.per_workspace)} per workspace, which held {_mb(before)} before")
        return f"stopped after adding {_mb(after - before)} to the workspace: over {limit}"

    def full(self, used: int) -> str:
        """The note for a write refused because the workspace, holding `used` bytes, is (nearly) full."""
        held = "folders that cannot be measured" if used >= UNMEASURED else _mb(used)
        return (f"the workspace is full: it holds {held} of its disk quota of {_mb(self.per_workspace)} "
                f"(this call could add {_mb(self.budget(used))}); delete files to make room")


async def _watch(pid: int, folder: Path, limit: int) -> int:
    """Kill process group `pid` once the workspace, with the unlinked files it holds open, takes more than `limit`
    bytes, and return what it took; look every POLL seconds, or less often in a large workspace (a third of the
    time at most)."""
    while True:
        started = time.monotonic()
        used = await asyncio.to_thread(_used, pid, folder)
        if used > limit:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            return used
        await asyncio.sleep(max(POLL, 2 * (time.monotonic() - started)))


def _used(pid: int, folder: Path) -> int:
    """The workspace's disk use, plus the files process `pid` writes without a name (unlinked, memfd): they take
    space until it ends, and the walk cannot see them."""
    hidden = 0
    # ended: it holds nothing; PermissionError: undumpable while it confines itself (a parent that is not root then
    # sees none of its files, which RLIMIT_NOFILE and RLIMIT_FSIZE bound, and which go when it ends)
    with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(FileNotFoundError):  # closed meanwhile
                info = os.stat(f"/proc/{pid}/fd/{fd}")
                if stat.S_ISREG(info.st_mode) and info.st_nlink == 0:
                    hidden += info.st_blocks * 512
    return disk_usage(folder) + hidden


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


def _result(status: int | None, text: str, memory_mb: int) -> str:
    """The program's output, or a ToolError saying how it failed (output included)."""
    if status == 0:
        return text or "(no output: print the values you want to see)"
    if status is not None and status < 0:
        what = _SIGNALS.get(signal.Signals(-status), signal.Signals(-status).name)
        raise ToolError(_noted(text, f"killed by {what}"))
    if "MemoryError" in text[-2000:]:
        raise ToolError(_noted(text, f"the memory limit of {memory_mb} MB was exceeded"))
    if "OSError: [Errno 27] File too large" in text[-2000:]:  # Python ignores SIGXFSZ: the write fails instead
        raise ToolError(_noted(text, f"the file-size limit of {FILE_LIMIT // 2**20} MB was exceeded"))
    raise ToolError(_noted(text, f"exit status {status}"))


def _noted(text: str, note: str) -> str:
    """Output followed by a note on how the program ended."""
    return f"{text.rstrip()}\n[python: {note}]" if text.strip() else f"[python: {note}]"


class _Output:
    """Captured output that keeps its beginning and its end (where a traceback is) within a bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        """Append a chunk, dropping bytes from the middle once the bound is reached."""
        room = max(0, 4 * self.limit - len(self.head))  # 4 bytes per character at most in UTF-8
        self.head += chunk[:room]
        self.tail += chunk[room:]
        excess = len(self.tail) - 4 * self.limit
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        """The output, cut in the middle to `limit` characters if longer."""
        whole = (self.head + self.tail).decode(errors="replace")
        if not self.dropped and len(whole) <= self.limit:
            return whole
        keep = self.limit // 2
        cut = len(whole) - 2 * keep + self.dropped
        return f"{whole[:keep]}\n... [{cut} characters cut] ...\n{whole[-keep:]}"
