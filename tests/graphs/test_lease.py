"""Thread leases: a thread whose process died (kill -9, a lost host) reads `interrupted`, a live one `running`;
resume takes the lease over and runs the thread to its end."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select, update
from typer.testing import CliRunner

from baobab.cli import app as cli
from baobab.graphs import END, START, Checkpoint, Checkpointer, Graph
from baobab.graphs.batch import run_thread
from baobab.graphs.checkpoint import ThreadInfo
from baobab.graphs.lease import this_process
from baobab.store.schema import thread_leases, threads

WORKER = Path(__file__).with_name("crash_worker.py")


class S(BaseModel):
    n: int = 0
    seen: str = ""


def two_steps() -> Graph:
    g = Graph(S).node("a", lambda s: {"n": s.n + 1}).node("b", lambda s: {"n": s.n + 10})
    return g.edge(START, "a").edge("a", "b").edge("b", END)


def info(cp: Checkpointer, thread: str) -> ThreadInfo:
    found = cp.thread(thread)
    assert found is not None
    return found


def lease_of(cp: Checkpointer, thread: str) -> Any:
    with cp.store.transaction() as conn:
        return conn.execute(select(thread_leases).join(threads).where(threads.c.name == thread)).one()


def set_lease(cp: Checkpointer, thread: str, **values: Any) -> None:
    with cp.store.transaction() as conn:
        conn.execute(update(thread_leases).where(thread_leases.c.thread == info(cp, thread).id).values(**values))


def test_a_run_reads_running_while_its_process_lives_and_interrupted_once_killed_then_resumes_to_done(
        store_url: str, tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    proc = subprocess.Popen([sys.executable, str(WORKER), store_url, str(counter), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while "b2" not in _lines(counter):  # b2 is done, b1 sleeps on: a step is in flight
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the worker never reached the kill point"
        time.sleep(0.01)
    cp = Checkpointer(store_url)
    live = info(cp, "job")
    assert live.status == "running" and not live.crashed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    killed = info(cp, "job")
    assert killed.status == "interrupted" and killed.crashed
    assert killed.detail == {"reason": f"process {proc.pid} on {this_process().host} has ended"}
    assert [t.status for t in cp.threads()] == ["interrupted"]
    listed = CliRunner().invoke(cli, ["threads", "list", "--db", store_url])
    assert listed.exit_code == 0 and "interrupted" in listed.output and "running" not in listed.output

    done = subprocess.Popen([sys.executable, str(WORKER), store_url, str(counter), "resume"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert out.strip() == "a,b1,b2,c,d,e"
    finished = info(cp, "job")
    assert finished.status == "done" and not finished.crashed
    assert lease_of(cp, "job").pid == done.pid  # the resumed run took the lease over


def test_a_lease_from_another_host_is_lost_once_its_heartbeat_is_older_than_the_timeout(store_url: str) -> None:
    cp = Checkpointer(store_url, lease_timeout=60)
    cp.create_thread("t", "g", pending={"tasks": [], "joins": {}}, snapshot="{}")
    set_lease(cp, "t", host="ray-worker-7", machine="another-boot/pid:[1]", pid=4242, started=99,
              heartbeat=time.time() - 5)
    fresh = info(cp, "t")
    assert fresh.status == "running" and not fresh.crashed

    set_lease(cp, "t", heartbeat=time.time() - 120)
    stale = info(cp, "t")
    assert stale.status == "interrupted" and stale.crashed
    assert stale.detail["reason"].startswith("no heartbeat from process 4242 on ray-worker-7 for 12")
    assert info(Checkpointer(store_url, lease_timeout=600), "t").status == "running"


def test_a_pid_of_this_machine_now_naming_another_process_is_not_the_owner(store_url: str) -> None:
    cp = Checkpointer(store_url)
    cp.create_thread("t", "g", pending={"tasks": [], "joins": {}}, snapshot="{}")
    mine = lease_of(cp, "t")
    assert (mine.pid, mine.started, mine.host) == (os.getpid(), this_process().started, this_process().host)
    assert info(cp, "t").status == "running"
    set_lease(cp, "t", started=mine.started - 1)  # the pid was reused: this process started later than the owner
    assert info(cp, "t").status == "interrupted"


def test_resume_of_a_crashed_thread_in_this_process_takes_its_lease_and_ends_done(store_url: str) -> None:
    app = two_steps().compile(checkpointer=store_url)
    for event in app.stream(thread="t"):
        if isinstance(event, Checkpoint) and event.step == 1:
            break  # the run stops after a: its thread is left running
    cp = app.checkpointer
    assert cp is not None and info(cp, "t").status == "running"
    set_lease(cp, "t", pid=2**22 + 1, started=1)  # its owner was another process of this machine, now gone
    assert info(cp, "t").status == "interrupted"

    result = app.resume("t")
    assert result.status == "done" and result.state.n == 11  # type: ignore[attr-defined]
    assert info(cp, "t").status == "done"
    assert (lease_of(cp, "t").pid, lease_of(cp, "t").started) == (os.getpid(), this_process().started)


def test_run_thread_resumes_a_crashed_thread_and_a_thread_without_a_lease_resumes_too(store_url: str) -> None:
    app = two_steps().compile(checkpointer=store_url)
    cp = app.checkpointer
    assert cp is not None
    for name in ("crashed", "legacy"):
        for event in app.stream(thread=name):
            if isinstance(event, Checkpoint) and event.step == 1:
                break
    set_lease(cp, "crashed", heartbeat=0.0)
    with cp.store.transaction() as conn:  # a thread stored by a Baobab without leases keeps its status
        conn.execute(thread_leases.delete().where(thread_leases.c.thread == info(cp, "legacy").id))
    assert info(cp, "legacy").status == "running"

    result = asyncio.run(run_thread(app, None, "crashed"))  # a batch run again resumes what crashed
    assert result.status == "done" and result.state.n == 11  # type: ignore[attr-defined]
    assert app.resume("legacy").status == "done"
    assert lease_of(cp, "legacy").pid == os.getpid()


def test_a_store_made_before_leases_gains_their_table_when_opened(store_url: str) -> None:
    app = two_steps().compile(checkpointer=store_url)
    for event in app.stream(thread="old"):
        if isinstance(event, Checkpoint) and event.step == 1:
            break
    assert app.checkpointer is not None
    with app.checkpointer.store.transaction() as conn:
        thread_leases.drop(conn)
    cp = Checkpointer(store_url)  # opening it again creates the missing table; the thread's status stands
    assert info(cp, "old").status == "running"
    assert app.with_checkpointer(cp).resume("old").status == "done"


def test_the_heartbeat_beats_through_a_step_longer_than_the_lease_timeout(store_url: str) -> None:
    cp = Checkpointer(store_url, lease_timeout=1.2)  # a beat every 0.2 s

    def slow(state: S) -> dict[str, str]:
        time.sleep(2.0)  # longer than the timeout since the last commit
        seen = Checkpointer(cp.store, lease_timeout=1.2).thread("slow")
        return {"seen": seen.status if seen else "none"}

    result = Graph(S).node("slow", slow).edge(START, "slow").edge("slow", END).compile(checkpointer=cp).run(
        thread="slow")
    assert result.state.seen == "running"  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while any(t.name == "baobab-heartbeat" for t in threading.enumerate()):  # it stops once no run holds a lease
        assert time.monotonic() < deadline, "the heartbeat thread outlived the run"
        time.sleep(0.05)


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []
