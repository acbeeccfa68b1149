"""A deterministic embedder for tests: hashed word counts, so similarity is word overlap (no model to load)."""

import zlib
from collections.abc import Sequence

import numpy as np

from baobab.memory.embedders import Vectors, normalise
from baobab.memory.keywords import words


class BagOfWords:
    dim = 256

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in words(text):
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        return normalise(out)
