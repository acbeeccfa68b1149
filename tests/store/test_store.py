"""The store: URL resolution, SQLite settings, versioned schema, clear errors."""

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from baobab.store import SCHEMA_VERSION, Store, StoreError, default_url
from baobab.store.schema import ADDED_COLUMNS, schema_info, search_runs, threads


def test_default_url_uses_argument_then_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BAOBAB_DB_URL", raising=False)
    monkeypatch.setenv("BAOBAB_DATA_DIR", str(tmp_path / "env"))
    assert default_url(tmp_path / "arg") == f"sqlite:///{tmp_path / 'arg' / 'baobab.db'}"
    assert default_url() == f"sqlite:///{tmp_path / 'env' / 'baobab.db'}"
    monkeypatch.delenv("BAOBAB_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_url() == f"sqlite:///{tmp_path / '.baobab' / 'baobab.db'}"
    monkeypatch.setenv("BAOBAB_DB_URL", "sqlite:///elsewhere.db")
    assert default_url() == "sqlite:///elsewhere.db"


def test_sqlite_file_is_created_in_the_data_dir_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    store = Store(data_dir=tmp_path / "data")
    assert (tmp_path / "data" / "baobab.db").exists()
    with store.transaction() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with Store(data_dir=tmp_path / "data", synchronous="FULL").transaction() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2


def test_schema_version_is_recorded_once(db_url: str) -> None:
    Store(db_url).close()
    store = Store(db_url)  # a second open finds the schema and leaves it
    with store.transaction() as conn:
        assert conn.execute(text("SELECT version FROM baobab_schema")).scalars().all() == [SCHEMA_VERSION]


def test_newer_database_is_refused_with_a_clear_error(db_url: str) -> None:
    with Store(db_url).transaction() as conn:
        conn.execute(update(schema_info).values(version=SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        Store(db_url)


def test_bad_url_names_the_url_and_never_the_password() -> None:
    with pytest.raises(StoreError, match="not a database URL: 'nonsense'"):
        Store("nonsense")
    with pytest.raises(StoreError) as info:
        Store("nosuchdialect://user:s3cret@localhost/db")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def test_in_memory_store_shares_one_database_across_connections() -> None:
    store = Store("sqlite://")
    with store.transaction() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with store.engine.connect() as other:
        assert other.execute(text("SELECT x FROM t")).scalar() == 1


def test_processes_opening_one_new_sqlite_file_at_once_all_open_it(tmp_path: Path) -> None:
    # the first opener turns the file to WAL, which SQLite refuses at once (no busy wait) while another holds it;
    # and each creates the tables it does not see: two saw none and the second's CREATE TABLE failed
    opener = ("import sys\nfrom baobab.store import Store\nstore = Store(sys.argv[1])\n"
              "print(store.engine.connect().exec_driver_sql('PRAGMA journal_mode').scalar())")
    for attempt in range(8):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.db'}"
        openers = [subprocess.Popen([sys.executable, "-c", opener, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for _ in range(4)]
        outcomes = [(p.wait(timeout=120), *p.communicate()) for p in openers]
        assert all(code == 0 and out.strip() == "wal" for code, out, _ in outcomes), outcomes
        with Store(url).transaction() as conn:
            assert conn.execute(select(func.count()).select_from(schema_info)).scalar_one() == 1


def test_a_complete_database_opens_without_the_write_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    Store(url).engine.dispose()
    writer = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    try:
        started = time.perf_counter()
        with Store(url, busy_timeout=2.0).transaction() as conn:
            assert conn.execute(select(schema_info.c.version)).scalar_one() == SCHEMA_VERSION
        assert time.perf_counter() - started < 1.0  # it did not wait for the lock
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_version_1_database_gets_the_columns_added_since_and_keeps_its_rows(db_url: str) -> None:
    with Store(db_url).transaction() as conn:  # a database as Baobab 1 left it: no fingerprints, no search kinds
        conn.execute(threads.insert().values(name="t", graph="g", status="done", created=0, updated=0))
        for table, column in ADDED_COLUMNS[2]:
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(update(schema_info).values(version=1))
    store = Store(db_url)
    with store.transaction() as conn:
        assert conn.execute(select(schema_info.c.version)).scalar_one() == SCHEMA_VERSION
        assert conn.execute(select(threads.c.name, threads.c.fingerprint)).all() == [("t", None)]
        assert conn.execute(select(func.count()).select_from(search_runs)).scalar_one() == 0
