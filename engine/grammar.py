"""Constrained decoding with xgrammar: JSON that follows a schema, and tool calls as schema-checked JSON.

Each sequence gets a matcher; before sampling, tokens that would break the grammar are masked out, so
even a 135M model can only produce valid output. A schema's strings, arrays and numbers get default bounds
where it sets none (`bounded`), so the grammar always lets the output end within a known length.
"""

import json
from typing import TYPE_CHECKING, Any

from torch import Tensor

from baobab.engine.drafters import Draft
from baobab.engine.types import Request, ToolSpec

if TYPE_CHECKING:  # imported where a grammar is first made: xgrammar brings transformers, 0.9 s of every start
    import xgrammar as xgr


class JsonConstraint:
    """One sequence's grammar state (implements the scheduler's Constraint)."""

    def __init__(self, compiled: "xgr.CompiledGrammar", vocab_size: int) -> None:
        import xgrammar as xgr

        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self.apply_bitmask = xgr.apply_token_bitmask_inplace

    def mask(self, logits: Tensor) -> Tensor:
        """Logits with every token the grammar forbids next set to -inf."""
        self.matcher.fill_next_token_bitmask(self.bitmask)
        logits = logits.float().clone()[None]
        self.apply_bitmask(logits, self.bitmask.to(logits.device))
        return logits[0]

    def accept(self, token: int) -> None:
        """Advance the grammar past `token`."""
        if not self.matcher.accept_token(token):
            raise RuntimeError(f"token {token} was sampled against the grammar")

    def done(self) -> bool:
        """Whether the grammar has ended (its stop token was accepted)."""
        return bool(self.matcher.is_terminated())

    def restrict(self, draft: Draft, budget: int) -> Draft:
        """`draft` without the nodes the grammar forbids (nor their subtrees), with the tokens it forces next
        drafted first: a verify then spends no rows on impossible tokens, and a schema's fixed keys and
        punctuation cost a fraction of a step each. At most `budget` nodes."""
        children: list[list[int]] = [[] for _ in range(len(draft) + 1)]  # by parent + 1
        for node, parent in enumerate(draft.parents):
            children[parent + 1].append(node)
        kept: list[int] = []
        stack = [(node, False) for node in reversed(children[0])]
        while stack:  # depth first, the matcher following the path: accept on the way down, roll back on the way up
            node, leaving = stack.pop()
            if leaving:
                self.matcher.rollback(1)
            elif self.matcher.accept_token(draft.tokens[node]):
                kept.append(node)
                stack.append((node, True))
                if not self.matcher.is_terminated():
                    stack.extend((child, False) for child in reversed(children[node + 1]))
        forced = self.matcher.find_jump_forward_tokens()[:budget]
        return draft.keep(sorted(kept)).with_forced(forced).best(budget)


CACHE_BYTES = 128 * 2**20  # compiled grammars kept, least recently used first out: hundreds of typical schemas
# (0.1-1 MB each for a 49k vocabulary), where one enum of 20,000 strings takes 69 MB


class Grammars:
    """Compiles grammars for one tokenizer; xgrammar keeps them by schema, at most `cache_bytes` of them (least
    recently used first out). Safe to call from several threads.

    >>> grammars = Grammars(tokenizer.vocab, {2})  # doctest: +SKIP
    >>> # a SentencePiece vocabulary: Grammars(vocab, {1}, byte_fallback=True)
    >>> grammars.for_request(Request(prompt="x", response_format={"type": "json_object"}))  # doctest: +SKIP
    """

    def __init__(self, vocab: list[str], stop_ids: set[int], cache_bytes: int = CACHE_BYTES, *,
                 byte_fallback: bool = False) -> None:
        import xgrammar as xgr

        self.vocab_size = len(vocab)
        # how a token's string becomes bytes: byte-level (GPT-2's alphabet) or SentencePiece's "▁" and <0xNN>
        kind = xgr.VocabType.BYTE_FALLBACK if byte_fallback else xgr.VocabType.BYTE_LEVEL
        info = xgr.TokenizerInfo(vocab, kind, vocab_size=len(vocab), stop_token_ids=sorted(stop_ids))
        self.compiler = xgr.GrammarCompiler(info, cache_enabled=True, cache_limit_bytes=cache_bytes)

    def for_request(self, request: Request) -> JsonConstraint | None:
        """The constraint a request's response_format or tools ask for, or None for free text."""
        wanted = wanted_json(request)
        if wanted is False:
            return None
        if wanted is True:
            compiled = self.compiler.compile_builtin_json_grammar()
        else:
            compiled = self.compiler.compile_json_schema(json.dumps(bounded(wanted)), any_whitespace=False)
        return JsonConstraint(compiled, self.vocab_size)


def wanted_json(request: Request) -> dict[str, Any] | bool:
    """The schema a request's output must follow, True for any JSON (response_format json_object), or False for
    free text.

    >>> wanted_json(Request(prompt="x"))
    False
    """
    schema = request_schema(request)
    if schema is not None:
        return schema
    response_format = request.response_format or {}
    return response_format.get("type") == "json_object"


MAX_STRING = 2000  # characters of a string without maxLength: a long paragraph, not a ramble to max_tokens
MAX_ITEMS = 64  # items of an array without maxItems: a model repeating an item stops within a known length
MAX_DIGITS = 15  # digits of a number without minimum/maximum: a digit-after-digit loop ends; still exact in a double
_LARGEST = 10**MAX_DIGITS - 1
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")  # name -> subschema
_SUBSCHEMAS = ("items", "prefixItems", "additionalProperties", "contains", "not", "anyOf", "oneOf", "allOf",
               "if", "then", "else")  # a subschema or a list of them


def bounded(schema: Any) -> Any:
    """A copy of `schema` whose strings, arrays, integers and numbers, in every subschema, get `MAX_STRING`,
    `MAX_ITEMS` and `MAX_DIGITS` where they set no bound of their own: a small model writing digits or items
    without end would otherwise run to max_tokens and leave JSON that never closes (`schema` is not changed)."""
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema  # true/false, or a keyword's value
    out = {key: _bounded_keyword(key, value) for key, value in schema.items()}
    types = out["type"] if isinstance(out.get("type"), list) else [out.get("type")]
    kinds = {kind for kind in types if isinstance(kind, str)}  # anything else is for the compiler to refuse
    free = not {"enum", "const"} & out.keys()  # a fixed set of values is bounded already
    if "string" in kinds and free and not {"pattern", "format"} & out.keys():
        out.setdefault("maxLength", max(MAX_STRING, _number(out, "minLength") or 0))
    if "array" in kinds:
        out.setdefault("maxItems", max(MAX_ITEMS, _number(out, "minItems") or 0))
    if {"integer", "number"} & kinds and free:
        low = _number(out, "minimum") if "minimum" in out else _number(out, "exclusiveMinimum")
        high = _number(out, "maximum") if "maximum" in out else _number(out, "exclusiveMaximum")
        if low is None and (high is None or high > -_LARGEST):
            out["minimum"] = -_LARGEST
        if high is None and (low is None or low < _LARGEST):
            out["maximum"] = _LARGEST
    return out


def _number(schema: dict[str, Any], key: str) -> float | None:
    """A bound keyword's number, None where the schema has none; ValueError if it is not a number.

    >>> _number({"minLength": "3"}, "minLength")
    Traceback (most recent call last):
    ValueError: minLength must be a number, not '3'
    """
    value = schema.get(key)
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{key} must be a number, not {value!r}")


def _bounded_keyword(key: str, value: Any) -> Any:
    """A schema keyword's value with the subschemas in it bounded."""
    if key in _SCHEMA_MAPS and isinstance(value, dict):
        return {name: bounded(s) for name, s in value.items()}
    return bounded(value) if key in _SUBSCHEMAS else value


ANSWER = {"type": "object", "additionalProperties": False, "required": ["content"],
          "properties": {"content": {"type": "string"}}}
"""How a local model writes a plain answer in a conversation with tools: in the JSON shape of its calls."""


def request_schema(request: Request) -> dict[str, Any] | None:
    """The JSON schema the output must follow: the response_format's, or one of the tool calls."""
    tools = callable_tools(request)
    if tools:
        options: list[dict[str, Any]] = [{
            "type": "object", "additionalProperties": False, "required": ["name", "arguments"],
            "properties": {"name": {"const": tool.name}, "arguments": tool.parameters}} for tool in tools]
        if request.tool_choice == "auto":
            options.append(ANSWER)
        return options[0] if len(options) == 1 else {"anyOf": options}
    if answers_as_json(request):
        return ANSWER
    return request.json_schema


def answers_as_json(request: Request) -> bool:
    """Whether a plain answer is written as {"content": ...}: tools are offered (auto), or were and may not be
    called now (none) and no other schema applies, so the answer keeps the shape of the conversation's turns (a
    small model shown only JSON turns writes a call as its answer otherwise)."""
    if not request.tools:
        return False
    return request.tool_choice == "auto" or (request.tool_choice == "none" and request.json_schema is None)


def callable_tools(request: Request) -> list[ToolSpec]:
    """The tools the model may call under the request's tool_choice."""
    if not request.tools or request.tool_choice == "none":
        return []
    if request.tool_choice in ("auto", "required"):
        return request.tools
    chosen = [t for t in request.tools if t.name == request.tool_choice]
    if not chosen:
        raise ValueError(f"tool_choice {request.tool_choice!r} names no tool in tools")
    return chosen


def tools_prompt(tools: list[ToolSpec], required: bool) -> str:
    """The system text that tells the model which tools exist and how to call one."""
    lines = ["You can call these tools:"]
    lines += [f"- {t.name}: {t.description} Arguments (JSON schema): {json.dumps(t.parameters)}" for t in tools]
    lines.append('To call a tool, reply with JSON {"name": TOOL, "arguments": {...}}.')
    if not required:
        lines.append(ANSWER_PROMPT)
    return "\n".join(lines)


ANSWER_PROMPT = 'To answer directly, reply with JSON {"content": "your answer"}.'
"""The system text for answers as JSON (with tools, or after them: see `answers_as_json`)."""

