"""One of several processes adding notes to the same memory at once (tests/memory/test_concurrency.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bag_of_words import BagOfWords

from baobab.memory import Memory

url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Memory(url, embedder=BagOfWords(), scope=f"agent:{name}", reads=("global", f"agent:{name}")) as memory:
    for i in range(count):
        memory.add(f"note {i} from writer {name} about topic {i % 3}")
    memory.add_many([f"bulk note {i} from writer {name}" for i in range(count)])
