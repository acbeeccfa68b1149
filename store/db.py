"""Open a database by URL: SQLite (WAL, foreign keys) by default, PostgreSQL by URL; versioned schema."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from baobab.store.schema import SCHEMA_VERSION, metadata, schema_info

DATA_DIR_ENV = "BAOBAB_DATA_DIR"
URL_ENV = "BAOBAB_DB_URL"


class StoreError(Exception):
    """The database cannot be opened or used as Baobab expects."""


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


class Store:
    """A SQLAlchemy engine for Baobab's records, with the schema created and its version checked.

    >>> store = Store("sqlite://")  # in memory
    >>> store.dialect
    'sqlite'

    `synchronous` applies to SQLite only: NORMAL (WAL) survives a crash of the process, FULL also
    a loss of power, at the price of an fsync per commit.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        data_dir: str | Path | None = None,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
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
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            else:  # one shared connection, or every connection would see its own empty database
                kwargs["poolclass"] = StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except Exception as exc:  # a missing driver, a bad option: say which database
            raise StoreError(f"cannot open {self.safe_url}: {exc}") from exc
        if self.dialect == "sqlite":
            _sqlite_pragmas(self.engine, synchronous)
        self._ensure_schema()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in one transaction, committed when the block ends without an exception."""
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        """Release the connections."""
        self.engine.dispose()

    def _ensure_schema(self) -> None:
        with self.transaction() as conn:
            if inspect(conn).has_table(schema_info.name):
                version = conn.execute(select(schema_info.c.version)).scalar()
                if version is not None and version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.safe_url} has schema version {version}, newer than this Baobab's "
                        f"{SCHEMA_VERSION}: upgrade baobab to open it"
                    )
            metadata.create_all(conn)
            if conn.execute(select(schema_info.c.version)).scalar() is None:
                conn.execute(schema_info.insert().values(id=1, version=SCHEMA_VERSION))


def _sqlite_pragmas(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()
