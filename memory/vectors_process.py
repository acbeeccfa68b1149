"""Memory vectors in this process: a `VectorIndex` filled from the notes' `embedding` column when the memory opens,
then kept current from the rows other processes change and from the notes this one writes.

>>> vectors = ProcessVectors(384)  # doctest: +SKIP
>>> vectors.search(query, k=5)  # doctest: +SKIP
[(12, 0.83), (7, 0.61), ...]
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Connection, Row

from baobab.memory.embedders import Vectors
from baobab.memory.index import VectorIndex
from baobab.memory.vectors import Hits
from baobab.store.schema import memory_notes


class ProcessVectors:
    """The notes' vectors in a `VectorIndex` (`index`), read from `memory_notes.embedding`."""

    columns: tuple[ColumnElement[Any], ...] = (memory_notes.c.embedding,)

    def __init__(self, dim: int) -> None:
        self.index = VectorIndex(dim)

    def load(self, rows: Sequence[Row[Any]]) -> None:
        """Index the embeddings of rows a refresh read."""
        vectors = np.frombuffer(b"".join(r.embedding for r in rows), dtype=np.float32)
        self.index.put([r.id for r in rows], vectors.reshape(len(rows), self.index.dim))

    def write(self, conn: Connection, notes: Sequence[tuple[int, Vectors]]) -> None:
        """Nothing: the note's row holds its embedding, which is what other processes load."""

    def put(self, ids: list[int], vectors: Vectors) -> None:
        """Index these notes' vectors."""
        self.index.put(ids, vectors)

    def remove(self, ids: list[int]) -> None:
        """Drop these notes from the index."""
        self.index.remove(ids)

    def search(self, query: Vectors, k: int, allowed: set[int] | None = None) -> Hits:
        """The `k` nearest notes (among `allowed`), from the index."""
        return self.index.search(query, k, allowed)

    def search_many(self, queries: Vectors, k: int, conn: Connection | None = None) -> list[Hits]:
        """The nearest notes of each query, from the index (which already holds what `conn` wrote)."""
        return self.index.search_many(queries, k)
