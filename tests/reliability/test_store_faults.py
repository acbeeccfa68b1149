"""Store faults: a full disk, a read-only database, a lock held by another process, a newer schema.

Each is a StoreError naming the database and the cause; the failed transaction leaves nothing behind,
what was committed stays readable, and the work resumes once the fault is gone. The full disk is a real
small file system (tmpfs, or ext4 on a loop device: both need root) and a file-size limit (any user);
the work that meets it runs in a process of its own (crash_worker.py's fill-* kinds).
"""

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, inspect, select, text

from baobab.graphs import END, START, App, Checkpointer, Graph, append
from baobab.search.persist import read_run
from baobab.store import SCHEMA_VERSION, Store, StoreError
from baobab.store.schema import memory_notes
from baobab.store.trace import tracer_for

WORKER = Path(__file__).with_name("crash_worker.py")
if "reliability_crash_worker" not in sys.modules:  # the worker's module, shared with test_crash_random.py
    spec = importlib.util.spec_from_file_location("reliability_crash_worker", WORKER)
    assert spec is not None and spec.loader is not None
    sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[spec.name])
ForkServer = sys.modules["reliability_crash_worker"].ForkServer
ROOM = 384 * 1024  # what the small disk has free for the database
NOBODY = 65534


class Log(BaseModel):
    log: Annotated[list[str], append] = []


def appender(store: Store | str, steps: int = 3, size: int = 10) -> App:
    """A graph that appends one numbered, padded entry per step for `steps` steps."""
    graph = Graph(Log).node("grow", lambda s: {"log": [f"{len(s.log)}:" + "x" * size]}).edge(START, "grow")
    graph.route("grow", lambda s: "grow" if len(s.log) < steps else END, ["grow", END])
    return graph.compile(checkpointer=store if isinstance(store, Store) else Checkpointer(store),
                         recursion_limit=10 * steps)


def exact(log: list[str], steps: int) -> bool:
    return [entry.split(":")[0] for entry in log] == [str(i) for i in range(steps)]


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    forks = ForkServer()
    yield forks
    forks.close()


def work(server: Any, kind: str, url: str, out: Path, **settings: int) -> dict[str, Any]:
    """Run the worker's `fill-{kind}` in a process of its own; what it printed."""
    status = server.wait(server.start(f"fill-{kind}", url, out.with_suffix(".effects"), out, **settings))
    assert status == 0, Path(f"{out}.err").read_text()
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.fixture(scope="module")
def calm(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Any]:
    """A fill kind's result with room enough, once per module."""
    results: dict[str, Any] = {}

    def get(kind: str) -> Any:
        if kind not in results:
            folder = tmp_path_factory.mktemp(f"calm-{kind}")
            results[kind] = work(server, kind, f"sqlite:///{folder / 'runs.db'}", folder / "out.json")["result"]
        return results[kind]

    return get


@dataclass
class SmallDisk:
    """A folder with ROOM bytes to write: on a small file system kept nearly full, or under a file-size limit."""

    how: str  # tmpfs | loop | rlimit
    folder: Path
    settings: dict[str, int] = field(default_factory=dict)  # the worker's file-size limit, for rlimit
    filler: Path | None = None  # what takes the rest of a mounted file system

    def free(self) -> None:
        """Make room: delete the filler, or lift the limit."""
        if self.filler is not None:
            self.filler.unlink()
        self.settings.clear()


