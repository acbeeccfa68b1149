"""SentencePiece vocabularies rebuilt from GGUF files encode and decode as transformers' conversion of the same file:
a synthetic Llama-2-style file (scores, byte-fallback tokens, token types) and the real Gemma 3 270M Q4_K_M file."""

import sys
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from baobab.engine import weights
from baobab.engine.tokenizer import ChatTokenizer
from baobab.engine.weights import LlamaConfig, WeightFiles, WeightsError

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tiny_models.py, beside this file
from tiny_models import finish

CORPUS = ["Hello world", " leading space", "   three leading", "trailing  ", "a  b   c    d", "\n\nnewlines\n",
          "tab\there\t\tend", "\r\n windows", "café naïve résumé über straße Ærø", "東京タワー 中文 日本語 한국어",
          "emoji 🎉🎉 👩‍💻 🇫🇷", "digits 0123456789 and 3.14159265358979 and 1,000,000", "12345678901234567890",
          "def f(x):\n    return x ** 2  # square\n", "if (a && b) { return c[i]; }", "<s>hi</s> <unk> <tool>",
          "<bos>text<eos> <start_of_turn>user\nhi<end_of_turn>\n", "", " ", "  ", "ŉ ǅ ﬁ", "x" * 300,
          "The quick brown fox jumps over the lazy dog."]
TRAINING = ["The quick brown fox jumps over the lazy dog.", "Hello world, hello there! Numbers 12345 and 2024.",
            "def f(x):\n    return x * 2  # code", "café naïve résumé über straße", "東京 中文 日本語 한국어",
            "  indented\ttab line\nnext line", "for i in range(10): print(i)"]
LLAMA2_TEMPLATE = "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"


