"""An in-process vector index over the notes' embeddings: exact inner product (one matrix product), rebuilt from
the database on open and kept current from the rows changed since."""

import numpy as np

from baobab.memory.embedders import Vectors


class VectorIndex:
    """Unit vectors by note id; `search` returns the `k` nearest ids with their cosine similarity.

    >>> index = VectorIndex(2); index.put([7], np.array([[1.0, 0.0]], dtype=np.float32))
    >>> index.search(np.array([1.0, 0.0], dtype=np.float32), 1)
    [(7, 1.0)]
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, dim), dtype=np.float32)
        self.rows: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def put(self, ids: list[int], vectors: Vectors) -> None:
        """Add or replace the vectors of `ids`."""
        new = [i for i in ids if i not in self.rows]
        if new:
            start = len(self.ids)
            self.ids = np.concatenate([self.ids, np.array(new, dtype=np.int64)])
            self.matrix = np.concatenate([self.matrix, np.zeros((len(new), self.dim), dtype=np.float32)])
            self.rows.update({note: start + n for n, note in enumerate(new)})
        for note, vector in zip(ids, vectors, strict=True):
            self.matrix[self.rows[note]] = vector

    def remove(self, ids: list[int]) -> None:
        """Forget the vectors of `ids`."""
        keep = np.array([i not in set(ids) for i in self.ids.tolist()], dtype=bool)
        self.ids, self.matrix = self.ids[keep], self.matrix[keep]
        self.rows = {int(note): row for row, note in enumerate(self.ids.tolist())}

    def search(self, query: Vectors, k: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """The `k` ids nearest to `query` (among `allowed` ones, if given), best first."""
        if not len(self.ids):
            return []
        scores = self.matrix @ query
        if allowed is not None:
            scores = np.where(np.isin(self.ids, np.fromiter(allowed, dtype=np.int64)), scores, -np.inf)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(self.ids[i]), round(float(scores[i]), 6)) for i in top if np.isfinite(scores[i])]