def mount(how: str, folder: Path, image: Path) -> None:
    """A fresh 8 MiB tmpfs, or 12 MiB of ext4 on a loop device, at `folder`; skips the test (saying why) if it
    cannot."""
    if how == "loop":
        with image.open("wb") as f:
            f.truncate(12 * 2**20)  # ext4 leaves 7.6 of 8 MiB, and a resumed graph run's WAL peaks at 4.9 MB
        made = subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "^has_journal", "-m", "0", str(image)],
                              capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make an ext4 image ({made.stderr.strip()})")
    command = (["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)] if how == "tmpfs" else
               ["mount", "-o", "loop", str(image), str(folder)])
    mounted = subprocess.run(command, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small {how} here ({mounted.stderr.strip()}; needs root): the rlimit variant "
                    f"still runs")


@pytest.fixture(params=["tmpfs", "loop", "rlimit"])
def small_disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmallDisk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    if request.param == "rlimit":
        yield SmallDisk("rlimit", folder, {"fsize": ROOM})
        return
    mount(request.param, folder, tmp_path / "disk.img")
    try:
        filler = folder / "filler"
        with filler.open("wb") as f:
            os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(folder).free - ROOM)
        yield SmallDisk(request.param, folder, filler=filler)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def committed(kind: str, url: str) -> int:
    """How much work the store holds, having checked that it is whole: a prefix, each unit once, consistent."""
    store = Store(url)
    try:
        if kind == "graph":
            cp = Checkpointer(store)
            info = cp.thread("big")
            if info is None:
                return 0
            numbers = [int(json.loads(w.data)["log"][0].split(":")[0]) for w in cp.thread_updates(info.id)]
            assert numbers == list(range(len(numbers)))
            assert [c.step for c in cp.history(info.id, "big")] == list(range(len(numbers), -1, -1))
            return len(numbers)
        if kind == "search":
            run = read_run(store, "big")  # a tree with holes in its numbering would not load
            if run is None or run.tree is None:
                return 0
            nodes = run.tree.nodes
            assert all(n.parent is None or n.id in nodes[n.parent].children for n in nodes)
            assert all(nodes[c].parent == n.id for n in nodes for c in n.children)
            return run.tree.expansions
        with store.transaction() as conn:
            notes = dict(conn.execute(select(memory_notes.c.id, memory_notes.c.content)).all())
            indexed = conn.execute(text("SELECT rowid FROM memory_fts")).scalars().all() if notes else []
        assert sorted(indexed) == sorted(notes)  # no note without its full-text row, nor a row without its note
        assert [int(notes[i].split(":")[0].split()[1]) for i in sorted(notes)] == list(range(len(notes)))
        return len(notes)
    finally:
        store.close()


CAUSE = {"tmpfs": "the disk is full", "loop": "the disk is full",
         "rlimit": r"a write went past this process's file-size limit \(RLIMIT_FSIZE \d+ bytes\)"}


@pytest.mark.parametrize("kind", ["graph", "search", "memory"])
def test_a_full_disk_is_named_keeps_what_was_committed_and_the_work_resumes(
        server: Any, calm: Callable[[str], Any], small_disk: SmallDisk, kind: str) -> None:
    url, out = f"sqlite:///{small_disk.folder / 'runs.db'}", small_disk.folder.parent / "out.json"
    first = work(server, kind, url, out, **small_disk.settings)
    assert "error" in first, "the work fitted: make it bigger"
    assert re.fullmatch(rf"sqlite:///\S*/runs\.db: {CAUSE[small_disk.how]} \(.*\); the transaction was rolled "
                        rf"back, nothing of it was written", first["error"]), first["error"]
    kept = committed(kind, url)  # what was committed reads back whole
    assert kept > 0
    small_disk.free()
    assert work(server, kind, url, out, **small_disk.settings) == {"result": calm(kind)}  # as if it never failed
    print(f"{small_disk.how} {kind}: {first['error'].split(': ', 1)[1].split(' (')[0]} after {kept} units "
          f"({first['seconds']:.2f} s of work), resumed to the end once there was room")


@pytest.mark.parametrize("protect", ["file", "folder"])
def test_a_read_only_database_file_or_folder_refuses_the_first_write_and_writes_nothing(
        server: Any, calm: Callable[[str], Any], tmp_path: Path, protect: str) -> None:
    if os.geteuid() != 0:  # the worker then runs as this user, whom the permissions bind
        uid, settings = os.geteuid(), {}
    else:  # root ignores permissions: the worker runs as nobody
        uid, settings = NOBODY, {"uid": NOBODY}
    folder = Path(tempfile.mkdtemp(prefix="baobab-ro-"))  # outside tmp_path, which nobody may not enter
    try:
        database = folder / "runs.db"
        Store(f"sqlite:///{database}").close()  # an empty Baobab database
        folder.chmod(0o755)
        if protect == "file":  # the folder is the worker's, the database file is not
            os.chown(folder, uid, -1)
            database.chmod(0o444)
        else:  # the database file is the worker's, the folder is not: no room for its journal
            os.chown(database, uid, -1)
        before = hashlib.sha256(database.read_bytes()).hexdigest()
        first = work(server, "graph", f"sqlite:///{database}", tmp_path / "out.json", **settings)
        assert re.fullmatch(r"sqlite:///\S*/runs\.db: (the database is read-only|cannot open the database file "
                            r"\(.*\)) \(.*\); the transaction was rolled back, nothing of it was written",
                            first.get("error", "")), first
        assert first["seconds"] < 1  # at the first write, not after a run's worth of work
        assert hashlib.sha256(database.read_bytes()).hexdigest() == before  # nothing written
        assert committed("graph", f"sqlite:///{database}") == 0
        database.chmod(0o644)
        os.chown(folder, uid, -1)
        os.chown(database, uid, -1)
        assert work(server, "graph", f"sqlite:///{database}", tmp_path / "out.json", **settings) == {
            "result": calm("graph")}
        print(f"read-only {protect}: {first['error'].split(': ', 1)[1].split(' (')[0]} after "
              f"{first['seconds'] * 1000:.0f} ms")
    finally:
        shutil.rmtree(folder)