def write_sentencepiece_gguf(path: Path, add_space_prefix: bool | None = None) -> Path:
    """A Llama-2-style file: <unk> <s> </s>, the 256 byte tokens, pieces scored by merge order, single characters
    last (as SentencePiece orders them), a user-defined <tool>; a one-block model so transformers reads it."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Metaspace("\u2581", "always", split=True)
    bpe.train_from_iterator(TRAINING * 20, trainers.BpeTrainer(vocab_size=400, limit_alphabet=60,
                                                               show_progress=False))
    trained = bpe.get_vocab()
    chars = sorted((t for t in trained if len(t) == 1), key=trained.__getitem__)
    pieces = sorted((t for t in trained if len(t) > 1), key=trained.__getitem__)
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces, *chars, "<tool>"]
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))] + [-1e6 - i for i in range(len(chars))] + [0.0]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(pieces) + len(chars)) + [4]  # unknown, control, byte, normal, user
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if add_space_prefix is not None:
        writer.add_add_space_prefix(add_space_prefix)
    writer.add_chat_template(LLAMA2_TEMPLATE)
    for add, value in ((writer.add_context_length, 64), (writer.add_embedding_length, 8), (writer.add_block_count, 1),
                       (writer.add_feed_forward_length, 16), (writer.add_head_count, 2), (writer.add_head_count_kv, 2),
                       (writer.add_rope_dimension_count, 4)):
        add(value)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), np.float32))
    finish(writer)
    return path


@pytest.fixture(scope="module")
def llama2_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sentencepiece_gguf(tmp_path_factory.mktemp("spm") / "llama2.gguf")


@pytest.fixture(scope="module")
def pairs() -> dict[Path, tuple[ChatTokenizer, Any]]:
    """Each file's engine tokenizer and transformers' reference, made once (Gemma's take seconds each)."""
    return {}


def pair(path: Path, pairs: dict[Path, tuple[ChatTokenizer, Any]]) -> tuple[ChatTokenizer, Any]:
    if path not in pairs:
        pairs[path] = chat_tokenizer(path), reference(path)
    return pairs[path]


def chat_tokenizer(path: Path) -> ChatTokenizer:
    """The engine's tokenizer of a GGUF file, whatever its architecture (the model itself is not built)."""
    fields, template = weights.gguf_tokenizer(gguf.GGUFReader(path))
    config = LlamaConfig(vocab_size=1, dim=1, n_layers=1, n_heads=1, n_kv_heads=1, hidden_dim=1, head_dim=1)
    return ChatTokenizer(WeightFiles(config, {}, fields, template, str(path)))


def reference(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.mark.parametrize("name", ["llama2_file", "gemma_file"])
def test_sentencepiece_ids_and_text_match_transformers(name: str, request: pytest.FixtureRequest,
                                                       pairs: dict[Path, tuple[ChatTokenizer, Any]]) -> None:
    ours, hf = pair(request.getfixturevalue(name), pairs)
    for text in CORPUS:
        ids = ours.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False), text
        assert ours.decode(ids) == hf.decode(ids), text
        # a text's leading space is SentencePiece's prefix where the vocabulary adds one: decoding drops it
        prefixed = name == "llama2_file" and text.startswith(" ")
        assert ours.decode(ids) == (text[1:] if prefixed else text)
    assert ours.vocab[:3] == hf.convert_ids_to_tokens([0, 1, 2])


def test_byte_fallback_spells_unknown_characters_in_bytes(llama2_file: Path) -> None:
    tok = chat_tokenizer(llama2_file)
    ids = tok.encode("🎉")
    assert [tok.vocab[i] for i in ids] == ["\u2581", "<0xF0>", "<0x9F>", "<0x8E>", "<0x89>"]
    assert tok.encode("<tool><s>") == [tok.tokenizer.token_to_id("<tool>"), 1]  # added tokens stay whole


def test_without_a_space_prefix_leading_spaces_round_trip(tmp_path: Path) -> None:
    """add_space_prefix = false (as llama.cpp reads it): no "▁" before the text, so every text comes back."""
    tok = chat_tokenizer(write_sentencepiece_gguf(tmp_path / "no-prefix.gguf", add_space_prefix=False))
    assert tok.vocab[tok.encode("Hello")[0]] != "\u2581Hello"
    for text in CORPUS:
        assert tok.decode(tok.encode(text)) == text


def test_bos_starts_a_prompt_once_and_the_template_writes_its_own(llama2_file: Path, gemma_file: Path,
                                                                  pairs: dict[Path, tuple[ChatTokenizer, Any]]) -> None:
    """A raw prompt gets BOS as transformers' tokenizer(text) does, never a second one; a rendered chat template
    is tokenized as transformers' apply_chat_template (the template writes {{ bos_token }})."""
    llama, hf = pair(llama2_file, pairs)
    assert llama.prompt_bos == 1 and llama.encode("Hello world", bos=True) == hf.encode("Hello world")
    once = llama.encode("<s>Hello", bos=True)
    assert once == llama.encode("<s>Hello") and once[0] == 1 and once.count(1) == 1
    messages = [{"role": "user", "content": "Hi there"}]
    rendered = llama.render(messages)
    assert rendered == hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert llama.encode(rendered) == list(hf.apply_chat_template(messages, add_generation_prompt=True,
                                                                 tokenize=True, return_dict=True)["input_ids"])
    assert llama.encode(rendered).count(1) == 1

    gemma, gemma_hf = pair(gemma_file, pairs)  # the file has no template: Gemma's turns, found by <start_of_turn>
    prompt = gemma.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert prompt == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert gemma.encode(prompt)[:2] == [2, 105] and gemma.encode(prompt).count(2) == 1
    assert gemma.encode("Hi", bos=True) == gemma_hf.encode("Hi") == [2, *gemma.encode("Hi")]
    assert gemma.tokenizer.token_to_id("<end_of_turn>") in gemma.eos_ids


def test_an_unknown_tokenizer_model_names_the_file_and_what_is_supported(llama2_file: Path) -> None:
    fields, template = weights.gguf_tokenizer(gguf.GGUFReader(llama2_file))
    config = LlamaConfig(vocab_size=1, dim=1, n_layers=1, n_heads=1, n_kv_heads=1, hidden_dim=1, head_dim=1)
    with pytest.raises(WeightsError, match=r"llama2\.gguf: tokenizer\.ggml\.model 'bert' is not supported "
                                           r"\(supported: 'gpt2' .*'llama'"):
        ChatTokenizer(WeightFiles(config, {}, {**fields, "model": "bert"}, template, str(llama2_file)))


@pytest.mark.parametrize("name", ["llama2_file", "gemma_file"])
def test_a_json_grammar_reads_sentencepiece_tokens_as_their_text(name: str, request: pytest.FixtureRequest,
                                                                 pairs: dict[Path, tuple[ChatTokenizer, Any]]) -> None:
    """Constrained decoding spells a token as the vocabulary does ("▁" a space, <0xNN> a byte): the tokens of an
    answer that fits the schema all pass, and the grammar ends on the model's end of turn."""
    from baobab.engine.grammar import Grammars
    from baobab.engine.types import Request

    ours, _ = pair(request.getfixturevalue(name), pairs)
    grammars = Grammars(ours.vocab, ours.eos_ids, byte_fallback=ours.byte_fallback)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    constraint = grammars.for_request(Request(prompt="x", response_format={
        "type": "json_schema", "json_schema": {"name": "place", "schema": schema}}))
    assert constraint is not None and ours.byte_fallback
    answer = ours.encode('{"city": "New Tōkyō ☃"}')
    assert ours.decode(answer) == '{"city": "New Tōkyō ☃"}'
    answer = answer[1:] if ours.vocab[answer[0]] == "▁" else answer  # a text's start space: a reply has none
    for token in answer:
        constraint.accept(token)  # raises on a token the grammar forbids
    constraint.accept(sorted(ours.eos_ids)[0])
    assert constraint.done()
