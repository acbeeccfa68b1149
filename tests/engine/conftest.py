"""The real embedded model, loaded once per test session (about 10 s), and its Hugging Face reference."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def local_llm() -> Iterator[Any]:
    from baobab.aio import run_sync
    from baobab.engine.local import LocalLLM

    llm = LocalLLM(slots=8, context=2048, threads=2, weight_dtype="float32")  # the reference mode
    yield llm
    run_sync(llm.aclose())


@pytest.fixture(scope="session")
def hf_model() -> Any:
    """SmolLM2 in Hugging Face transformers, from the same GGUF file, in fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    from baobab.engine import weights

    path = Path(weights.resolve(weights.DEFAULT_MODEL))
    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def hf_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from baobab.engine import weights

    path = Path(weights.resolve(weights.DEFAULT_MODEL))
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
