"""An in-process vector index over the notes' embeddings: exact inner products (one matrix product) for small
memories, an HNSW graph (usearch) once there are `ann_above` notes; rebuilt from the database on open and kept
current from the rows changed since. Scores are always exact: the graph only picks the candidates."""

from typing import Any

import numpy as np

from baobab.errors import require_extra
from baobab.memory.embedders import Vectors

ANN_ABOVE = 50_000  # an exact search reads every vector: ~40 ms at 200k notes on a 2-core VM, HNSW ~1 ms
OVERSAMPLE = 4  # candidates asked of the graph per wanted hit, so filters still leave k
ADD_THREADS = 1  # usearch#735: a concurrent add strands nodes that no search reaches (2x slower build, none lost)


class VectorIndex:
    """Unit vectors by note id; `search` returns the `k` nearest ids with their cosine similarity.

    >>> index = VectorIndex(2); index.put([7], np.array([[1.0, 0.0]], dtype=np.float32))
    >>> index.search(np.array([1.0, 0.0], dtype=np.float32), 1)
    [(7, 1.0)]
    """

    def __init__(self, dim: int, ann_above: int = ANN_ABOVE) -> None:
        self.dim, self.ann_above = dim, ann_above
        self.size = 0  # rows in use; the arrays below have room for more (they grow by half when full)
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self.rows: dict[int, int] = {}
        self.ann: Any = None  # usearch.index.Index once the index is big enough

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ids(self) -> np.ndarray[Any, Any]:
        """The note id of each row."""
        return self._ids[:self.size]

    @property
    def matrix(self) -> np.ndarray[Any, Any]:
        """The vector of each row."""
        return self._matrix[:self.size]

    def put(self, ids: list[int], vectors: Vectors) -> None:
        """Add or replace the vectors of `ids`."""
        unique = list(dict.fromkeys(ids))
        new = [i for i in unique if i not in self.rows]
        if new:
            self._reserve(self.size + len(new))
            self._ids[self.size:self.size + len(new)] = new
            self.rows.update({note: self.size + n for n, note in enumerate(new)})
            self.size += len(new)
        self._matrix[np.array([self.rows[i] for i in ids], dtype=np.int64)] = vectors
        if self.ann is not None:
            fresh = set(new)
            changed = np.array([i for i in unique if i not in fresh], dtype=np.int64)
            if len(changed):
                self.ann.remove(changed)
            self.ann.add(np.array(unique, dtype=np.int64),
                         self._matrix[np.array([self.rows[i] for i in unique], dtype=np.int64)], threads=ADD_THREADS)
        elif len(self.rows) >= self.ann_above:
            self._build()

    def remove(self, ids: list[int]) -> None:
        """Forget the vectors of `ids`."""
        gone = set(ids) & set(self.rows)
        if not gone:
            return
        keep = ~np.isin(self.ids, np.fromiter(gone, dtype=np.int64))
        kept_ids, kept_vectors = self.ids[keep], self.matrix[keep]
        self.size = len(kept_ids)
        self._ids[:self.size], self._matrix[:self.size] = kept_ids, kept_vectors
        self.rows = {int(note): row for row, note in enumerate(self.ids.tolist())}
        if self.ann is not None:
            self.ann.remove(np.fromiter(gone, dtype=np.int64))

    def search(self, query: Vectors, k: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """The `k` ids nearest to `query` (among `allowed` ones, if given), best first."""
        if not len(self.ids) or k <= 0:
            return []
        if allowed is not None and len(allowed) * 8 < len(self.ids):  # a small subset: exact over it alone
            rows = np.array([self.rows[i] for i in allowed if i in self.rows], dtype=np.int64)
            return self._best(rows, self.matrix[rows] @ query, k) if len(rows) else []
        if self.ann is not None:
            wanted = min(len(self.ids), k * OVERSAMPLE if allowed is not None else k)
            keys = [int(key) for key in self.ann.search(query, wanted).keys]
            keys = [key for key in keys if key in self.rows and (allowed is None or key in allowed)]
            rows = np.array([self.rows[key] for key in keys], dtype=np.int64)
            if len(rows) >= min(k, len(allowed) if allowed is not None else k):
                return self._best(rows, self.matrix[rows] @ query, k)
        scores = self.matrix @ query
        if allowed is not None:
            scores = np.where(np.isin(self.ids, np.fromiter(allowed, dtype=np.int64)), scores, -np.inf)
        return self._best(np.arange(len(self.ids)), scores, k)

    def search_many(self, queries: Vectors, k: int) -> list[list[tuple[int, float]]]:
        """`search` for each row of `queries` at once (bulk ingestion links every new note to its neighbours)."""
        if not len(self.ids) or not len(queries):
            return [[] for _ in range(len(queries))]
        if self.ann is None:
            out = []
            for start in range(0, len(queries), 256):  # a block of scores at a time bounds the memory used
                block = queries[start:start + 256] @ self.matrix.T
                out += [self._best(np.arange(len(self.ids)), scores, k) for scores in block]
            return out
        found = self.ann.search(queries, min(k, len(self.ids)), threads=0)
        results = []
        for query, keys in zip(queries, found.keys, strict=True):
            rows = np.array([self.rows[int(key)] for key in keys if int(key) in self.rows], dtype=np.int64)
            results.append(self._best(rows, self.matrix[rows] @ query, k) if len(rows) else [])
        return results

    def _best(self, rows: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], k: int) -> list[tuple[int, float]]:
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(self.ids[rows[i]]), round(float(scores[i]), 6)) for i in top if np.isfinite(scores[i])]

    def _reserve(self, rows: int) -> None:
        """Room for `rows` rows: growing by half at a time, adding n notes copies O(n) rows in all, not O(n^2)."""
        if rows <= len(self._ids):
            return
        capacity = max(rows, len(self._ids) * 3 // 2, 1024)
        ids, matrix = np.zeros(capacity, dtype=np.int64), np.zeros((capacity, self.dim), dtype=np.float32)
        ids[:self.size], matrix[:self.size] = self.ids, self.matrix
        self._ids, self._matrix = ids, matrix

    def _build(self) -> None:
        require_extra("memory", f"a memory of over {self.ann_above} notes (its HNSW index)", "usearch")
        from usearch.index import Index  # imported only for memories that need it

        self.ann = Index(ndim=self.dim, metric="ip", dtype="i8", connectivity=16, expansion_add=64,
                         expansion_search=64)
        self.ann.add(self.ids, self.matrix, threads=ADD_THREADS)
