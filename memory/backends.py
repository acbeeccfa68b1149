"""The one place a memory's backends are chosen, once, when it opens: after that no code asks which database it
is on. Vectors: pgvector when asked for, or when "auto" finds it on PostgreSQL; else an index in this process.
Full text: SQLite's FTS5, or PostgreSQL's text search.

>>> store = Store("sqlite://")
>>> type(open_vectors(store, 8, "auto")).__name__, type(open_fulltext(store)).__name__
('ProcessVectors', 'SqliteFullText')
"""

from typing import Literal

from baobab.memory.errors import NotesError
from baobab.memory.fulltext import FullTextBackend
from baobab.memory.fulltext_postgres import PostgresFullText
from baobab.memory.fulltext_sqlite import SqliteFullText
from baobab.memory.vectors import VectorBackend
from baobab.memory.vectors_pgvector import PgVectors
from baobab.memory.vectors_process import ProcessVectors
from baobab.store import Store

VectorsWhere = Literal["auto", "pgvector", "process"]


def open_vectors(store: Store, dim: int, where: VectorsWhere) -> VectorBackend:
    """Where `store`'s note vectors of `dim` dimensions are searched: "pgvector" (an error says why it cannot be),
    "process", or "auto" (pgvector if the store is PostgreSQL with the `vector` extension, else the process)."""
    if where not in ("auto", "pgvector", "process"):
        raise NotesError(f"vectors must be auto, pgvector or process, got {where!r}")
    found = PgVectors.open(store, dim, required=where == "pgvector") if where != "process" else None
    return found if found is not None else ProcessVectors(dim)


def open_fulltext(store: Store) -> FullTextBackend:
    """The full-text index of `store`'s notes: FTS5 on SQLite, text search on PostgreSQL."""
    return SqliteFullText() if store.dialect == "sqlite" else PostgresFullText()
