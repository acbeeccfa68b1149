"""A sentence-transformers BERT folder (all-MiniLM-L6-v2 and its kind) run on torch directly: tokenizers, the
safetensors weights, a BERT encoder forward, mean (or CLS) pooling and L2 normalisation. It gives the same vectors
as sentence-transformers (to ~1e-6) without that package's dependencies (transformers, scikit-learn, scipy).

>>> encoder = BertEncoder.load(Path("all-MiniLM-L6-v2"))  # doctest: +SKIP
>>> encoder.encode(["a note"]).shape  # doctest: +SKIP
torch.Size([1, 384])
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer


@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT `config.json` the forward reads, and how the sentence vector is pooled."""

    layers: int
    heads: int
    eps: float
    max_tokens: int  # sentence-transformers' max_seq_length: longer texts are cut there
    pooling: str  # "mean" or "cls"

    @classmethod
    def read(cls, folder: Path) -> "BertConfig":
        """The config of a sentence-transformers folder; a ValueError names the file and what was expected."""
        config = json.loads((folder / "config.json").read_text())
        if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{folder / 'config.json'}: expected a BERT model with gelu activations "
                             f"(model_type 'bert'), got model_type {config.get('model_type')!r}")
        st_config = folder / "sentence_bert_config.json"
        max_tokens = json.loads(st_config.read_text())["max_seq_length"] if st_config.exists() else 512
        return cls(layers=config["num_hidden_layers"], heads=config["num_attention_heads"],
                   eps=config["layer_norm_eps"], max_tokens=min(max_tokens, config["max_position_embeddings"]),
                   pooling=_pooling(folder))


def _pooling(folder: Path) -> str:
    path = folder / "1_Pooling" / "config.json"
    if not path.exists():
        return "mean"
    config = json.loads(path.read_text())
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    raise ValueError(f"{path}: expected pooling_mode_mean_tokens or pooling_mode_cls_token to be true")


class BertEncoder:
    """Texts -> L2-normalised sentence vectors, in float32 on the CPU."""

    def __init__(self, tokenizer: Tokenizer, weights: dict[str, torch.Tensor], config: BertConfig) -> None:
        self.tokenizer, self.w, self.config = tokenizer, weights, config
        self.dim = int(weights["embeddings.word_embeddings.weight"].shape[1])

    @classmethod
    def load(cls, folder: Path) -> "BertEncoder":
        """Read a sentence-transformers folder: tokenizer.json, model.safetensors and the configs."""
        config = BertConfig.read(folder)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()  # the file pads every text to 128 tokens; a batch pads to its longest instead
        tokenizer.enable_truncation(config.max_tokens)
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0)
        weights = {name.removeprefix("bert."): tensor.float() for name, tensor in
                   load_file(str(folder / "model.safetensors")).items()}
        return cls(tokenizer, weights, config)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """An (n, dim) tensor of unit vectors, one per text."""
        batch = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in batch])
        mask = torch.tensor([e.attention_mask for e in batch], dtype=torch.float32)
        hidden = self.forward(ids, mask)
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The last hidden states (batch, tokens, dim); padded keys are masked out of attention."""
        w, n = self.w, ids.shape[1]
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        bias = ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        heads = self.config.heads
        for i in range(self.config.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (self._linear(x, p + f"attention.self.{name}").reshape(*ids.shape, heads, -1).transpose(1, 2)
                       for name in ("query", "key", "value"))
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).flatten(2)
            x = self._norm(x + self._linear(attended, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            inner = F.gelu(self._linear(x, p + "intermediate.dense"))
            x = self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")
        return x

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[name + ".weight"], self.w[name + ".bias"], self.config.eps)
