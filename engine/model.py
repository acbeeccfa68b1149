"""A Llama-family transformer in one file (RMSNorm, RoPE with scaling, GQA, SwiGLU, tied embeddings),
with a preallocated KV cache of `slots` sequences. Its relatives are flags of `LlamaConfig` on the same block:
query/key norms (Qwen3, Gemma 3), post-norms, norm offset, scaled embeddings, GELU and soft-capping (Gemma),
fused projections and partial RoPE (Phi-3), layers without RoPE (SmolLM3), sliding-window layers with their own
RoPE base (Mistral, Gemma 2 and 3).

`forward` takes a batch of token rows, each with its slot and start position; rows may have different
lengths of cached context, so each row attends over its own slot's cache (a view, never a copy).
Every row's logits are bit for bit what that row alone, one token at a time, would give: projections and norms
compute each row apart, and a token attends over a window of keys fixed by its position (`window`).
Speculation, prefix-cache hits and batching therefore never change a greedy output.
A decode step is memory- and dispatch-bound on a CPU: the projections are fused (q|k|v, gate|up), RoPE
is three element-wise ops, and weights may be bfloat16 (half of float32's
bytes; prepacked for oneDNN on a CPU). The parts are plain classes over plain tensors, not nn.Modules: a module
call and a parameter lookup cost microseconds of Python each, 2 ms of a 16 ms decode step here.
"""

import functools
import math
import mmap
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from baobab.engine.weights import EMBEDDING, Q8_BLOCK, LlamaConfig, WeightFiles, WeightsError

WIDEN_ABOVE_ROWS = 8  # a narrow unpacked weight is widened once for longer inputs (prefill)
KEY_WINDOW = 64  # attention windows are multiples of this many keys (see `window`)
# a CPU matrix product of fewer rows may take another kernel that rounds differently (float32 bmm of 1-3 rows on an
# AMD EPYC): attention products get at least this many, so a decode step's rows equal a verify step's
MIN_GEMM_ROWS = 4
INT4_GROUP = 32  # weights per 4-bit group (one scale and one offset each): GGUF Q4_0 and Q4_1 blocks
WeightStorage = torch.dtype | Literal["int4"]  # how projection weights are kept: a float type, or 4-bit groups
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
WEIGHT_DTYPES: dict[str, WeightStorage] = {**DTYPES, "int4": "int4"}  # how projection weights may be kept, by name


