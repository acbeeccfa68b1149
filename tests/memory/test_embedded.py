"""The real pieces: the packaged all-MiniLM-L6-v2 embedder and the embedded model writing notes as JSON."""

import json
from pathlib import Path
from typing import Any

import pytest

from baobab.memory import Memory
from baobab.memory.repeats import first_repeat, key


def test_packaged_embedder_finds_by_meaning(store_url: str, minilm: Any) -> None:
    with Memory(store_url, embedder=minilm) as memory:
        assert minilm.dim == 384
        memory.add_many(["The cat sat on the warm windowsill.", "Quarterly revenue grew by ten percent.",
                         "The server crashed after the disk filled up."])
        assert memory.search("feline resting in the sun", k=1, mode="vector")[0].note.content.startswith("The cat")
        assert memory.search("storage ran out and the machine went down", k=1)[0].note.content.startswith("The server")


DEPLOY = "The deploy on Friday failed again: the disk of the build server filled with docker images."
LOCOMO = Path(__file__).resolve().parents[3] / "shared" / "data" / "locomo" / "locomo10.json"


def locomo_turns(n: int) -> list[str]:
    """The first `n` turns of LoCoMo's conversation 0 (development set), as benchmarks/memory_locomo.py writes them."""
    if not LOCOMO.exists():
        return []  # the data set is beside the checkout, not in it (CC BY-NC: never shipped)
    session = json.loads(LOCOMO.read_text())[0]["conversation"]["session_1"]
    return [f"{t['speaker']}: {t['text']}" for t in session[:n]]


@pytest.mark.timeout(300)
def test_the_embedded_model_writes_valid_notes_and_links(store_url: str, minilm: Any) -> None:
    with Memory(store_url, llm="local:smollm2-135m", embedder=minilm) as memory:
        try:
            first = memory.add("Our deploy failed because the build server's disk was full.")
            second = memory.add("We added disk alerts to the build server after the failed deploy.")
            assert first.keywords and first.context  # described by the model, JSON that validated
            assert all(link.target == first.id for link in second.links)  # it could only name ids it was shown
            assert memory.search("disk full deploy", k=2)
            # the sentence whose unbounded keywords once ran to max_tokens and lost the note, then dialogue turns
            notes = [memory.add(text) for text in [DEPLOY, *locomo_turns(3)]]
            assert notes[0].keywords and notes[0].metadata["made_by"] in ("model", "fallback")
            for note in memory.notes([first.id, second.id, *(n.id for n in notes)]):
                versions = [*memory.history(note.id), note]
                for field in ("keywords", "tags", "context"):  # evolution never empties what a version had
                    assert all(getattr(later, field) for i, v in enumerate(versions) if getattr(v, field)
                               for later in versions[i + 1:]), (note.id, field, versions)
                assert first_repeat(note.context) is None, note.context
                assert len({key(t) for t in note.tags}) == len(note.tags), note.tags
                assert len({key(k) for k in note.keywords}) == len(note.keywords), note.keywords
        finally:
            assert memory.llm is not None
            from baobab.aio import run_sync

            run_sync(memory.llm.aclose())
