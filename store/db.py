"""Open a database by URL: SQLite (WAL, foreign keys) by default, PostgreSQL by URL; versioned schema."""

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import ClauseElement, Connection, Engine, create_engine, event, func, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.compiler import SQLCompiler

from baobab.errors import BaobabError
from baobab.store.schema import ADDED_COLUMNS, SCHEMA_VERSION, metadata, schema_info

DATA_DIR_ENV = "BAOBAB_DATA_DIR"
URL_ENV = "BAOBAB_DB_URL"
SCHEMA_LOCK = 0x62616F62  # the PostgreSQL advisory lock taken while the schema is created ("baob")


class StoreError(BaobabError):
    """The database cannot be opened or used as Baobab expects."""


_CAUSES = [  # (text in the driver's message, what it means for the user)
    ("disk is full", "the disk is full"), ("no space left", "the disk is full"),
    ("readonly database", "the database is read-only"), ("read-only", "the database is read-only"),
    ("database is locked", "another process holds the database's write lock (waited for it, in vain)"),
    ("lock timeout", "another process holds a lock this write needs (waited for it, in vain)"),
    ("unable to open database file", "cannot open the database file (a missing folder, no permission, or a "
                                     "read-only file system)"),
    ("disk i/o error", ""),  # SQLite cannot tell why a write failed: _io_cause() looks
]
_DAMAGE = [  # (text in the driver's message, what it means): the file itself is damaged, whatever the statement
    ("file is not a database", "the file is not a SQLite database (another kind of file, or its header is damaged)"),
    ("database disk image is malformed", "the database file is corrupt or truncated"),
]


def default_url(data_dir: str | Path | None = None) -> str:
    """The URL used when none is given: `$BAOBAB_DB_URL`, else `baobab.db` in the data directory.

    The data directory is `data_dir`, else `$BAOBAB_DATA_DIR`, else `./.baobab`.

    >>> default_url("/tmp/x")
    'sqlite:////tmp/x/baobab.db'
    """
    if data_dir is None and os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    folder = Path(data_dir or os.environ.get(DATA_DIR_ENV) or ".baobab").expanduser().resolve()
    return f"sqlite:///{folder / 'baobab.db'}"


