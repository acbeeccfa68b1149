"""Text to tokens and back (the `tokenizers` library), and chat messages to a prompt (the model's template).

A GGUF file carries its vocabulary: byte-level BPE (GPT-2 style: merges and a pre-tokenizer name, rebuilt with
llama.cpp's splitting rules) or SentencePiece BPE (Llama 2, Mistral, Gemma: tokens with scores, byte-fallback tokens
<0xNN>, merges implied by the scores where the file lists none). Each is rebuilt into a `tokenizers.Tokenizer` that
encodes and decodes as transformers' own conversion of the same file. A Hugging Face directory has tokenizer.json.
"""

from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from baobab.engine.weights import WeightFiles, WeightsError

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
           r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = _LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
# llama.cpp's pre-tokenizer names -> the regexes it splits with, in order
_PRE_SPLITS: dict[str, list[str]] = {
    "gpt2": [_GPT2], "default": [_GPT2],
    "smollm": [r"\p{N}", _GPT2], "starcoder": [r"\p{N}", _GPT2], "refact": [r"\p{N}", _GPT2],
    "llama-bpe": [_LLAMA3], "llama3": [_LLAMA3], "qwen2": [_QWEN2],
}
_SPACE = "\u2581"  # SentencePiece's visible space
_GEMMA = ("gemma", "gemma2", "gemma3")  # architectures whose "llama" vocabulary is Gemma's
_CONTROL, _USER_DEFINED = 3, 4  # GGUF token types
_NAMED_TOKENS = ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id")
_BYTE_ALPHABET = set(pre_tokenizers.ByteLevel.alphabet())
_END_OF_TURN = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>")
_CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
           "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Gemma's turns (a system message opens the first user turn), for GGUF files that carry no template
