"""The trace viewer's memory view reads a real memory: its notes, links and a note's history."""

import pytest
from bag_of_words import BagOfWords

from baobab.memory import Memory
from baobab.ui.data import NotFound
from baobab.ui.memory import memory_history, memory_view


def test_the_viewer_shows_a_real_memory(store_url: str) -> None:
    with Memory(store_url, embedder=BagOfWords(), link_threshold=0.5) as memory:
        first = memory.add("the nightly backup failed on the build server")
        second = memory.add("the nightly backup failed again on the build server")
        memory.update(first.id, tags=["backup"])
        view = memory_view(memory)
        assert {n["id"] for n in view["notes"]} == {str(first.id), str(second.id)}
        assert view["links"] == [{"source": str(second.id), "target": str(first.id), "kind": "similar",
                                  "reason": second.links[0].reason}]
        history = memory_history(memory, str(first.id))["history"]
        assert [(v["version"], v["reason"]) for v in history] == [(1, "updated")]
        with pytest.raises(NotFound):
            memory_history(memory, "not-a-number")
