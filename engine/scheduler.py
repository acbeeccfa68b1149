"""The engine loop: one thread owns the model; concurrent requests are prefilled into free KV slots and then
decoded together, one forward for every active sequence per step.

Requests talk to it through `submit` (from any thread) and a callback per sequence; a sequence can be
cancelled at any time and its slot is freed at the next step.
"""

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from baobab.engine.model import Llama, Row
from baobab.engine.prefix_cache import PrefixCache
from baobab.engine.sampling import SamplingParams, sample
from baobab.engine.tokenizer import TextStream


class Constraint(Protocol):
    """A grammar that limits which tokens may come next (structured output)."""

    def mask(self, logits: Tensor) -> Tensor:
        """Logits with forbidden tokens set to -inf."""
        ...

    def accept(self, token: int) -> None:
        """Advance past a chosen token."""
        ...

    def done(self) -> bool:
        """Whether the grammar is complete and nothing more may follow."""
        ...


@dataclass
class Sequence:
    """One sample being generated; `on_token(seq, text_delta)` and `on_finish(seq)` run on the engine thread."""

    prompt: list[int]
    max_tokens: int
    params: SamplingParams
    stop_ids: set[int]
    stop_strings: list[str]
    on_token: Callable[["Sequence", str], None]
    on_finish: Callable[["Sequence"], None]
    generator: torch.Generator | None = None
    constraint: Constraint | None = None
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # characters of `text` reported through on_token
    stream: TextStream | None = None
    slot: int = -1
    cached: int = 0
    finish_reason: str | None = None
    cancelled: bool = False
    error: BaseException | None = None
    first_token_at: float = 0.0


