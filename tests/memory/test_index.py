"""The vector index: exact below its threshold, HNSW above it, with the same answers on clear-cut data."""

import numpy as np

from baobab.memory.embedders import normalise
from baobab.memory.index import VectorIndex


def vectors(n: int, seed: int) -> np.ndarray:  # type: ignore[type-arg]
    return normalise(np.random.default_rng(seed).standard_normal((n, 32)).astype(np.float32))


def test_the_graph_index_finds_what_the_exact_one_finds() -> None:
    data = vectors(400, 0)
    exact, graph = VectorIndex(32, ann_above=10**9), VectorIndex(32, ann_above=100)
    for index in (exact, graph):
        index.put(list(range(200)), data[:200])
        index.put(list(range(200, 400)), data[200:])
    assert exact.ann is None and graph.ann is not None
    queries = normalise(data[:50] + 0.05 * vectors(50, 1))
    def ids(found: list[tuple[int, float]]) -> list[int]:
        return [i for i, _ in found]

    for query in queries:
        [(got, score)] = graph.search(query, 1)
        [(want, exact_score)] = exact.search(query, 1)
        assert got == want and abs(score - exact_score) < 1e-5  # scores are exact dot products either way
    assert [ids(r)[:1] for r in graph.search_many(queries, 3)] == [ids(r)[:1] for r in exact.search_many(queries, 3)]
    allowed = set(range(0, 400, 2))
    assert graph.search(queries[1], 5, allowed)[0][0] in allowed  # filtered: odd ids never come back
    assert all(i in allowed for i, _ in graph.search(queries[1], 5, allowed))
    graph.put([7], normalise(-data[7:8]))  # replaced: now the opposite direction
    assert graph.search(data[7], 1)[0][0] != 7
    graph.remove([0, 1])
    assert graph.search(data[0], 1)[0][0] != 0 and len(graph) == 398
    assert ids(graph.search(queries[10], 1, {10, 11})) == ids(exact.search(queries[10], 1, {10, 11}))  # exact


def test_every_note_in_the_graph_can_be_found() -> None:
    data = vectors(400, 2)
    for _ in range(5):  # a build that strands a node (usearch's concurrent add did in 1 of 6 builds) fails here
        graph = VectorIndex(32, ann_above=100)
        graph.put(list(range(200)), data[:200])
        graph.put(list(range(200, 400)), data[200:])
        assert [found[0][0] for found in graph.search_many(data, 1)] == list(range(400))