def dtypes(dtype: str, weight_dtype: str | None, device: str) -> tuple[torch.dtype, WeightStorage]:
    """The activations' type and the weights' storage named by `dtype` and `weight_dtype` (None: bfloat16 weights
    for float32 on a CPU, which halve a decode step's reads and verify k drafted tokens for about one; else `dtype`).

    >>> dtypes("float32", None, "cpu")
    (torch.float32, torch.bfloat16)
    """
    if weight_dtype is None:
        weight_dtype = "bfloat16" if device == "cpu" and dtype == "float32" else dtype
    for name, value, allowed in (("dtype", dtype, DTYPES), ("weight_dtype", weight_dtype, WEIGHT_DTYPES)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
    return DTYPES[dtype], WEIGHT_DTYPES[weight_dtype]


@dataclass(frozen=True)
class Row:
    """One sequence in a forward: its KV-cache slot and the position of its first new token (the new tokens
    are consecutive positions)."""

    slot: int
    start: int

    def spans(self, length: int, group: int, dtype: torch.dtype, device: torch.device,
              sliding_window: int | None = None) -> list["Span"]:
        """The row's new tokens cut where their key window changes: each token attends over the cache's first
        `window(position)` keys, a function of its position alone, so its attention never depends on what else
        is in the forward. `group`: query heads per key head (the mask is repeated for each); `sliding_window`:
        also mask, for windowed layers, the keys that many positions or more behind each token."""
        spans, first = [], self.start
        end = self.start + length
        while first < end:
            size = window(first)
            last = min(end, size)  # every position below `size` has this window
            keys, at = torch.arange(size, device=device), torch.arange(first, last, device=device)[:, None]
            local = None if sliding_window is None else _bias((keys > at) | (keys <= at - sliding_window), dtype)
            spans.append(Span(first - self.start, last - self.start, size, _bias(keys > at, dtype).repeat(group, 1),
                              None if local is None else local.repeat(group, 1)))
            first = last
        return spans


def _bias(hidden: Tensor, dtype: torch.dtype) -> Tensor:
    """An additive attention mask: -inf where `hidden`, 0 elsewhere."""
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill_(hidden, float("-inf"))


def window(position: int) -> int:
    """How many cached keys a token at `position` attends over (the later ones masked): rounded up to a multiple
    of KEY_WINDOW, so a decode step, a verify step and a prefill reduce over the same keys in the same order.

    >>> window(0), window(63), window(64)
    (64, 64, 128)
    """
    return (position // KEY_WINDOW + 1) * KEY_WINDOW


@dataclass(frozen=True)
class Span:
    """New tokens `first`..`last` - 1 of a row, attending over `window` keys; `bias` is -inf at the keys each
    does not see (after it) and 0 elsewhere, for each query head of a key head."""

    first: int
    last: int
    window: int
    bias: Tensor  # group * (last - first) x window
    local_bias: Tensor | None = None  # the same, -inf also at keys older than the sliding window


class Linear:
    """`x @ weight.T + bias` with the weight stored in the activations' type, a narrower float type, or 4 bits.

    Narrow weights halve the bytes a memory-bound decode step reads; the output stays narrow and a float32
    residual promotes it back. On a CPU, bfloat16 weights are prepacked for oneDNN: one token then costs
    what float16 does, and k tokens (a speculative verify, a prefill) cost far less than k times one, with
    each row's result bit-identical whatever the number of rows. "int4" keeps 4-bit codes with a bfloat16
    scale and offset per group of 32 weights (a quarter of float16's bytes; a GGUF Q4_1 block maps onto one
    group), multiplied by bfloat16 activations in one CPU kernel.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, storage: WeightStorage) -> None:
        self.scales: Tensor | None = None  # of 4-bit groups: input groups x outputs x (scale, offset)
        if storage == "int4":
            self.weight, self.scales = _pack_int4(weight)
            self.bias = None if bias is None else bias.to(torch.bfloat16)
            self.packed = False
            return
        self.weight, self.bias = weight.to(storage), None if bias is None else bias.to(storage)
        self.packed = storage == torch.bfloat16 and weight.device.type == "cpu" and _onednn_bfloat16()
        self.one_row_as_two = self.packed and _one_row_kernel_differs(*weight.shape, torch.get_num_threads())
        if self.packed:  # oneDNN's blocked layout
            self.weight = torch.ops.mkldnn._reorder_linear_weight(self.weight, 1)

    def __call__(self, x: Tensor) -> Tensor:
        if self.scales is not None:
            rows = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
            out4: Tensor = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.weight, INT4_GROUP, self.scales)
            out4 = out4.view(*x.shape[:-1], out4.shape[-1])
            return out4 if self.bias is None else out4 + self.bias
        if self.packed:
            flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
            if flat.shape[0] == 1 and self.one_row_as_two:  # the row's result as any longer input would give it
                flat = flat.repeat(2, 1)
            out: Tensor = torch.ops.mkldnn._linear_pointwise(flat, self.weight, self.bias, "none", [], "")
            return out[:x[..., 0].numel()].view(*x.shape[:-1], out.shape[-1])
        if self.weight.dtype != x.dtype and x.numel() > WIDEN_ABOVE_ROWS * x.shape[-1]:  # CPU float16 GEMMs crawl
            return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias)


def _pack_int4(weight: Tensor) -> tuple[Tensor, Tensor]:
    """4-bit codes of `weight` (outputs x inputs) packed for the CPU kernel, and each group's scale and offset.

    A group already on a grid of at most 16 evenly spaced levels (a GGUF Q4_0, Q4_1 or Q4_K block of 32, whichever
    levels it uses) keeps that grid: the step is the smallest gap between its values. Any other group (Q5, Q6_K,
    Q8, float) is requantized to 16 levels from its smallest to its largest weight.
    """
    outputs, inputs = weight.shape
    if weight.device.type != "cpu" or inputs % INT4_GROUP:
        raise ValueError(f"int4 weights need a CPU and inputs in groups of {INT4_GROUP}, got {tuple(weight.shape)} "
                         f"on {weight.device.type}")
    groups = weight.float().view(outputs, inputs // INT4_GROUP, INT4_GROUP)
    low, high = groups.amin(-1), groups.amax(-1)
    span = ((high - low) / 15).clamp(min=1e-12)
    noise = span[..., None] * 2**-8  # float32 rounding of a dequantized level, far below a step
    gaps = groups.sort(-1).values.diff(dim=-1)
    step = torch.maximum(gaps.masked_fill(gaps <= noise, torch.inf).amin(-1), span)
    off_grid = ((groups - low[..., None]) / step[..., None]).frac()
    on_grid = ((off_grid - off_grid.round()).abs() * step[..., None] <= noise).all(-1)
    scale = torch.where(on_grid, step, span)
    codes = ((groups - low[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).view(outputs, inputs)
    offset = low + 8 * scale  # the kernel computes (code - 8) * scale + offset
    scales = torch.stack([scale, offset], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1), scales


PROBE_ROWS = 128  # random rows a one-row kernel is checked on (where it differed, it did on a few percent of rows)


@functools.cache
def _one_row_kernel_differs(outputs: int, inputs: int, threads: int) -> bool:
    """Whether oneDNN's packed bfloat16 product of one row rounds differently, for some row, from the same row among
    several on this CPU at this shape (1,536 inputs on an AMD EPYC did; then a decode step's rows would not be a
    verify step's). Such a shape runs one row as two (its down projection alone: plain decode 7% slower there)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.ops.mkldnn._reorder_linear_weight(
        (torch.randn(outputs, inputs, generator=generator) / inputs**0.5).to(torch.bfloat16), 1)
    rows = torch.randn(PROBE_ROWS, inputs, generator=generator).to(torch.bfloat16)

    def product(x: Tensor) -> Tensor:
        out: Tensor = torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")
        return out

    together = product(rows)
    return any(not torch.equal(product(rows[i:i + 1]), together[i:i + 1]) for i in range(PROBE_ROWS))


def _onednn_bfloat16() -> bool:
    return bool(torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def rms_norm(x: Tensor, eps: float, doubled_weight: Tensor | None = None) -> Tensor:
    """RMSNorm over the last dim as a layer norm of [x, -x]: its mean is 0 and its variance mean(x^2), so it is the
    same function, and one native kernel on a CPU where F.rms_norm is a chain of small ones (a decode step runs 61
    of them). `doubled_weight`: the scale repeated twice, [w, w], or None for none."""
    width = x.shape[-1]
    return F.layer_norm(torch.cat([x, -x], -1), (2 * width,), doubled_weight, None, eps)[..., :width]


class RMSNorm:
    """RMSNorm scaling by `offset + weight` (Gemma stores its weights around 0, with offset 1)."""

    def __init__(self, weight: Tensor, eps: float, offset: float = 0.0) -> None:
        scale = (weight.float() + offset).to(weight.dtype) if offset else weight
        self.weight, self.eps = torch.cat([scale, scale]), eps

    def __call__(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.eps, self.weight)


class Embedding:
    """The token embedding table: a float table, or a GGUF Q8_0 table kept as 8-bit codes and a scale per 32
    values (SmolLM2's takes 32 MB, not 113 in float32), whose looked-up rows are bit for bit the dequantized ones
    (a float16 scale times an integer of 8 bits is exact in float32), then cast to the activations' type.

    >>> Embedding(torch.eye(3))(torch.tensor([2])).tolist()
    [[0.0, 0.0, 1.0]]
    """

    def __init__(self, table: Tensor | None = None, codes: Tensor | None = None, scales: Tensor | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        if (table is None) == (codes is None or scales is None):
            raise ValueError("Embedding needs a table, or 8-bit codes and their scales")
        self.table, self.codes, self.scales, self.dtype = table, codes, scales, dtype

    def __call__(self, tokens: Tensor) -> Tensor:
        if self.table is not None:
            return F.embedding(tokens, self.table)
        assert self.codes is not None and self.scales is not None
        return self._dequantize(F.embedding(tokens, self.codes), self.scales[tokens])

    def dense(self) -> Tensor:
        """The whole table in the activations' type (a tied output layer's weight)."""
        if self.table is not None:
            return self.table
        assert self.codes is not None and self.scales is not None
        return self._dequantize(self.codes, self.scales)

    def _dequantize(self, codes: Tensor, scales: Tensor) -> Tensor:
        blocks = codes.view(*codes.shape[:-1], -1, Q8_BLOCK).float()
        return (blocks * scales).flatten(-2).to(self.dtype)


class KVCache:
    """Keys and values of `slots` sequences of up to `max_len` tokens, for every layer, and `spare` slots more
    that no sequence owns (the padding rows of a fixed-shape forward write there).

    On a GPU the whole cache is allocated at start, so its memory is bounded by slots x max_len: one that would
    not fit beside `weight_bytes` of weights still to load is refused, saying how many slots would.

    On a CPU the memory is an anonymous mapping: the OS hands out a page when it is first written, so the cache
    holds resident what sequences have used (8 slots of 4,096 tokens reserve 1.5 GB for SmolLM2-135M; a
    chat uses a few MB of it).
    """

    def __init__(self, config: LlamaConfig, slots: int, max_len: int, dtype: torch.dtype, device: torch.device,
                 spare: int = 0, weight_bytes: int = 0) -> None:
        shape = (config.n_layers, slots + spare, config.n_kv_heads, max_len, config.head_dim)
        if device.type == "cuda":
            _check_fits(2 * math.prod(shape) * dtype.itemsize, weight_bytes, slots, spare, max_len, device)
        self.k, self.v = (_zeros_on_demand(shape, dtype) if device.type == "cpu" else
                          torch.zeros(shape, dtype=dtype, device=device) for _ in "kv")
        self.slots, self.max_len = slots, max_len


GPU_SHARE = 0.9  # of a GPU's free memory, the weights and the KV cache may take (the rest: activations, logits)


def _check_fits(cache_bytes: int, weight_bytes: int, slots: int, spare: int, max_len: int,
                device: torch.device) -> None:
    """Refuse, before allocating, a KV cache that would not fit on the GPU beside the weights still to come, naming
    how many slots of this context would."""
    free = torch.cuda.mem_get_info(device)[0] * GPU_SHARE - weight_bytes
    if cache_bytes > free:
        fit = max(0, int(free // (cache_bytes / (slots + spare))) - spare)
        raise ValueError(f"a KV cache of {slots} slots x {max_len:,} tokens needs {cache_bytes / 1e9:.1f} GB, and "
                         f"{max(0.0, free) / 1e9:.1f} GB of {device} are left beside the weights: use at most {fit} "
                         f"slots of this context, or a shorter context")


def _zeros_on_demand(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A CPU tensor of zeros whose pages become resident only once written."""
    buffer = mmap.mmap(-1, math.prod(shape) * dtype.itemsize)
    return torch.frombuffer(buffer, dtype=dtype).view(shape)  # the tensor keeps the mapping alive


@dataclass(frozen=True)
class Step:
    """What every layer of one forward shares: RoPE factors, and where each row reads and writes the cache:
    `rows` with their own masks (a view of each row's slot), or fixed-shape tensors (a CUDA graph's inputs)."""

    ropes: dict[str, tuple[Tensor, Tensor]]  # by kind ("global", "local"): cos, and sin negated in its first
    # half (rotate-half as a roll), each batch x length x 1 x rotary dims
    spans: list[list[Span]]  # each row's, in the order of `rows`
    rows: list[Row]
    slots: Tensor | None = None  # batch: each row's slot, whose cache it attends to
    write_slots: Tensor | None = None  # batch x length: the slot and position where each new token's key and
    write_at: Tensor | None = None  # value go (a padding token's go to a spare slot)
    sees: Tensor | None = None  # batch x 1 x length x window: which cached positions each new token attends to
    local_sees: Tensor | None = None  # the same within the sliding window (for windowed layers)


class Attention:
    def __init__(self, config: LlamaConfig, layer: int, take: "TensorSource", storage: WeightStorage,
                 cache: KVCache) -> None:
        self.keys, self.values = cache.k[layer], cache.v[layer]  # this layer's part of every slot
        self.scale = config.query_scale or config.head_dim ** -0.5
        self.softcap, self.windowed, self.rope = config.softcap_attn, config.windowed(layer), config.rope(layer)
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        prefix = f"model.layers.{layer}.self_attn"
        parts = ("q_proj", "k_proj", "v_proj")
        bias = _fused(take, prefix, "qkv_proj", parts, "bias") if config.qkv_bias else None
        self.qkv_proj = Linear(_fused(take, prefix, "qkv_proj", parts, "weight"), bias, storage)
        self.o_proj = Linear(take(f"{prefix}.o_proj.weight"), None, storage)
        self.qk_norm: Tensor | None = None  # each query and key head's RMSNorm scale: heads + kv_heads x head_dim
        self.norm_eps = config.norm_eps
        if config.qk_norm:
            q_norm, k_norm = take(f"{prefix}.q_norm.weight"), take(f"{prefix}.k_norm.weight")
            both = torch.cat([q_norm.expand(self.n_heads, -1), k_norm.expand(self.n_kv_heads, -1)])
            self.qk_norm = (both.float() + config.norm_offset).to(both.dtype)

    def __call__(self, x: Tensor, step: Step) -> Tensor:
        batch, length, _ = x.shape
        heads, kv_heads, dim = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = self.qkv_proj(x).to(x.dtype)  # narrow weights give narrow outputs: RoPE in mixed types is slower
        qk, v = qkv.view(batch, length, heads + 2 * kv_heads, dim).split_with_sizes([heads + kv_heads, kv_heads], 2)
        if self.qk_norm is not None:
            qk = rms_norm(qk, self.norm_eps) * self.qk_norm
        if self.rope != "none":
            qk = _rotate(qk, *step.ropes[self.rope])
        q, k = qk.transpose(1, 2).split_with_sizes([heads, kv_heads], 1)
        v = v.transpose(1, 2)
        if step.sees is not None:
            out = self._attend_fixed(q, k, v, step)
        else:
            out = self._attend_rows(q * self.scale, k, v, step)
        projected: Tensor = self.o_proj(out.transpose(1, 2).reshape(batch, length, heads * dim))
        return projected

    def _attend_rows(self, q: Tensor, k: Tensor, v: Tensor, step: Step) -> Tensor:
        """Each row's new tokens over its own slot, span by span (see `Row.spans`).

        Softmax(q k^T) v as two matrix products and a softmax, not one fused kernel: CPU SDPA splits its work by
        the number of queries, and its last bits (bfloat16 rounding then amplifies them) changed with it.
        Each of these is row by row the same whatever the number of rows (at least MIN_GEMM_ROWS); a span's keys
        are fixed by its window.
        """
        kv_heads, dim = self.n_kv_heads, self.head_dim
        outs = []
        for b, (row, spans) in enumerate(zip(step.rows, step.spans, strict=True)):
            end = row.start + q.shape[2]
            self.keys[row.slot, :, row.start:end] = k[b]
            self.values[row.slot, :, row.start:end] = v[b]
            for span in spans:
                n = span.last - span.first
                keys, values = self.keys[row.slot, :, :span.window], self.values[row.slot, :, :span.window]
                queries = q[b, :, span.first:span.last].reshape(kv_heads, -1, dim)  # a kv head's query heads
                bias = span.local_bias if self.windowed else span.bias
                assert bias is not None, "a windowed layer needs spans made with its sliding window"
                rows = queries.shape[1]
                if rows < MIN_GEMM_ROWS:  # padding rows see every key: no NaN, and are cut off below
                    queries = F.pad(queries, (0, 0, 0, MIN_GEMM_ROWS - rows))
                    bias = F.pad(bias, (0, 0, 0, MIN_GEMM_ROWS - rows))
                if self.softcap is None:
                    scores = torch.baddbmm(bias, queries, keys.transpose(1, 2))  # the mask added in the product
                else:  # capped before the mask is added
                    scores = torch.bmm(queries, keys.transpose(1, 2))
                    scores = scores.div_(self.softcap).tanh_().mul_(self.softcap).add_(bias)
                outs.append(torch.bmm(scores.softmax(-1), values)[:, :rows].reshape(1, -1, n, dim))
        joined = outs[0] if len(outs) == 1 else torch.cat(outs, 2)  # 1 x heads x rows * length x dim
        return joined.view(-1, len(step.rows), q.shape[2], dim).transpose(0, 1)

    def _attend_fixed(self, q: Tensor, k: Tensor, v: Tensor, step: Step) -> Tensor:
        """Every row over its slot's first `window` keys, with fixed shapes: the query heads of a key head folded
        into one matrix product (no key or value copied per query head), the mask applied before the softmax."""
        sees = step.local_sees if self.windowed else step.sees
        assert step.slots is not None and step.write_slots is not None and sees is not None
        batch, _, length, dim = q.shape
        window, group = sees.shape[-1], self.n_heads // self.n_kv_heads
        self.keys[step.write_slots, :, step.write_at] = k.transpose(1, 2).to(self.keys.dtype)  # no host sync
        self.values[step.write_slots, :, step.write_at] = v.transpose(1, 2).to(self.values.dtype)  # graph-safe
        keys, values = self.keys[:, :, :window][step.slots], self.values[:, :, :window][step.slots]
        queries = (q * self.scale).reshape(batch, self.n_kv_heads, group * length, dim)
        scores = queries @ keys.transpose(-1, -2)  # batch x kv heads x group * length x window
        if self.softcap is not None:
            scores = (scores / self.softcap).tanh() * self.softcap
        scores = scores.view(batch, self.n_kv_heads, group, length, window).masked_fill(~sees[:, :, None], -math.inf)
        out: Tensor = scores.softmax(-1).view(batch, self.n_kv_heads, group * length, window) @ values
        return out.view(batch, self.n_heads, length, dim)


def _fused(take: "TensorSource", prefix: str, fused: str, parts: tuple[str, ...], kind: str = "weight") -> Tensor:
    """A fused projection's tensor: as stored (Phi-3's qkv_proj and gate_up_proj), or its parts joined."""
    if f"{prefix}.{fused}.{kind}" in take.tensors:
        return take(f"{prefix}.{fused}.{kind}")
    return torch.cat([take(f"{prefix}.{part}.{kind}") for part in parts])


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE in the rotate-half layout over each head's first `cos.shape[-1]` dims (all but with partial rotary)."""
    dims = cos.shape[-1]
    if dims == x.shape[-1]:
        return torch.addcmul(x * cos, x.roll(dims // 2, -1), sin)
    turned = x[..., :dims]
    return torch.cat([torch.addcmul(turned * cos, turned.roll(dims // 2, -1), sin), x[..., dims:]], -1)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "silu": F.silu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}  # the gated MLP's, by config name


class MLP:
    def __init__(self, config: LlamaConfig, layer: int, take: "TensorSource", storage: WeightStorage) -> None:
        prefix = f"model.layers.{layer}.mlp"
        self.gate_up_proj = Linear(_fused(take, prefix, "gate_up_proj", ("gate_proj", "up_proj")), None, storage)
        self.down_proj = Linear(take(f"{prefix}.down_proj.weight"), None, storage)
        self.activation = ACTIVATIONS[config.activation]

    def __call__(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        down: Tensor = self.down_proj(self.activation(gate) * up)
        return down


class Block:
    def __init__(self, config: LlamaConfig, layer: int, take: "TensorSource", storage: WeightStorage,
                 cache: KVCache) -> None:
        def norm(name: str) -> RMSNorm:
            return RMSNorm(take(f"model.layers.{layer}.{name}.weight"), config.norm_eps, config.norm_offset)

        self.input_layernorm = norm("input_layernorm")
        self.self_attn = Attention(config, layer, take, storage, cache)
        # with post-norms (Gemma), post_attention_layernorm norms attention's output, not the MLP's input
        self.attn_out_norm = norm("post_attention_layernorm") if config.post_norms else None
        self.mlp_norm = norm("pre_feedforward_layernorm" if config.post_norms else "post_attention_layernorm")
        self.mlp_out_norm = norm("post_feedforward_layernorm") if config.post_norms else None
        self.mlp = MLP(config, layer, take, storage)

    def __call__(self, x: Tensor, step: Step) -> Tensor:
        attn = self.self_attn(self.input_layernorm(x), step)
        x = x + (attn if self.attn_out_norm is None else self.attn_out_norm(attn.to(x.dtype)))
        mlp: Tensor = self.mlp(self.mlp_norm(x))
        return x + (mlp if self.mlp_out_norm is None else self.mlp_out_norm(mlp.to(x.dtype)))

    def norms(self) -> list[RMSNorm]:
        """The block's norms (two, or four with post-norms)."""
        return [n for n in (self.input_layernorm, self.attn_out_norm, self.mlp_norm, self.mlp_out_norm)
                if n is not None]


class TensorSource:
    """Hands out loaded weights' tensors by name, once each, on `device`, and names what is missing or left over."""

    def __init__(self, tensors: dict[str, Tensor], source: str, device: torch.device) -> None:
        self.tensors, self.source, self.device = dict(tensors), source, device

    def __call__(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise WeightsError(f"{self.source}: tensor {name!r} is missing")
        return self.tensors.pop(name).to(self.device)

    def check_used(self) -> None:
        if self.tensors:
            raise WeightsError(f"{self.source}: unexpected tensors {sorted(self.tensors)[:5]}")


class Llama:
    """The model. `model(tokens, rows)` returns logits of the last position of each row, or of all.

    >>> model = Llama.from_weights(weights.load(path), slots=4, max_len=2048)  # doctest: +SKIP
    >>> logits = model(torch.tensor([[1, 2, 3]]), [Row(slot=0, start=0)])  # doctest: +SKIP
    """

    def __init__(self, config: LlamaConfig, take: TensorSource, storage: WeightStorage, cache: KVCache) -> None:
        self.config, self.cache = config, cache
        if f"{EMBEDDING}.codes" in take.tensors:  # a GGUF's Q8_0 table, as stored
            self.embedding = Embedding(None, take(f"{EMBEDDING}.codes"), take(f"{EMBEDDING}.scales"),
                                       take.tensors["model.norm.weight"].dtype)
        else:
            self.embedding = Embedding(take(f"{EMBEDDING}.weight"))
        self.layers = [Block(config, i, take, storage, cache) for i in range(config.n_layers)]
        dtype = take.tensors["model.norm.weight"].dtype
        self.embed_scale = torch.tensor(config.embed_scale, dtype=dtype, device=take.device)  # rounded as Gemma's
        self.norm = RMSNorm(take("model.norm.weight"), config.norm_eps, config.norm_offset)
        # 4-bit projections leave the output layer at 16 bits: GGUF Q4 files keep it at 8, and 4 bits cost accuracy
        self.lm_head = Linear(self.embedding.dense() if config.tie_embeddings else take("lm_head.weight"), None,
                              torch.float16 if storage == "int4" else storage)
        self.inv_freq = rope_frequencies(config, take.tensors.pop("rope_freqs.weight", None)).to(take.device)
        self.local_inv_freq = None if config.rope_local_theta is None else rope_frequencies(
            replace(config, rope_theta=config.rope_local_theta, rope_scaling=None)).to(take.device)

    @classmethod
    def from_weights(cls, files: WeightFiles, *, slots: int = 1, max_len: int = 2048,
                     device: str | torch.device = "cpu", weight_dtype: WeightStorage | None = None,
                     spare_slots: int = 0) -> "Llama":
        """A model with the weights of `files` and a KV cache of `slots` x `max_len` tokens (and `spare_slots`
        more for the padding rows of `forward_fixed`).

        Activations and the cache use the dtype of the loaded weights; `weight_dtype` stores the projections' weights
        narrower (float16, bfloat16, or "int4" on a CPU).
        """
        dtype, device = files.tensors["model.norm.weight"].dtype, torch.device(device)
        take = TensorSource(files.tensors, files.source or "checkpoint", device)
        to_move = sum(t.numel() * t.element_size() for t in files.tensors.values() if t.device != device)
        cache = KVCache(files.config, slots, min(max_len, files.config.max_seq_len), dtype, device,
                        spare_slots, to_move)
        model = cls(files.config, take, weight_dtype or dtype, cache)
        take.check_used()
        return model

    def weight_bytes(self) -> int:
        """Bytes of weights one decode step reads: every projection, norm and the lm_head (one embedding row aside)."""
        linears = [self.lm_head]
        tensors = [self.norm.weight]
        for block in self.layers:
            linears += [block.self_attn.qkv_proj, block.self_attn.o_proj, block.mlp.gate_up_proj, block.mlp.down_proj]
            tensors += [norm.weight for norm in block.norms()]
            tensors += [] if block.self_attn.qk_norm is None else [block.self_attn.qk_norm]
        tensors += [t for linear in linears for t in (linear.weight, linear.bias, linear.scales) if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    @torch.inference_mode()
    def forward(self, tokens: Tensor, rows: list[Row], *, all_logits: bool = False) -> Tensor:
        """Logits for `tokens` (batch x length), writing their keys and values into each row's slot."""
        length = tokens.shape[1]
        if any(r.start + length > self.cache.max_len for r in rows):
            raise ValueError(f"sequence longer than the KV cache ({self.cache.max_len} tokens)")
        x = self._embed(tokens)
        step = self._step(rows, length, x.dtype)
        for block in self.layers:
            x = block(x, step)
        logits = self._logits(x if all_logits else x[:, -1:])
        return logits if all_logits else logits[:, -1]

    __call__ = forward

    @torch.inference_mode()
    def forward_fixed(self, tokens: Tensor, slots: Tensor, positions: Tensor, write_slots: Tensor, write_at: Tensor,
                      sees: Tensor) -> Tensor:
        """Logits of every token, with every shape fixed by the arguments' (what a CUDA graph replays).

        `tokens`, `positions` (RoPE), `write_slots` and `write_at` (where each token's key and value go) are
        batch x length; `slots` is each row's slot; `sees` (batch x 1 x length x window, bool) says which of
        the slot's first `window` positions each token attends to, after this forward's own writes.
        """
        x = self._embed(tokens)
        local, width = None, self.config.sliding_window
        if width is not None:  # windowed layers also hide keys older than the window
            local = sees & (torch.arange(sees.shape[-1], device=sees.device) > positions[..., None] - width)[:, None]
        step = Step(self._rope(positions, x.dtype), [], [], slots, write_slots, write_at, sees, local)
        for block in self.layers:
            x = block(x, step)
        return self._logits(x)

    def _embed(self, tokens: Tensor) -> Tensor:
        x = self.embedding(tokens)
        return x if self.config.embed_scale == 1.0 else x * self.embed_scale

    def _logits(self, x: Tensor) -> Tensor:
        """Float32 logits of the last hidden states, soft-capped where the config says so."""
        logits: Tensor = self.lm_head(self.norm(x)).float()
        cap = self.config.softcap_final
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def _step(self, rows: list[Row], length: int, dtype: torch.dtype) -> Step:
        device = self.inv_freq.device
        positions = [list(range(r.start, r.start + length)) for r in rows]
        group = self.config.n_heads // self.config.n_kv_heads
        spans = [r.spans(length, group, dtype, device, self.config.sliding_window) for r in rows]
        return Step(self._rope(torch.tensor(positions, device=device), dtype), spans, rows)

    def _rope(self, positions: Tensor, dtype: torch.dtype) -> dict[str, tuple[Tensor, Tensor]]:
        """RoPE factors (cos, and sin negated in its first half) for batch x length positions, by kind."""
        kinds = {"global": self.inv_freq} | ({} if self.local_inv_freq is None else {"local": self.local_inv_freq})
        ropes = {}
        for kind, inv_freq in kinds.items():
            angles = (positions[..., None].float() * inv_freq)[:, :, None]  # batch x length x 1 x rotary dims/2
            cos, sin = angles.cos(), angles.sin()
            ropes[kind] = (torch.cat((cos, cos), -1).to(dtype), torch.cat((-sin, sin), -1).to(dtype))
        return ropes

    def copy_slot(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` cached positions of one slot into another (n > 1 samples share a prompt)."""
        self.cache.k[:, target, :, :length] = self.cache.k[:, source, :, :length]
        self.cache.v[:, target, :, :length] = self.cache.v[:, source, :, :length]


def rope_frequencies(config: LlamaConfig, freq_factors: Tensor | None = None) -> Tensor:
    """Inverse frequencies of RoPE over its rotary dims, with linear, llama3 or per-frequency (GGUF rope_freqs)
    scaling."""
    dim = config.rotary_dim or config.head_dim
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
