"""Memory vectors in PostgreSQL (pgvector): a `vector` column on the notes' rows, searched in the database through
an HNSW index (inner product of unit vectors, i.e. cosine), so every process shares one index and none loads the
vectors. A note's vector is written in the same transaction as the note; notes written without one (by a Baobab
that did not use pgvector) get theirs when a memory opens the store. No vector is kept in this process.

>>> vectors = PgVectors.open(Store("postgresql+psycopg://db.internal/baobab"), 384)  # doctest: +SKIP
>>> vectors.search(query, k=5)  # doctest: +SKIP
[(12, 0.83), (7, 0.61), ...]
"""

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Row, TextClause, text

from baobab.memory.embedders import Vectors
from baobab.memory.errors import NotesError
from baobab.memory.vectors import Hits
from baobab.store import Store

log = logging.getLogger(__name__)
EF_SEARCH = 100  # HNSW candidates per query (pgvector's default is 40): recall close to exact at 20-40 hits
# built once, like the memory's other statements: SQLAlchemy reuses their compiled form (see memory.py)
_WRITE = text("UPDATE memory_notes SET vec = CAST(:v AS vector) WHERE id = :id")
_NEAREST = ("SELECT id, -(vec <#> CAST(:q AS vector)) AS score FROM memory_notes WHERE vec IS NOT NULL{} "
            "ORDER BY vec <#> CAST(:q AS vector) LIMIT :k")
_SEARCH, _SEARCH_ALLOWED = text(_NEAREST.format("")), text(_NEAREST.format(" AND id = ANY(:allowed)"))
_ITERATIVE_SCAN = text("SET LOCAL hnsw.iterative_scan = relaxed_order")


class PgVectors:
    """The notes' vectors in `memory_notes.vec` (vector(dim)) with an HNSW index; `search` returns (id, cosine).

    Use `PgVectors.open(store, dim)`: None when the store is not PostgreSQL or has no `vector` extension.
    """

    columns: tuple[ColumnElement[Any], ...] = ()  # a refresh reads no vector: they stay in the database

    def __init__(self, store: Store, dim: int) -> None:
        self.store, self.dim = store, dim

    @classmethod
    def open(cls, store: Store, dim: int, *, required: bool = False) -> "PgVectors | None":
        """pgvector for `store`'s notes: the extension, column and index made if missing, old notes' vectors filled.

        None (and a warning, unless the store is not PostgreSQL) when it cannot be used; with `required`, an
        error saying why.
        """
        why = _unavailable(store)
        if why is None:
            try:
                _prepare(store, dim)
            except Exception as exc:  # no privilege to create the extension, a column of another size
                why = str(exc).splitlines()[0]
        if why is None:
            return cls(store, dim)
        if required:
            raise NotesError(f"{store.safe_url}: cannot keep memory vectors in pgvector: {why}")
        if store.dialect == "postgresql":
            log.warning("%s: memory vectors stay in this process (%s)", store.safe_url, why)
        return None

    def write(self, conn: Connection, notes: Sequence[tuple[int, Vectors]]) -> None:
        """Set the vectors of (note id, vector) pairs, in the caller's transaction (the one that writes the notes)."""
        if notes:  # one statement for them all: bulk ingestion writes thousands
            conn.execute(_WRITE, [{"v": _literal(vector), "id": note} for note, vector in notes])

    def load(self, rows: Sequence[Row[Any]]) -> None:
        """Nothing: the vectors of notes others wrote are in the database already."""

    def put(self, ids: list[int], vectors: Vectors) -> None:
        """Nothing: `write` put them in the database, where searches look."""

    def remove(self, ids: list[int]) -> None:
        """Nothing: a deleted note's vector goes with its row."""

    def search(self, query: Vectors, k: int, allowed: set[int] | None = None,
               conn: Connection | None = None) -> Hits:
        """The `k` notes nearest to `query` (among `allowed` ids, if given), best first, with their cosine.

        `conn`: search inside that transaction (to see its notes not yet committed).
        """
        if k <= 0 or (allowed is not None and not allowed):
            return []
        sql = _SEARCH if allowed is None else _SEARCH_ALLOWED
        values: dict[str, Any] = {"q": _literal(query), "k": k}
        if allowed is not None:
            values["allowed"] = sorted(allowed)
        if conn is not None:
            return self._run(conn, sql, values, k)
        with self.store.transaction() as own:
            return self._run(own, sql, values, k)

    def search_many(self, queries: Vectors, k: int, conn: Connection | None = None) -> list[Hits]:
        """`search` for each row of `queries` (in `conn`'s transaction, if given)."""
        return [self.search(query, k, conn=conn) for query in queries]

    def _run(self, conn: Connection, sql: TextClause, values: dict[str, Any], k: int) -> Hits:
        # ef_search >= k, or the index returns fewer than k; an iterative scan keeps going past filtered-out rows
        conn.execute(_ef_search(max(EF_SEARCH, k)))
        conn.execute(_ITERATIVE_SCAN)
        rows = conn.execute(sql, values).all()
        return sorted(((int(r.id), round(float(r.score), 6)) for r in rows), key=lambda hit: -hit[1])


@lru_cache(maxsize=64)
def _ef_search(candidates: int) -> TextClause:
    """The statement that sets HNSW's candidates per query (a setting takes no bound parameter)."""
    return text(f"SET LOCAL hnsw.ef_search = {candidates}")


def _unavailable(store: Store) -> str | None:
    """Why pgvector cannot serve `store`, or None."""
    if store.dialect != "postgresql":
        return f"the store is {store.dialect}, not PostgreSQL"
    with store.transaction() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    return None if found else "the server has no `vector` extension (install pgvector)"


def _prepare(store: Store, dim: int) -> None:
    """The extension, the column and its HNSW index (made once, by whichever process comes first), and the vectors
    of notes that have none."""
    with store.transaction() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('baobab.memory.pgvector'))"))  # DDL one at a time
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        column = conn.execute(text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                   "WHERE attrelid = 'memory_notes'::regclass AND attname = 'vec'")).scalar()
        if column is None:
            conn.execute(text(f"ALTER TABLE memory_notes ADD COLUMN vec vector({dim})"))
            conn.execute(text("CREATE INDEX ix_memory_notes_vec ON memory_notes USING hnsw (vec vector_ip_ops)"))
        elif column != f"vector({dim})":
            raise ValueError(f"memory_notes.vec is {column}, but the embedder makes {dim}-d vectors")
        missing = conn.execute(text("SELECT id, embedding FROM memory_notes WHERE vec IS NULL")).all()
        vectors = [(row.id, np.frombuffer(row.embedding, dtype=np.float32)) for row in missing]
        PgVectors(store, dim).write(conn, [(n, v) for n, v in vectors if len(v) == dim])  # others: their embedder's


def _literal(vector: Vectors) -> str:
    """pgvector's text form of a vector: '[0.1,0.2,...]'.

    >>> _literal(np.array([0.5, -1.0], dtype=np.float32))
    '[0.5,-1.0]'
    """
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, dtype=np.float32)) + "]"
