"""Text to tokens and back (the `tokenizers` library), and chat messages to a prompt (the model's template).

A GGUF file carries its BPE vocabulary, merges and pre-tokenizer name; they are rebuilt into a
`tokenizers.Tokenizer` with llama.cpp's splitting rules. A Hugging Face directory has tokenizer.json.
"""

from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

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
_FALLBACK_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class ChatTokenizer:
    """Encode, decode, and render chat messages with the model's template.

    >>> tok = ChatTokenizer(weights.load(path))  # doctest: +SKIP
    >>> tok.decode(tok.encode("Hello world"))  # doctest: +SKIP
    'Hello world'
    """

    def __init__(self, files: WeightFiles) -> None:
        data = files.tokenizer
        if "file" in data:
            self.tokenizer = Tokenizer.from_file(data["file"])
            self.eos_ids = {i for t in ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>")
                            if (i := self.tokenizer.token_to_id(t)) is not None}
            self.bos_token, self.eos_token = "", ""
        else:
            self.tokenizer = _from_gguf(data, files.source)
            tokens: list[str] = data["tokens"]
            eos = int(data.get("eos_token_id", 2))
            self.eos_ids = {eos} | {i for i in (data.get("eot_token_id"), data.get("eom_token_id")) if i is not None}
            self.bos_token = tokens[int(data["bos_token_id"])] if "bos_token_id" in data else ""
            self.eos_token = tokens[eos]
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise
        try:
            self.template = environment.from_string(files.chat_template or _FALLBACK_TEMPLATE)
        except jinja2.TemplateError as exc:
            raise WeightsError(f"{files.source}: its chat template does not parse: {exc}") from exc

    @property
    def vocab(self) -> list[str]:
        """Every token's string (byte-level form), by id."""
        by_id = self.tokenizer.get_vocab(with_added_tokens=True)
        tokens = [""] * (max(by_id.values()) + 1)
        for token, index in by_id.items():
            tokens[index] = token
        return tokens

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in it (<|im_start|>) become their ids."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

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
    if kind != "gpt2":
        raise WeightsError(f"{source}: tokenizer model {kind!r} is not supported yet (byte-level BPE 'gpt2' is); "
                           f"use a Hugging Face directory with tokenizer.json")
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
    types: list[int] = data.get("token_type", [])
    special = [tokens[i] for i, t in enumerate(types) if t in (3, 4)]  # control and user-defined tokens
    tokenizer.add_special_tokens(special)
    return tokenizer


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)
