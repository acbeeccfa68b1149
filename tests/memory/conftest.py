"""Memory tests: a word-overlap embedder (fast, deterministic) and the real packaged one, loaded once."""

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # bag_of_words, also for the writer processes


@pytest.fixture(scope="session")
def minilm() -> Any:
    from baobab.memory import LocalEmbedder

    return LocalEmbedder()