@dataclass(frozen=True)
class SQL:
    """A statement compiled once for the database's driver, to run on a raw cursor."""

    text: str
    keys: tuple[str, ...] | None  # the order of positional parameters; None when they are named

    def params(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for `values`."""
        return values if self.keys is None else tuple(values[k] for k in self.keys)


class Store:
    """A SQLAlchemy engine for Baobab's records, with the schema created and its version checked.

    >>> store = Store("sqlite://")  # in memory
    >>> store.dialect
    'sqlite'

    `synchronous` applies to SQLite only: NORMAL (WAL) survives a crash of the process, FULL also
    a loss of power, at the price of an fsync per commit. `busy_timeout`: how long a write waits for
    another process's lock (SQLite's busy_timeout, PostgreSQL's lock_timeout) before a StoreError.
    `pool_size` and `max_overflow` apply to a server database (PostgreSQL): the connections kept open, and how
    many more a burst may open (SQLAlchemy's defaults, 5 and 10); a pooled connection is checked before use, so
    a restarted server costs no failed call.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        data_dir: str | Path | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        busy_timeout: float = 10.0,
        pool_size: int = 5,
        max_overflow: int = 10,
    ) -> None:
        self.url = url or default_url(data_dir)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise StoreError(f"not a database URL: {self.url!r} (expected e.g. sqlite:///path.db)") from exc
        self.safe_url = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                if Path(database).is_dir():  # SQLite would only say "unable to open database file"
                    raise StoreError(f"{self.safe_url}: {database} is a folder, not a database file")
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            else:  # one shared connection, or every connection would see its own empty database
                kwargs["poolclass"] = StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except Exception as exc:  # a missing driver, a bad option: say which database
            raise StoreError(f"cannot open {self.safe_url}: {exc}") from exc
        if self.dialect == "sqlite":
            _sqlite_pragmas(self.engine, synchronous, busy_timeout)
        elif self.dialect == "postgresql":
            _postgres_lock_timeout(self.engine, busy_timeout)
        # SQLite has one writer at a time anyway; taking turns here spares threads its busy-waiting
        self._write_lock: AbstractContextManager[Any] = threading.Lock() if self.dialect == "sqlite" else nullcontext()
        self._local = threading.local()
        self._held: list[Any] = []
        try:
            self._ensure_schema()
        except BaseException:  # a refused database (newer, read-only, locked) is not left open
            self.engine.dispose()
            raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in one transaction, committed when the block ends without an exception."""
        with self._explained(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def raw_transaction(self) -> Iterator[Any]:
        """A driver cursor in one transaction on this thread's own connection: the fast path for hot writes.

        Statements come from `compile()`; the block commits when it ends without an exception.
        """
        with self._write_lock, self._explained():
            conn = getattr(self._local, "conn", None)
            if conn is None:  # held for the thread's lifetime: a pool checkout costs more than the insert
                conn = self._local.conn = self.engine.raw_connection()
                self._held.append(conn)
            cursor = conn.cursor()
            try:
                yield cursor
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()

    def compile(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> SQL:
        """`statement` as the driver's SQL text, for `raw_transaction()`; `columns` names an insert's values."""
        compiled = statement.compile(dialect=self.engine.dialect, column_keys=list(columns) if columns else None)
        assert isinstance(compiled, SQLCompiler)
        return SQL(str(compiled), tuple(compiled.positiontup or ()) if compiled.positional else None)

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """Database errors the user can act on (disk full, read-only, locked) as a StoreError naming the database."""
        try:
            yield
        except (DBAPIError, self.engine.dialect.loaded_dbapi.Error) as exc:
            said = " ".join(str(getattr(exc, "orig", exc)).split())
            damage = next((why for cause, why in _DAMAGE if cause in str(exc).lower()), None)
            if damage is not None:
                raise StoreError(f"{self.safe_url}: {damage} ({said}); restore it from a backup or move it aside "
                                 f"to start a new one") from exc
            reason = next((why for cause, why in _CAUSES if cause in str(exc).lower()), None)
            if reason is None:
                raise
            reason = reason or _io_cause(self.engine.url.database if self.dialect == "sqlite" else None)
            raise StoreError(f"{self.safe_url}: {reason} ({said}); the transaction was rolled back, nothing of it "
                             f"was written") from exc

    def close(self) -> None:
        """Release the connections."""
        for conn in self._held:
            conn.close()
        self._held.clear()
        self._local = threading.local()
        self.engine.dispose()

    def _ensure_schema(self) -> None:
        with self.transaction() as conn:  # a look first: a complete database opens without the write lock
            if self._schema_complete(conn):  # (so a read-only one still opens, and no writer holds it up)
                return
        with self.transaction() as conn:  # the lock, then a second look: processes opening one new file create it once
            if self.dialect == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.dialect == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(SCHEMA_LOCK)))
            if self._schema_complete(conn):  # another process created it while this one waited
                return
            version = conn.execute(select(schema_info.c.version)).scalar() if inspect(conn).has_table(
                schema_info.name) else None
            if version is not None:
                _add_columns(conn, version)
            metadata.create_all(conn)
            if version is None:
                conn.execute(schema_info.insert().values(id=1, version=SCHEMA_VERSION))
            elif version < SCHEMA_VERSION:
                conn.execute(update(schema_info).values(version=SCHEMA_VERSION))

    def _schema_complete(self, conn: Connection) -> bool:
        """Whether the database has every table at this version; a newer version is refused."""
        tables = set(inspect(conn).get_table_names())
        if schema_info.name not in tables:
            return False
        version = conn.execute(select(schema_info.c.version)).scalar()
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"{self.safe_url} has schema version {version}, newer than this Baobab's "
                             f"{SCHEMA_VERSION}: upgrade baobab to open it")
        return version == SCHEMA_VERSION and set(metadata.tables) <= tables


def _add_columns(conn: Connection, version: int) -> None:
    """Bring a database at `version` up to this one: the columns added since, to the tables it has."""
    for added in range(version + 1, SCHEMA_VERSION + 1):
        for table, name in ADDED_COLUMNS.get(added, []):
            found = inspect(conn)  # a fresh look each time: an inspector caches what it saw
            if found.has_table(table) and name not in {c["name"] for c in found.get_columns(table)}:
                column = metadata.tables[table].c[name]
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {name} {column.type.compile(conn.dialect)}")


def _io_cause(database: str | None) -> str:
    """Why a SQLite write failed with a disk I/O error, where it can be seen: a file-size limit or a full disk.

    >>> _io_cause(None)
    'a disk I/O error'
    """
    if not database or database == ":memory:":
        return "a disk I/O error"
    path = Path(database)
    files = [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-journal")]
    largest = max((f.stat().st_size for f in files if f.exists()), default=0)
    try:
        import resource
    except ImportError:  # no rlimits (Windows)
        pass
    else:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and largest + 2**16 >= limit:  # within a few pages of the limit
            return f"a write went past this process's file-size limit (RLIMIT_FSIZE {limit} bytes)"
    free = shutil.disk_usage(path.parent).free
    if free < 2**20:  # SQLite names ENOSPC 'disk is full' itself; other refusals (a quota) arrive as I/O errors
        return f"the disk is full ({free} bytes free)"
    return "a disk I/O error (the file system refused a write, or the disk is failing)"


def _sqlite_pragmas(engine: Engine, synchronous: str, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        _to_wal(cursor, busy_timeout)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()


def _to_wal(cursor: Any, timeout: float) -> None:
    """PRAGMA journal_mode=WAL, tried again while another process holds the file: SQLite refuses the switch
    at once rather than wait (its busy handler is not called for it), as when processes open a new file together."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _postgres_lock_timeout(engine: Engine, timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f"SET lock_timeout = {int(timeout * 1000)}")  # else a write waits for a lock forever
        cursor.close()
        dbapi_conn.commit()  # a rollback (the pool's reset) would undo the setting