class Scheduler:
    """Owns the model and its KV slots; runs on its own thread so the event loop never waits on torch."""

    def __init__(self, load: Callable[[], tuple[Llama, PrefixCache | None]],
                 decode: Callable[[list[int]], str]) -> None:
        """Start the engine thread and build the model there with `load`; return once it is ready.

        Every torch operation runs on that one thread: when a second thread also drives OpenMP, libgomp
        stops its workers spinning and small matrix products run up to 2x slower.
        """
        self.decode = decode
        self._waiting: deque[list[Sequence]] = deque()
        self._active: list[Sequence] = []
        self._wake = threading.Condition()
        self._closed = False
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, args=(load,), name="baobab-engine", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._load_error is not None:
            raise self._load_error

    def _start(self, load: Callable[[], tuple[Llama, PrefixCache | None]]) -> None:
        try:
            self.model, self.prefix_cache = load()
            assert self.model.cache is not None
            self.kv = self.model.cache
            self.slots, self.max_len = self.kv.k.shape[1], self.kv.max_len
            self._free = list(range(self.slots))
        except BaseException as exc:  # handed to the constructor, which raises it in the caller's thread
            self._load_error = exc
            return
        finally:
            self._ready.set()
        self._run()

    def submit(self, group: list[Sequence]) -> None:
        """Queue samples of one prompt; they share its prefill and are admitted together."""
        if len(group) > self.slots:
            raise ValueError(f"n={len(group)} samples need more than the engine's {self.slots} slots")
        if len(group[0].prompt) >= self.max_len:
            raise ValueError(f"prompt of {len(group[0].prompt)} tokens does not fit the context of {self.max_len}")
        with self._wake:
            self._waiting.append(group)
            self._wake.notify()

    def cancel(self, sequences: list[Sequence]) -> None:
        """Stop generating these sequences; their slots free at the next step."""
        with self._wake:
            for seq in sequences:
                seq.cancelled = True
            self._wake.notify()

    def close(self) -> None:
        """Stop the engine thread after the current step."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self._active:
                    self._wake.wait()
                if self._closed:
                    return
                admitted = []
                while self._waiting and len(self._waiting[0]) <= len(self._free):
                    group = self._waiting.popleft()
                    for seq in group:
                        seq.slot = self._free.pop(0)
                    admitted.append(group)
                    self._active.extend(group)
            try:
                for group in admitted:
                    self._prefill(group)
                self._decode_step()
            except BaseException as exc:  # a failed forward ends its requests with the error
                for seq in self._active:
                    if seq.finish_reason is None:
                        seq.error = exc
                        self._finish(seq, "error")
            self._release_finished()

    def _prefill(self, group: list[Sequence]) -> None:
        first = group[0]
        if all(seq.cancelled for seq in group):
            return  # released as cancelled
        cached = 0
        if self.prefix_cache is not None:  # the last prompt token is always computed: it gives the logits
            cached = self.prefix_cache.load(first.prompt[:-1], self.kv, first.slot)
        new_tokens = torch.tensor([first.prompt[cached:]], device=self.kv.k.device)
        logits = self.model(new_tokens, [Row(first.slot, cached)])[0]
        if self.prefix_cache is not None:
            self.prefix_cache.insert(first.prompt, self.kv, first.slot)
        for seq in group:
            seq.cached = cached
            if seq is not first:
                self.model.copy_slot(first.slot, seq.slot, len(first.prompt))
            self._advance(seq, logits)

    def _decode_step(self) -> None:
        running = [s for s in self._active if s.tokens and s.finish_reason is None and not s.cancelled]
        if not running:
            return
        tokens = torch.tensor([[s.tokens[-1]] for s in running], device=self.kv.k.device)
        rows = [Row(s.slot, len(s.prompt) + len(s.tokens) - 1) for s in running]
        logits = self.model(tokens, rows)
        for seq, row in zip(running, logits, strict=True):
            self._advance(seq, row)

    def _advance(self, seq: Sequence, logits: Tensor) -> None:
        """Pick the sequence's next token, report new text, and finish it if a stop condition holds."""
        if seq.cancelled:
            self._finish(seq, "cancelled")
            return
        if seq.constraint is not None:
            logits = seq.constraint.mask(logits)
        token = sample(logits, seq.params, seq.generator)
        if not seq.tokens:
            seq.first_token_at = time.perf_counter()
        if token in seq.stop_ids:  # under a grammar, only allowed once the output is complete
            self._finish(seq, "stop")
            return
        seq.tokens.append(token)
        if seq.constraint is not None:
            seq.constraint.accept(token)
        if seq.stream is None:
            seq.stream = TextStream(self.decode)
        seq.text += seq.stream.push(token)
        finish = None
        for stop in seq.stop_strings:  # text that could begin a stop string is held back, so it starts unsent
            at = seq.text.find(stop, seq.sent)
            if at != -1:
                seq.text, finish = seq.text[:at], "stop"
        if finish is None:
            self._send(seq, len(seq.text) - max((len(s) - 1 for s in seq.stop_strings), default=0))
        if finish is None and seq.constraint is not None and seq.constraint.done():
            finish = "stop"
        if finish is None and (len(seq.tokens) >= seq.max_tokens
                               or len(seq.prompt) + len(seq.tokens) >= self.max_len):
            finish = "length"
        if finish is not None:
            self._finish(seq, finish)

    def _send(self, seq: Sequence, end: int) -> None:
        """Report the text up to `end` that was not reported yet."""
        if end > seq.sent:
            delta, seq.sent = seq.text[seq.sent:end], end
            seq.on_token(seq, delta)

    def _finish(self, seq: Sequence, reason: str) -> None:
        if seq.finish_reason is None:
            self._send(seq, len(seq.text))
            seq.finish_reason = reason
            seq.on_finish(seq)

    def _release_finished(self) -> None:
        with self._wake:
            for seq in self._active:
                if seq.cancelled and seq.finish_reason is None:
                    self._finish(seq, "cancelled")
            done = [s for s in self._active if s.finish_reason is not None]
            self._active = [s for s in self._active if s.finish_reason is None]
            if self.prefix_cache is not None:  # the answer too: the next turn resends it as history
                for seq in done:
                    if seq.tokens and seq.error is None:
                        self.prefix_cache.insert(seq.prompt + seq.tokens[:-1], self.kv, seq.slot)
            self._free.extend(s.slot for s in done)
            self._free.sort()
