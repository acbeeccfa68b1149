"""Loading checkpoints: the embedded GGUF, a Hugging Face directory, and clear errors for bad files."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from baobab.aio import run_sync
from baobab.engine import weights
from baobab.engine.local import LocalLLM
from baobab.engine.model import Llama, Row
from baobab.engine.tokenizer import ChatTokenizer
from baobab.engine.weights import WeightsError


def test_missing_and_foreign_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no such file or directory"):
        weights.resolve(str(tmp_path / "nope.gguf"))
    (tmp_path / "model.bin").write_bytes(b"123")
    with pytest.raises(WeightsError, match=r"expected a \.gguf file or a model directory"):
        weights.load(tmp_path / "model.bin")
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + b"\x00" * 10)
    with pytest.raises(WeightsError, match=r"broken\.gguf: not a readable GGUF file"):
        weights.load(tmp_path / "broken.gguf")
    with pytest.raises(WeightsError, match=r"no config\.json"):
        weights.load(tmp_path)


def test_a_hugging_face_directory_gives_the_same_model(tmp_path: Path, local_llm: Any) -> None:
    """Write SmolLM2 as config.json + safetensors + tokenizer.json, load it as local:DIR, compare."""
    checkpoint = weights.load(weights.resolve(weights.DEFAULT_MODEL))
    c = checkpoint.config
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": c.vocab_size, "hidden_size": c.dim, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "intermediate_size": c.hidden_dim,
        "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta, "max_position_embeddings": c.max_seq_len,
        "tie_word_embeddings": True}))
    save_file({k: v.contiguous() for k, v in checkpoint.tensors.items()}, str(tmp_path / "model.safetensors"))
    ChatTokenizer(checkpoint).tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": checkpoint.chat_template}))
    directory = LocalLLM(str(tmp_path), slots=1, context=256, prefix_cache_mb=0, weight_dtype="float32")
    text = "Hello, how are you?"
    assert directory.tokenizer.encode(text) == local_llm.tokenizer.encode(text)
    ids = torch.tensor([local_llm.tokenizer.encode(text)])
    assert torch.allclose(directory.model(ids, [Row(0, 0)]), local_llm.model(ids, [Row(7, 0)]), atol=1e-5)
    messages = [{"role": "user", "content": "Hi"}]
    assert directory.tokenizer.render(messages) == local_llm.tokenizer.render(messages)
    assert isinstance(directory.model, Llama)
    run_sync(directory.aclose())


def test_float16_weights_with_float32_activations_stay_close(local_llm: Any) -> None:
    """The CPU default: half the bytes per decode step; logits move far less than Q4 quantisation did."""
    default = LocalLLM(slots=1, context=128, prefix_cache_mb=0)
    assert default.model.lm_head.weight.dtype == torch.float16
    assert "Paris" in default.complete_sync(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                            max_tokens=16, temperature=0).text
    run_sync(default.aclose())
    checkpoint = weights.load(weights.resolve(weights.DEFAULT_MODEL))
    half = Llama.from_checkpoint(checkpoint, slots=1, max_len=128, weight_dtype=torch.float16)
    assert half.lm_head.weight.dtype == torch.float16 and half.model.embed_tokens.weight.dtype == torch.float32
    ids = torch.tensor([local_llm.tokenizer.encode("The quick brown fox jumps over the lazy dog")])
    ours, ref = half(ids, [Row(0, 0)], all_logits=True), local_llm.model(ids, [Row(7, 0)], all_logits=True)
    assert ours.dtype == torch.float32
    assert ((ours - ref).abs().max() / ref.abs().max()).item() < 1e-2
    assert (ours.argmax(-1) == ref.argmax(-1)).float().mean().item() > 0.9
