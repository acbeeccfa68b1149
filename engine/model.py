"""A Llama-family transformer in one file (RMSNorm, RoPE with scaling, GQA, SwiGLU, tied embeddings),
with a preallocated KV cache of `slots` sequences.

`forward` takes a batch of token rows, each with its slot and start position; rows may have different
lengths of cached context, so each row attends over its own slot's cache (a view, never a copy).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baobab.engine.weights import Checkpoint, LlamaConfig


@dataclass(frozen=True)
class Row:
    """One sequence in a forward: its KV-cache slot and the position of its first new token."""

    slot: int
    start: int


class Linear(nn.Linear):
    """A projection whose weights may be stored in a narrower type than the activations (fp16 weights with
    fp32 activations: half the bytes per token on a memory-bound CPU decode, fp32 everywhere else)."""

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = F.linear(x.to(self.weight.dtype), self.weight, self.bias)
        return out.to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class KVCache(nn.Module):
    """Keys and values of `slots` sequences of up to `max_len` tokens, for every layer."""

    def __init__(self, config: LlamaConfig, slots: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        shape = (config.n_layers, slots, config.n_kv_heads, max_len, config.head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.k: Tensor
        self.v: Tensor
        self.max_len = max_len


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int) -> None:
        super().__init__()
        self.layer, self.n_heads, self.n_kv_heads, self.head_dim = (
            layer, config.n_heads, config.n_kv_heads, config.head_dim)
        self.q_proj = Linear(config.dim, config.n_heads * config.head_dim, bias=config.qkv_bias)
        self.k_proj = Linear(config.dim, config.n_kv_heads * config.head_dim, bias=config.qkv_bias)
        self.v_proj = Linear(config.dim, config.n_kv_heads * config.head_dim, bias=config.qkv_bias)
        self.o_proj = Linear(config.n_heads * config.head_dim, config.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, rows: list[Row]) -> Tensor:
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        out = torch.empty_like(q)
        for b, row in enumerate(rows):  # each row over its own slot: views, no gather
            end = row.start + length
            cache.k[self.layer, row.slot, :, row.start:end] = k[b]
            cache.v[self.layer, row.slot, :, row.start:end] = v[b]
            out[b] = grouped_attention(q[b], cache.k[self.layer, row.slot, :, :end],
                                       cache.v[self.layer, row.slot, :, :end], row.start)
        projected: Tensor = self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))
        return projected


class MLP(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = Linear(config.dim, config.hidden_dim, bias=False)
        self.up_proj = Linear(config.dim, config.hidden_dim, bias=False)
        self.down_proj = Linear(config.hidden_dim, config.dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        down: Tensor = self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return down


class Block(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.dim, config.norm_eps)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache, rows: list[Row]) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, rows)
        mlp: Tensor = self.mlp(self.post_attention_layernorm(x))
        return x + mlp


class Inner(nn.Module):
    """The Hugging Face `model.` prefix: embeddings, blocks, final norm."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)


class Llama(nn.Module):
    """The model. `forward(tokens, rows)` returns logits of the last position of each row, or of all.

    >>> model = Llama.from_checkpoint(weights.load(path), slots=4, max_len=2048)  # doctest: +SKIP
    >>> logits = model(torch.tensor([[1, 2, 3]]), [Row(slot=0, start=0)])  # doctest: +SKIP
    """

    def __init__(self, config: LlamaConfig, inv_freq: Tensor) -> None:
        super().__init__()
        self.config = config
        self.model = Inner(config)
        self.lm_head = Linear(config.dim, config.vocab_size, bias=False)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.inv_freq: Tensor
        self.cache: KVCache | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, *, slots: int = 1, max_len: int = 2048,
                        device: str | torch.device = "cpu", weight_dtype: torch.dtype | None = None) -> "Llama":
        """A model with the checkpoint's weights and a KV cache of `slots` x `max_len` tokens.

        Activations use the checkpoint's dtype; `weight_dtype` stores the projections' weights narrower.
        """
        config = checkpoint.config
        tensors = dict(checkpoint.tensors)
        freqs = tensors.pop("rope_freqs.weight", None)
        if config.tie_embeddings:
            tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
        dtype = tensors["model.embed_tokens.weight"].dtype
        if weight_dtype is not None and weight_dtype != dtype:
            projections = {name for name in tensors if name.endswith("_proj.weight") or name == "lm_head.weight"}
            tensors = {k: v.to(weight_dtype) if k in projections else v for k, v in tensors.items()}
        with torch.device("meta"):
            model = cls(config, torch.empty(config.head_dim // 2))
        model.load_state_dict(tensors, assign=True, strict=True)
        model.inv_freq = rope_frequencies(config, freqs).to(device)
        model.to(device)
        model.cache = KVCache(config, slots, min(max_len, config.max_seq_len), dtype, torch.device(device))
        return model.eval()

    @torch.inference_mode()
    def forward(self, tokens: Tensor, rows: list[Row], *, all_logits: bool = False) -> Tensor:
        """Logits for `tokens` (batch x length), writing their keys and values into each row's slot."""
        assert self.cache is not None, "from_checkpoint() makes the cache"
        length = tokens.shape[1]
        if any(r.start + length > self.cache.max_len for r in rows):
            raise ValueError(f"sequence longer than the KV cache ({self.cache.max_len} tokens)")
        positions = torch.stack([torch.arange(r.start, r.start + length, device=tokens.device) for r in rows])
        angles = positions[..., None].float() * self.inv_freq  # batch x length x head_dim/2
        cos, sin = angles.cos()[:, None], angles.sin()[:, None]  # broadcast over heads
        x = self.model.embed_tokens(tokens)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for block in self.model.layers:
            x = block(x, cos, sin, self.cache, rows)
        x = self.model.norm(x if all_logits else x[:, -1:])
        logits: Tensor = self.lm_head(x)
        return logits.float() if all_logits else logits[:, -1].float()

    def copy_slot(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` cached positions of one slot into another (n > 1 samples share a prompt)."""
        assert self.cache is not None
        self.cache.k[:, target, :, :length] = self.cache.k[:, source, :, :length]
        self.cache.v[:, target, :, :length] = self.cache.v[:, source, :, :length]


def grouped_attention(q: Tensor, k: Tensor, v: Tensor, start: int) -> Tensor:
    """Causal attention of queries at positions start.. over keys 0..end, each key head shared by a group
    of query heads (GQA) without copying the keys: the group's queries are stacked instead."""
    heads, length, dim = q.shape
    kv_heads, end, _ = k.shape
    group = heads // kv_heads
    scores = q.reshape(kv_heads, group * length, dim) @ k.transpose(1, 2) * (dim ** -0.5)
    if length > 1:  # query i sees keys up to start + i
        visible = torch.ones(length, end, dtype=torch.bool, device=q.device).tril(start)
        scores = scores.masked_fill(~visible.repeat(group, 1), float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    return (weights @ v).reshape(heads, length, dim)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE in the rotate-half layout: pairs (i, i + d/2) turn by the position's angle."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def rope_frequencies(config: LlamaConfig, freq_factors: Tensor | None = None) -> Tensor:
    """Inverse frequencies of RoPE, with linear, llama3 or per-frequency (GGUF rope_freqs) scaling."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    scaling = config.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if freq_factors is not None:
        inv_freq = inv_freq / freq_factors.double()
    elif kind == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        smooth = ((old / wavelen) - low) / (high - low)
        scaled = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
        middle = (wavelen <= old / low) & (wavelen >= old / high)
        inv_freq = torch.where(middle, (1 - smooth) * inv_freq / factor + smooth * inv_freq, scaled)
    return inv_freq.float()
