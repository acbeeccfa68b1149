"""kill -9 of a real process in the middle of a run; resume loses no step and runs none twice."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baobab.graphs import Checkpointer

WORKER = Path(__file__).with_name("crash_worker.py")


@pytest.mark.parametrize("kill_after", [
    "b2",  # in a parallel step: b2 has finished and b1 is still sleeping
    "c",   # in a one-node step: d is sleeping
])
def test_kill_9_mid_run_then_resume_runs_every_step_exactly_once(tmp_path: Path, kill_after: str) -> None:
    url, counter = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "counter.txt"
    proc = subprocess.Popen([sys.executable, str(WORKER), url, str(counter), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while kill_after not in _lines(counter):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the worker never reached the kill point"
        time.sleep(0.01)
    time.sleep(0.3)  # past the commit of the marker's write, well inside the next node's sleep
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _lines(counter)
    assert "e" not in before and before[-1] == kill_after
    info = Checkpointer(url).thread("job")
    assert info is not None and info.status == "interrupted" and info.crashed  # its lease's process is gone

    done = subprocess.run([sys.executable, str(WORKER), url, str(counter), "resume"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "a,b1,b2,c,d,e"
    assert sorted(_lines(counter)) == sorted(["a", "b1", "b2", "c", "d", "e"])  # each side effect once


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []
