"""The real pieces: the packaged all-MiniLM-L6-v2 embedder and the embedded model writing notes as JSON."""

from typing import Any

import pytest

from baobab.memory import Memory


def test_packaged_embedder_finds_by_meaning(store_url: str, minilm: Any) -> None:
    with Memory(store_url, embedder=minilm) as memory:
        assert minilm.dim == 384
        memory.add_many(["The cat sat on the warm windowsill.", "Quarterly revenue grew by ten percent.",
                         "The server crashed after the disk filled up."])
        assert memory.search("feline resting in the sun", k=1, mode="vector")[0].note.content.startswith("The cat")
        assert memory.search("storage ran out and the machine went down", k=1)[0].note.content.startswith("The server")


@pytest.mark.timeout(300)
def test_the_embedded_model_writes_valid_notes_and_links(store_url: str, minilm: Any) -> None:
    with Memory(store_url, llm="local:smollm2-135m", embedder=minilm) as memory:
        try:
            first = memory.add("Our deploy failed because the build server's disk was full.")
            second = memory.add("We added disk alerts to the build server after the failed deploy.")
            assert first.keywords and first.context  # described by the model, JSON that validated
            assert all(link.target == first.id for link in second.links)  # it could only name ids it was shown
            assert memory.search("disk full deploy", k=2)
        finally:
            assert memory.llm is not None
            from baobab.aio import run_sync

            run_sync(memory.llm.aclose())
