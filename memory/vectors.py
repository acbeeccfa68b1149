"""Where a memory finds the notes nearest a vector: the interface both places share (`backends.open_vectors` picks
one when a memory opens). `vectors_process`: an index in this process, loaded from the notes' rows;
`vectors_pgvector`: a column and an HNSW index in PostgreSQL, which every process shares.

>>> backend: VectorBackend = open_vectors(Store("sqlite://"), 384, "auto")  # doctest: +SKIP
>>> backend.search(query, k=3)  # doctest: +SKIP
[(12, 0.83), (7, 0.61), (3, 0.4)]
"""

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, Row

from baobab.memory.embedders import Vectors

Hits = list[tuple[int, float]]  # (note id, cosine similarity), best first


class VectorBackend(Protocol):
    """The notes' vectors: kept with their notes, searched by cosine similarity (the vectors are unit length)."""

    @property
    def columns(self) -> tuple[ColumnElement[Any], ...]:
        """What a refresh reads of each note changed, beside its id and scope (and then hands to `load`)."""
        ...

    def load(self, rows: Sequence[Row[Any]]) -> None:
        """Take in the notes a refresh read: all of them when the memory opens, then those others wrote since."""
        ...

    def write(self, conn: Connection, notes: Sequence[tuple[int, Vectors]]) -> None:
        """Keep the vectors of (note id, vector) pairs, in the transaction that writes those notes."""
        ...

    def put(self, ids: list[int], vectors: Vectors) -> None:
        """Notes this process has just written (their transaction may still be open): findable from now on here."""
        ...

    def remove(self, ids: list[int]) -> None:
        """Notes this process has deleted: never found here again."""
        ...

    def search(self, query: Vectors, k: int, allowed: set[int] | None = None) -> Hits:
        """The `k` notes nearest to `query` (among `allowed` ids, if given), best first."""
        ...

    def search_many(self, queries: Vectors, k: int, conn: Connection | None = None) -> list[Hits]:
        """`search` for each row of `queries`, inside `conn`'s transaction if given (to see the notes it wrote)."""
        ...
