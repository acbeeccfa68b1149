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
from baobab.engine.model import INT4_GROUP, Embedding, Linear, Llama, Row, WeightStorage
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
    files = weights.load(weights.resolve(weights.DEFAULT_MODEL))
    c = files.config
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": c.vocab_size, "hidden_size": c.dim, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "intermediate_size": c.hidden_dim,
        "rms_norm_eps": c.norm_eps, "rope_theta": c.rope_theta, "max_position_embeddings": c.max_seq_len,
        "tie_word_embeddings": True}))
    tensors = dict(files.tensors)  # a Hugging Face file holds the token table in float
    codes, scales = tensors.pop("model.embed_tokens.codes"), tensors.pop("model.embed_tokens.scales")
    tensors["model.embed_tokens.weight"] = Embedding(None, codes, scales).dense()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))
    ChatTokenizer(files).tokenizer.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": files.chat_template}))
    directory = LocalLLM(str(tmp_path), slots=1, context=256, prefix_cache_mb=0, weight_dtype="float32")
    text = "Hello, how are you?"
    assert directory.tokenizer.encode(text) == local_llm.tokenizer.encode(text)
    ids = torch.tensor([local_llm.tokenizer.encode(text)])
    # on each engine's thread: an idle engine may be measuring forwards in its slot 0
    ours = directory.scheduler.run_on_engine(lambda: directory.model(ids, [Row(0, 0)]))
    reference = local_llm.scheduler.run_on_engine(lambda: local_llm.model(ids, [Row(7, 0)]))
    assert torch.allclose(ours, reference, atol=1e-5)
    messages = [{"role": "user", "content": "Hi"}]
    assert directory.tokenizer.render(messages) == local_llm.tokenizer.render(messages)
    assert isinstance(directory.model, Llama)
    run_sync(directory.aclose())


def test_bfloat16_weights_with_float32_activations_are_the_cpu_default() -> None:
    default = LocalLLM(slots=1, context=128, prefix_cache_mb=0)
    assert default.model.lm_head.weight.dtype == torch.bfloat16 and default.model.lm_head.packed
    assert "Paris" in default.complete_sync(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                            max_tokens=16, temperature=0).text
    run_sync(default.aclose())


@pytest.mark.parametrize(("storage", "bound"), [(torch.float16, 1e-2), (torch.bfloat16, 3e-2), ("int4", 5e-2)])
def test_narrow_weights_stay_close_in_decode_and_prefill(local_llm: Any, storage: WeightStorage, bound: float) -> None:
    """Logits move far less than the GGUF's own Q4 quantisation did, whether the narrow weight is used as
    stored (one token: decode) or widened (many tokens: prefill). bfloat16 has 3 bits less than float16; 4-bit
    groups rebuild the file's Q4_1 levels but multiply bfloat16 activations, and keep a 16-bit output layer."""
    files = weights.load(weights.resolve(weights.DEFAULT_MODEL))
    narrow = Llama.from_weights(files, slots=1, max_len=128, weight_dtype=storage)
    assert narrow.lm_head.weight.dtype == (torch.float16 if storage == "int4" else storage)
    assert narrow.embedding.codes is not None  # the GGUF's 8-bit table, whatever the projections' storage
    text = "The quick brown fox jumps over the lazy dog. Then it ran into the forest, where the old owls sleep."
    ids = torch.tensor([local_llm.tokenizer.encode(text)])
    prefill = narrow(ids, [Row(0, 0)], all_logits=True)
    ref = local_llm.scheduler.run_on_engine(lambda: local_llm.model(ids, [Row(7, 0)], all_logits=True))
    decode = torch.stack([narrow(ids[:, i:i + 1], [Row(0, i)]) for i in range(ids.shape[1])], dim=1)
    for ours in (prefill, decode):
        assert ours.dtype == torch.float32
        assert ((ours - ref).abs().max() / ref.abs().max()).item() < bound
        assert (ours.argmax(-1) == ref.argmax(-1)).float().mean().item() > 0.9


def test_int4_groups_rebuild_q4_levels_and_refuse_odd_shapes() -> None:
    """A group on a Q4_1 grid (16 levels from its smallest weight up) comes back level for level: the product is
    what the grid's weights give, to bfloat16's rounding of the output; a width not made of groups is refused."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (64, 4 * INT4_GROUP), generator=generator)
    codes[:, ::INT4_GROUP], codes[:, 1::INT4_GROUP] = 0, 15  # every group spans all 16 levels
    step = torch.tensor([2.0 ** -e for e in range(4, 8)]).repeat_interleave(INT4_GROUP)  # exact in bfloat16
    weight = codes * step - 0.5
    x = torch.randn(3, 4 * INT4_GROUP, generator=generator).to(torch.bfloat16).float()
    got = Linear(weight, None, "int4")(x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), x @ weight.T, rtol=8e-3, atol=1e-2)
    with pytest.raises(ValueError, match=r"groups of 32, got \(8, 40\)"):
        Linear(torch.randn(8, 40), None, "int4")


def test_int4_weights_answer_and_read_a_quarter_of_the_bytes() -> None:
    llm = LocalLLM(slots=1, context=128, prefix_cache_mb=0, weight_dtype="int4", speculative=False)
    try:
        assert "Paris" in llm.complete_sync(messages=[{"role": "user", "content": "What is the capital of France?"}],
                                            max_tokens=16, temperature=0).text
        down = llm.model.layers[0].mlp.down_proj
        assert down.scales is not None and down.weight.numel() * 2 == 576 * 1536  # two 4-bit codes a byte
    finally:
        run_sync(llm.aclose())


def test_an_8_bit_embedding_table_stays_8_bit_and_gives_the_same_rows() -> None:
    """The GGUF's Q8_0 token table is kept as codes and scales (a quarter of float32's bytes): every row it gives
    is bit for bit the row the gguf package dequantizes, then cast to the activations' type."""
    import gguf
    from gguf.quants import dequantize

    path = weights.resolve(weights.DEFAULT_MODEL)
    stored = next(t for t in gguf.GGUFReader(path).tensors if t.name == "token_embd.weight")
    table = torch.from_numpy(dequantize(stored.data, stored.tensor_type).copy())
    tensors = weights.load(path).tensors
    assert "model.embed_tokens.weight" not in tensors and tensors["model.embed_tokens.codes"].dtype == torch.int8
    embedding = Embedding(None, tensors["model.embed_tokens.codes"], tensors["model.embed_tokens.scales"])
    assert torch.equal(embedding.dense(), table)
    ids = torch.tensor([[0, 1, 500, 49151], [7, 7, 8, 9]])
    assert torch.equal(embedding(ids), torch.nn.functional.embedding(ids, table))
    narrow = Embedding(None, embedding.codes, embedding.scales, torch.bfloat16)
    assert torch.equal(narrow(ids), torch.nn.functional.embedding(ids, table.to(torch.bfloat16)))
    with pytest.raises(ValueError, match="a table, or 8-bit codes and their scales"):
        Embedding(table, embedding.codes, embedding.scales)
