"""A search with a Memory keeps its experience notes and recalls them in a later episode of the same task."""

from typing import Any

from bag_of_words import BagOfWords

from baobab.memory import Memory
from baobab.search import search
from baobab.search.context import lessons
from baobab.search.hooks import uniform_proposer
from baobab.search.toys import DeceptiveTree


def test_backtracking_experiences_persist_and_come_back_in_the_next_episode(store_url: str) -> None:
    env = DeceptiveTree(depth=3, branching=2)
    first = Memory(store_url, embedder=BagOfWords())
    try:
        result = search(env, "backtrack", memory=first, task="deceptive tree, depth 3",
                        evaluator=env.misleading_value)  # misled into the trap first
        assert result.experiences  # failed attempts left notes
        stored = first.search("deceptive tree depth 3", k=20, filters={"tags": ["lesson"]})
        assert sorted(h.note.content for h in stored) == sorted(set(result.experiences))
        assert all("task:deceptive tree, depth 3" in h.note.tags for h in stored)
    finally:
        first.close()

    seen: list[list[str]] = []
    plain = uniform_proposer(env)

    async def proposer(state: Any, path: Any, k: Any, spend: Any) -> Any:
        seen.append(lessons())
        return await plain(state, path, k, spend)

    later = Memory(store_url, embedder=BagOfWords())  # a later episode, another process's memory object
    try:
        again = search(env, "backtrack", memory=later, task="deceptive tree, depth 3", proposer=proposer,
                       evaluator=env.misleading_value)
        assert set(result.experiences) <= set(seen[0])  # recalled before the first expansion
        assert len(later.search("deceptive", k=50, filters={"tags": ["lesson"]})) == len(
            set(result.experiences) | set(again.experiences))  # nothing stored twice
    finally:
        later.close()