def test_a_read_only_file_system_refuses_the_first_write_clearly(tmp_path: Path) -> None:
    folder = tmp_path / "disk"
    folder.mkdir()
    mount("tmpfs", folder, tmp_path / "disk.img")
    try:
        url = f"sqlite:///{folder / 'runs.db'}"
        app = appender(url)
        assert exact(app.run(thread="first").state.log, 3)  # type: ignore[attr-defined]
        tracer_for(app.checkpointer.store).flush()  # type: ignore[union-attr]
        app.checkpointer.store.close()  # type: ignore[union-attr]  # an open file keeps a remount from happening
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        opened: list[App] = []
        try:  # refused at the open or at the first write, depending on what SQLite needs to create
            with pytest.raises(StoreError, match=r"runs\.db: (the database is read-only|cannot open the database "
                                                 r"file \(.*read-only file system\))"):
                opened.append(appender(url))
                opened[0].run(thread="second")
        finally:
            for refused in opened:  # SQLite shares a file's state within a process: close what saw it read-only
                refused.checkpointer.store.close()  # type: ignore[union-attr]
            subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True)
        again = appender(url)
        assert [t.name for t in again.checkpointer.threads()] == ["first"]  # type: ignore[union-attr]
        assert exact(again.run(thread="second").state.log, 3)  # type: ignore[attr-defined]
        again.checkpointer.store.close()  # type: ignore[union-attr]
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


HOLD_LOCK = {  # hold the write lock (SQLite) or a table lock (PostgreSQL) for argv[2] seconds
    "sqlite": """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1].removeprefix("sqlite:///"), isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
""",
    "postgresql": """
import psycopg, sys, time
db = psycopg.connect(sys.argv[1].replace("postgresql+psycopg", "postgresql"))
db.execute("LOCK TABLE threads IN EXCLUSIVE MODE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.rollback()
"""}
LOCK_CAUSE = {"sqlite": "another process holds the database's write lock",
              "postgresql": "another process holds a lock this write needs"}


def test_a_lock_held_by_another_process_fails_after_the_timeout_and_writes_nothing(db_url: str) -> None:
    dialect = Store(db_url).dialect  # also makes the schema
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK[dialect], db_url, "2"], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    store = Store(db_url, busy_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreError, match=rf"{LOCK_CAUSE[dialect]} \(waited for it, in vain\)") as refused:
        appender(store, steps=2).run(thread="waits")
    waited = time.monotonic() - started
    assert 0.4 < waited < 1.9, waited  # the timeout, not the holder's 2 s
    assert holder.wait(timeout=30) == 0
    assert Checkpointer(db_url).thread("waits") is None  # nothing half-written
    assert exact(appender(db_url, steps=2).run(thread="waits").state.log, 2)  # type: ignore[attr-defined]
    store.close()
    print(f"{dialect} lock: refused after {waited:.2f} s (busy_timeout 0.5 s): {refused.value}")


def test_a_database_from_a_newer_baobab_is_refused_with_both_versions_and_left_as_it_was(db_url: str) -> None:
    store = Store(db_url)
    with store.transaction() as conn:
        conn.exec_driver_sql(f"UPDATE baobab_schema SET version = {SCHEMA_VERSION + 1}")
    store.close()

    def contents() -> tuple[list[str], Any]:
        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                return sorted(inspect(conn).get_table_names()), conn.exec_driver_sql(
                    "SELECT id, version FROM baobab_schema").all()
        finally:
            engine.dispose()

    before = contents()
    with pytest.raises(StoreError, match=rf"has schema version {SCHEMA_VERSION + 1}, newer than this Baobab's "
                                         rf"{SCHEMA_VERSION}: upgrade baobab to open it") as refused:
        Store(db_url)
    assert contents() == before  # no table made, no version written
    print(f"newer schema: {refused.value}")
