"""Several processes write one memory at once: no note is lost, and each reader sees them all."""

import subprocess
import sys
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
        assert len(reader.index) == len(expected)
        hit = reader.search("bulk note 3 from writer b", k=1)[0]
        assert hit.note.content == "bulk note 3 from writer b"
    finally:
        reader.close()
