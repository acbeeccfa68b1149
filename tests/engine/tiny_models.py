"""Tiny random models of every supported family, made by transformers from the family's config, written as
llama.cpp writes each arch to GGUF, and the engine's greedy run against transformers' logits: what
tests/engine/test_architectures.py and benchmarks/engine_models.py share."""

import math
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
import transformers

from baobab.engine.model import Llama, Row

WINDOW = 16
PROMPT = 20
DECODE = 64
SHAPE = {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
         "initializer_range": 0.1, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 32, "rope_theta": 10000.0}
# family: (config class, its settings beyond SHAPE, llama.cpp arch or None for no GGUF form)
FAMILIES: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "llama3": ("LlamaConfig", {"rope_parameters": LLAMA3}, "llama"),
    "qwen2.5": ("Qwen2Config", {"tie_word_embeddings": True}, "qwen2"),
    "qwen3": ("Qwen3Config", {"head_dim": 32}, "qwen3"),  # head_dim is not hidden / heads
    "gemma2": ("Gemma2Config", {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": WINDOW,
                                "attn_logit_softcapping": 3.0, "final_logit_softcapping": 2.0}, "gemma2"),
    "gemma2-27b-style": ("Gemma2Config", {"head_dim": 16, "query_pre_attn_scalar": 24, "sliding_window": WINDOW},
                         None),  # queries scaled by a scalar other than head_dim, which llama.cpp infers from size
    "gemma3": ("Gemma3TextConfig", {"head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": WINDOW,
                                    "num_hidden_layers": 6, "initializer_range": 0.02}, "gemma3"),  # 5 local, 1 global
    # (head_dim 256, as Gemma 3 270M's: the scalar llama.cpp and transformers assume for a GGUF file)
    "phi3": ("Phi3Config", {"partial_rotary_factor": 0.5}, "phi3"),
    "phi3-full-rotary": ("Phi3Config", {"sliding_window": WINDOW}, "phi3"),
    "smollm3": ("SmolLM3Config", {}, "smollm3"),  # the 4th layer has no RoPE
    "mistral": ("MistralConfig", {"head_dim": 16, "sliding_window": WINDOW}, "llama"),
}
# families whose GGUF transformers reads back as the same model; it cannot for the others: it ignores llama3's
# rope_freqs, Phi's partial rotary, Qwen3's key_length, Gemma 2's soft-caps, windows of llama and phi3 files,
# and has no SmolLM3 reader
READ_BACK = ("qwen2.5", "gemma3")


def tiny(family: str) -> Any:
    """The family's tiny random model in transformers, float32, eager attention (soft-capping needs it)."""
    name, settings, _ = FAMILIES[family]
    config = getattr(transformers, name)(**{**SHAPE, **settings})
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()


def engine_greedy(model: Llama, prompt: list[int], steps: int = DECODE) -> tuple[list[int], torch.Tensor]:
    """Greedy tokens after `prompt`, one decode step at a time through the KV cache, and the logits of the prompt
    and of every step (positions x vocab)."""
    logits = [model(torch.tensor([prompt]), [Row(0, 0)], all_logits=True)[0]]
    tokens: list[int] = []
    for _ in range(steps):
        tokens.append(int(logits[-1][-1].argmax()))
        logits.append(model(torch.tensor([tokens[-1:]]), [Row(0, len(prompt) + len(tokens) - 1)], all_logits=True)[0])
    return tokens, torch.cat(logits)[:-1]


def relative(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest difference over the largest logit."""
    return float((ours - reference).abs().max() / reference.abs().max())


def tiny_prompt() -> list[int]:
    """The prompt the tiny models are checked on: PROMPT random ids above the special ones."""
    return torch.randint(3, SHAPE["vocab_size"], (PROMPT,), generator=torch.Generator().manual_seed(1)).tolist()


def compare(reference: Any, model: Llama, prompt: list[int], steps: int = DECODE) -> tuple[float, list[int], list[int]]:
    """The engine's greedy run after `prompt` against `reference` (a transformers model) over the same tokens: the
    largest relative logit difference, the engine's tokens, and the token transformers' logits pick at each step."""
    tokens, logits = engine_greedy(model, prompt, steps)
    with torch.no_grad():
        expected = reference(torch.tensor([prompt + tokens])).logits[0, :-1]
    return relative(logits, expected), tokens, expected[len(prompt) - 1:].argmax(-1).tolist()


def llama_cpp_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's q/k row order for its interleaved RoPE (convert_hf_to_gguf.py LlamaModel.permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(rope: dict[str, Any], head_dim: int) -> np.ndarray:
    """The rope_freqs tensor llama.cpp writes for llama3 RoPE scaling (LlamaModel.generate_extra_tensors)."""
    freqs = 1.0 / (rope["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    low, high, old = rope["low_freq_factor"], rope["high_freq_factor"], rope["original_max_position_embeddings"]
    factors = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1.0)
        elif wavelen > old / low:
            factors.append(rope["factor"])
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / rope["factor"] + smooth))
    return np.array(factors, dtype=np.float32)


def write_gguf(reference: Any, family: str, path: Path) -> None:
    """`reference` as llama.cpp's convert_hf_to_gguf.py would write it (float32 tensors)."""
    config, arch = reference.config, FAMILIES[family][2]
    assert arch is not None
    writer = gguf.GGUFWriter(str(path), arch)
    heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, config.hidden_size
    head_dim = getattr(config, "head_dim", None) or dim // heads
    writer.add_name(family)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(dim)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters.get("full_attention", config.rope_parameters)["rope_theta"])
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    rotary = int(head_dim * config.rope_parameters.get("partial_rotary_factor", 1.0))
    writer.add_rope_dimension_count(rotary)
    if getattr(config, "sliding_window", None):
        writer.add_sliding_window(config.sliding_window)
    if arch == "gemma2":
        writer.add_attn_logit_softcapping(config.attn_logit_softcapping)
        writer.add_final_logit_softcapping(config.final_logit_softcapping)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"<{i}>" for i in range(config.vocab_size)])
    writer.add_token_scores([0.0] * config.vocab_size)
    writer.add_token_types([1] * config.vocab_size)
    names = gguf.get_tensor_name_map(next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch),
                                     config.num_hidden_layers)
    if config.rope_parameters.get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_factors(config.rope_parameters, head_dim))
    for hf_name, tensor in reference.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        stem, suffix = hf_name.rsplit(".", 1)
        name = f"{names.get_name(stem)}.{suffix}"
        if arch == "llama" or arch == "smollm3":
            if name.endswith("attn_q.weight"):
                tensor = llama_cpp_permute(tensor, heads)
            elif name.endswith("attn_k.weight"):
                tensor = llama_cpp_permute(tensor, kv_heads)
        if arch.startswith("gemma") and name.endswith("norm.weight"):
            tensor = tensor + 1  # llama.cpp stores Gemma's norms as 1 + weight
        writer.add_tensor(name, tensor.contiguous().numpy())
    finish(writer)


def finish(writer: gguf.GGUFWriter) -> None:
    """Write out a GGUF file whose metadata and tensors have all been added."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