_GEMMA_TURNS = ("{{ bos_token }}{% set system = messages[0].content + '\n\n' if messages[0].role == 'system' "
                "else '' %}{% for m in messages if m.role != 'system' %}<start_of_turn>"
                "{{ 'model' if m.role == 'assistant' else m.role }}\n{{ system if loop.first else '' }}"
                "{{ m.content | trim }}<end_of_turn>\n{% endfor %}"
                "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


class ChatTokenizer:
    """Encode, decode, and render chat messages with the model's template.

    >>> tok = ChatTokenizer(weights.load(path))  # doctest: +SKIP
    >>> tok.decode(tok.encode("Hello world"))  # doctest: +SKIP
    'Hello world'
    """

    def __init__(self, files: WeightFiles) -> None:
        data = files.tokenizer
        self.prompt_bos: int | None = None  # the BOS a raw prompt starts with (a chat template writes its own)
        if "file" in data:
            self.tokenizer = Tokenizer.from_file(data["file"])
            self.bos_token, self.eos_token = "", ""
            self.eos_ids: set[int] = set()
        else:
            self.tokenizer = _from_gguf(data, files.source)
            tokens: list[str] = data["tokens"]
            eos = int(data.get("eos_token_id", 2))
            self.eos_ids = {eos} | {i for i in (data.get("eot_token_id"), data.get("eom_token_id")) if i is not None}
            self.bos_token = tokens[int(data["bos_token_id"])] if "bos_token_id" in data else ""
            self.eos_token = tokens[eos]
            # transformers and llama.cpp start a SentencePiece vocabulary's text with BOS unless the file says not
            if self.bos_token and data.get("add_bos_token", data.get("model") == "llama"):
                self.prompt_bos = int(data["bos_token_id"])
        self.eos_ids |= {i for t in _END_OF_TURN if (i := self.tokenizer.token_to_id(t)) is not None}
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise
        template = files.chat_template or (_GEMMA_TURNS if self.tokenizer.token_to_id("<start_of_turn>") is not None
                                           else _CHATML)
        try:
            self.template = environment.from_string(template)
        except jinja2.TemplateError as exc:
            raise WeightsError(f"{files.source}: its chat template does not parse: {exc}") from exc

    @property
    def vocab(self) -> list[str]:
        """Every token's string as the vocabulary spells it (byte-level or SentencePiece form), by id."""
        by_id = self.tokenizer.get_vocab(with_added_tokens=True)
        tokens = [""] * (max(by_id.values()) + 1)
        for token, index in by_id.items():
            tokens[index] = token
        return tokens

    @property
    def byte_fallback(self) -> bool:
        """Whether the vocabulary is SentencePiece's (characters it lacks become <0xNN> byte tokens) rather than
        byte-level."""
        return bool(getattr(self.tokenizer.model, "byte_fallback", False))

    def encode(self, text: str, *, bos: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in it (<|im_start|>) become their ids. `bos`: a raw prompt,
        which starts with BOS where the model's tokenizer adds one (once: not before a BOS the text has already);
        a rendered chat template has its own."""
        ids = list(self.tokenizer.encode(text, add_special_tokens=False).ids)
        if bos and self.prompt_bos is not None and not text.startswith(self.bos_token):
            ids.insert(0, self.prompt_bos)
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of token ids, special tokens included as written."""
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt for chat `messages`, ending where the assistant's answer begins."""
        return str(self.template.render(messages=messages, tools=tools, add_generation_prompt=True,
                                        bos_token=self.bos_token, eos_token=self.eos_token))


class TextStream:
    """The text of a growing list of tokens, decoded a few tokens at a time: O(1) per token, not O(length).

    A token may end inside a multi-byte character, and some decoders change a token's text by what precedes
    it, so each step decodes a window from the last settled point and holds text back until it is whole
    (the method of Hugging Face's text-generation-inference).

    >>> stream = TextStream(tok.decode)  # doctest: +SKIP
    >>> stream.push(tok.encode("Hi")[0])  # doctest: +SKIP
    'Hi'
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self.settled = 0  # ids before this are text already returned
        self.window = 0  # where the decoded window starts (a few ids before `settled`, for context)

    def push(self, token: int) -> str:
        """Add a token; return the text it completes ("" while a character is still partial)."""
        self.ids.append(token)
        before = self.decode(self.ids[self.window:self.settled])
        after = self.decode(self.ids[self.window:])
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self.window, self.settled = self.settled, len(self.ids)
        return after[len(before):]


def _from_gguf(data: dict[str, Any], source: str) -> Tokenizer:
    kind = data.get("model")
    if kind == "gpt2":
        tokenizer, byte_level = _byte_level(data, source), True
    elif kind in ("llama", "gemma4"):
        tokenizer, byte_level = _sentencepiece(data), False
    else:
        raise WeightsError(f"{source}: tokenizer.ggml.model {kind!r} is not supported (supported: 'gpt2' byte-level "
                           f"BPE, 'llama' and 'gemma4' SentencePiece BPE); use a Hugging Face directory with "
                           f"tokenizer.json")
    _add_special(tokenizer, data, byte_level)
    return tokenizer


def _byte_level(data: dict[str, Any], source: str) -> Tokenizer:
    tokens: list[str] = data["tokens"]
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in data["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab, merges, ignore_merges=False))
    pre = str(data.get("pre", "default"))
    if pre not in _PRE_SPLITS:
        raise WeightsError(f"{source}: pre-tokenizer {pre!r} is not known (known: {sorted(_PRE_SPLITS)}); "
                           f"use a Hugging Face directory with tokenizer.json")
    splits = _PRE_SPLITS[pre]
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in splits]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece(data: dict[str, Any]) -> Tokenizer:
    """SentencePiece BPE (Llama 2, Mistral, Gemma) as transformers converts it: "▁" for spaces, merges from the file
    or implied by the vocabulary, unknown characters as <0xNN> byte tokens."""
    tokens: list[str] = data["tokens"]
    arch = data.get("architecture", "")
    if arch in _GEMMA:
        # Gemma stores its runs of spaces as spaces, and its merge order is the vocabulary's, not its scores'
        tokens = [_SPACE * len(t) if " " in t and not t.strip() else t for t in tokens]
        ranks: dict[str, float] = {token: -i for i, token in enumerate(tokens)}
    else:
        ranks = dict(zip(tokens, data["scores"], strict=True))
    vocab = {token: i for i, token in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in data["merges"]] if "merges" in data else _implied_merges(vocab, ranks)
    unknown = tokens[data["unknown_token_id"]] if arch in _GEMMA and "unknown_token_id" in data else None
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token=unknown, fuse_unk=True, byte_fallback=True))
    steps = [decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if arch in _GEMMA or data.get("model") == "gemma4":  # Gemma adds no leading space
        tokenizer.normalizer = normalizers.Replace(" ", _SPACE)
    elif arch == "phi3":  # Phi-3 prefixes every piece between special tokens, not only the text's start
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend(_SPACE), normalizers.Replace(" ", _SPACE)])
        steps.append(decoders.Strip(" ", 1, 0))
    else:
        # the file's flag, as llama.cpp reads it (transformers always prefixes): a leading space on the text's start
        prefix = bool(data.get("add_space_prefix", True))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(_SPACE, "first" if prefix else "never", split=False)
        steps += [decoders.Strip(" ", 1, 0)] if prefix else []
    tokenizer.decoder = decoders.Sequence(steps)
    return tokenizer


def _implied_merges(vocab: dict[str, int], ranks: dict[str, float]) -> list[tuple[str, str]]:
    """The merges a vocabulary without any implies (transformers' `generate_merges`): every split of a token into
    two tokens, best rank first, then longer left and right parts first."""
    found = []
    for token, rank in ranks.items():
        pairs = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in vocab and token[i:] in vocab]
        pairs.sort(key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
        found += [(rank, left, right) for left, right in pairs]
    found.sort(key=lambda merge: (merge[0], len(merge[1]), len(merge[2])), reverse=True)
    return [(left, right) for _, left, right in found]


def _add_special(tokenizer: Tokenizer, data: dict[str, Any], byte_level: bool) -> None:
    """Control tokens (<|im_start|>, <bos>) and the file's BOS, EOS, unknown and padding tokens become special
    tokens, user-defined ones (<think>) added tokens, so all are matched whole in text. A byte-level vocabulary's
    control token outside the byte alphabet is a llama.cpp mislabel, not a token the model knows: skipped, as
    transformers does."""
    tokens: list[str] = data["tokens"]
    types: list[int] = data.get("token_type", [])
    named = {tokens[int(data[key])] for key in _NAMED_TOKENS if key in data}
    vocab = tokenizer.get_vocab()
    control, user = [], []
    for token, kind in zip(tokens, types, strict=False):
        if (kind == _CONTROL or token in named) and not (byte_level and set(token) - _BYTE_ALPHABET):
            control.append(AddedToken(token, normalized=False, special=True))
        elif kind == _USER_DEFINED and token in vocab:
            user.append(AddedToken(token, normalized=False, special=False))
    tokenizer.add_special_tokens(control)
    tokenizer.add_tokens(user)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)
