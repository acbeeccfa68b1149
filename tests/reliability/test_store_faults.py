"""Store faults: a full disk, a read-only file system, a lock held by another process, a newer schema.

Each is a StoreError naming the database and the cause; the failed transaction leaves nothing behind,
the last checkpoint stays readable, and the run resumes once the fault is gone.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel

from baobab.graphs import END, START, App, Checkpointer, Graph, append
from baobab.store import SCHEMA_VERSION, Store, StoreError
from baobab.store.trace import tracer_for


class Log(BaseModel):
    log: Annotated[list[str], append] = []


def appender(store: Store | str, steps: int = 400, size: int = 4000) -> App:
    """A graph that appends one numbered, padded entry per step for `steps` steps."""
    graph = Graph(Log).node("grow", lambda s: {"log": [f"{len(s.log)}:" + "x" * size]}).edge(START, "grow")
    graph.route("grow", lambda s: "grow" if len(s.log) < steps else END, ["grow", END])
    return graph.compile(checkpointer=store if isinstance(store, Store) else Checkpointer(store),
                         recursion_limit=10 * steps)


def exact(log: list[str], steps: int) -> bool:
    return [entry.split(":")[0] for entry in log] == [str(i) for i in range(steps)]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 384 KiB tmpfs mounted for the test (we run as root), unmounted after."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); these tests need root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def test_a_full_disk_is_named_loses_nothing_committed_and_the_run_resumes(small_disk: Path) -> None:
    url = f"sqlite:///{small_disk / 'runs.db'}"
    app = appender(url)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"runs\.db: the disk is full .*nothing of it was written"):
        app.run(thread="big")
    detected = time.monotonic() - started
    before = app.state("big")  # the last committed checkpoint still reads back
    assert isinstance(before, Log) and 0 < len(before.log) < 400 and exact(before.log, len(before.log))
    remount(small_disk, "size=64m")
    result = app.resume("big")
    assert result.status == "done" and exact(result.state.log, 400)  # type: ignore[attr-defined]
    print(f"full disk detected after {detected:.2f} s at step {len(before.log)}")


def test_a_read_only_file_system_refuses_the_first_write_clearly(small_disk: Path) -> None:
    remount(small_disk, "size=8m")  # room enough: this test is about writes refused, not space
    url = f"sqlite:///{small_disk / 'runs.db'}"
    app = appender(url, steps=3, size=10)
    assert exact(app.run(thread="first").state.log, 3)  # type: ignore[attr-defined]
    tracer_for(app.checkpointer.store).flush()  # type: ignore[union-attr]
    app.checkpointer.store.close()  # type: ignore[union-attr]  # an open file keeps a remount from happening
    remount(small_disk, "ro")
    opened: list[App] = []
    try:  # refused at the open or at the first write, depending on what SQLite needs to create
        with pytest.raises(StoreError, match=r"runs\.db: (the database is read-only|cannot open the database file "
                                             r"\(.*read-only file system\))"):
            opened.append(appender(url, steps=3, size=10))
            opened[0].run(thread="second")
    finally:
        for refused in opened:  # SQLite shares a file's state within a process: close what saw it read-only
            refused.checkpointer.store.close()  # type: ignore[union-attr]
        remount(small_disk, "rw")
    again = appender(url, steps=3, size=10)
    assert [t.name for t in again.checkpointer.threads()] == ["first"]  # type: ignore[union-attr]
    assert exact(again.run(thread="second").state.log, 3)  # type: ignore[attr-defined]


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def test_a_lock_held_by_another_process_fails_after_the_timeout_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    Store(f"sqlite:///{path}").close()  # the schema exists
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), "2"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    store = Store(f"sqlite:///{path}", busy_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"runs\.db: another process holds the database's write lock"):
        appender(store, steps=2).run(thread="waits")
    waited = time.monotonic() - started
    assert 0.4 < waited < 4, waited
    holder.wait(timeout=30)
    assert Checkpointer(f"sqlite:///{path}").thread("waits") is None  # nothing half-written
    assert exact(appender(f"sqlite:///{path}", steps=2).run(thread="waits").state.log, 2)  # type: ignore[attr-defined]


def test_a_database_from_a_newer_baobab_is_refused_with_both_versions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'future.db'}"
    store = Store(url)
    with store.transaction() as conn:
        conn.exec_driver_sql(f"UPDATE baobab_schema SET version = {SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(StoreError, match=rf"future\.db has schema version {SCHEMA_VERSION + 1}, newer than this "
                                         rf"Baobab's {SCHEMA_VERSION}: upgrade baobab"):
        Store(url)
