"""Several processes write one memory at once: no note is lost, and each reader sees them all."""

import subprocess
import sys
import threading
from pathlib import Path

from bag_of_words import BagOfWords

from baobab.memory import Memory

WRITER = Path(__file__).parent / "writer_process.py"


def test_concurrent_writer_processes_lose_no_note(db_url: str) -> None:
    Memory(db_url, embedder=BagOfWords()).close()  # the schema exists before the writers race to make it
    names, count = ["a", "b", "c"], 8
    writers = [subprocess.Popen([sys.executable, str(WRITER), db_url, name, str(count)], stderr=subprocess.PIPE,
                                text=True) for name in names]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err[-2000:]
    reader = Memory(db_url, embedder=BagOfWords(), reads=[f"agent:{n}" for n in names])
    try:
        contents = [data["content"] for _, data in reader.graph().nodes(data=True)]
        expected = {f"note {i} from writer {n} about topic {i % 3}" for n in names for i in range(count)}
        expected |= {f"bulk note {i} from writer {n}" for n in names for i in range(count)}
        assert sorted(contents) == sorted(expected)  # every note, exactly once
        for content in sorted(c for c in expected if c.startswith("bulk")):  # every note has its vector
            assert reader.search(content, k=1, mode="vector")[0].note.content == content
    finally:
        reader.close()


def test_writers_changing_one_note_at_once_take_turns(db_url: str) -> None:
    with Memory(db_url, embedder=BagOfWords()) as memory:
        note = memory.add("the counter note")
    errors: list[BaseException] = []

    def change(name: str) -> None:
        try:
            with Memory(db_url, embedder=BagOfWords()) as writer:  # its own store: connections of its own
                for i in range(10):
                    writer.update(note.id, tags=[f"{name}{i}"])
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=change, args=(name,)) for name in "abc"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert not errors, errors
    with Memory(db_url, embedder=BagOfWords()) as memory:
        assert memory.get(note.id).version == 31  # every change made a version: none overwrote another
        assert [v.version for v in memory.history(note.id)] == list(range(1, 31))
