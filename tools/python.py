"""The `python` tool: run a program in a separate, limited and confined process; return what it printed."""

import asyncio
import contextlib
import math
import os
import signal
import sys
from pathlib import Path

from baobab.tools.tool import Tool, ToolError, tool
from baobab.tools.workspace import workspace as make_workspace

BOOT = Path(__file__).with_name("sandbox_boot.py")
FILE_LIMIT = 64 * 2**20  # the largest file the program may write
_SIGNALS = {signal.SIGXCPU: "the CPU-time limit", signal.SIGKILL: "SIGKILL (likely the memory limit)"}


def python(workspace: str | Path | None = None, time_limit: float = 10.0, memory_mb: int = 512,
           output_limit: int = 10_000, network: bool = False) -> Tool:
    """A tool that runs Python code in a sandboxed child process (cwd and HOME = the workspace).

    The child sees no environment of ours, cannot create processes, open files outside the workspace (reading
    Python's own installation aside), use the network (unless `network`), or outlive `time_limit` seconds;
    its memory is capped at `memory_mb`.

    >>> python().run_sync({"code": "print(17 * 23)"}).content
    '391\\n'
    """
    folder = make_workspace(workspace)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": str(folder),
           "TMPDIR": str(folder), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-I", "-B", "-u", "-X", "utf8", str(BOOT), str(memory_mb * 2**20),
            str(math.ceil(time_limit)), str(FILE_LIMIT), str(int(network))]

    @tool(name="python", timeout=time_limit + 10)
    async def run(code: str) -> str:
        """Run a Python program and return what it prints (stdout and stderr), and the value of its last line
        if that is an expression (as in a notebook). Files it writes stay in its working folder between calls;
        it cannot start processes or read files outside that folder.

        Args:
            code: the whole program; print the values you want to see.
        """
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            cwd=folder, env=env, start_new_session=True)  # its own process group, killed as a whole below
        output = _Output(output_limit)
        assert process.stdin is not None and process.stdout is not None
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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):  # (bounded: nothing may leave the pipe open, but if it did)
                async with asyncio.timeout(5):
                    while await process.stdout.read(65536):  # unread output keeps wait() from ever returning
                        pass
                    await process.wait()
        return _result(process.returncode, output.text(), memory_mb)

    return run


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
