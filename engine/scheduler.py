"""The engine loop: one thread owns the model; concurrent requests are prefilled into free KV slots and then
decoded together, one forward for every active sequence per step.

With a drafter, each step verifies a drafted chain of tokens per sequence (the best path of the drafter's
tree) in that same forward and commits the longest prefix the model itself would have produced (speculative
decoding, lossless: every committed token is the argmax, or a sample from the model's own distribution, at its
position, and the model's logits do not depend on what else a forward holds). How many nodes to verify is
chosen per step from the drafter's scores and the cost of a forward of k tokens, measured at start-up.

Requests talk to it through `submit` (from any thread) and a callback per sequence; a sequence can be
cancelled at any time and its slot is freed at the next step.
"""

import atexit
import ctypes
import ctypes.util
import itertools
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor

from baobab.engine import disk_cache
from baobab.engine.drafters import Draft, Drafter
from baobab.engine.fixed_forward import FixedForward
from baobab.engine.model import Llama, Row
from baobab.engine.prefix_cache import PrefixCache
from baobab.engine.sampling import SamplingParams, sample
from baobab.engine.tokenizer import TextStream
from baobab.errors import BaobabError

T = TypeVar("T")
log = logging.getLogger(__name__)
LONGEST_STEP = 32  # tokens per row of the longest verify step, the last one the start-up measurements time
# what forwards of k new tokens cost relative to one, typical of a 2-core CPU with bfloat16 weights: drafts are
# sized with these until this machine's costs are measured
PRIOR_VERIFY_MS = {1: 1.0, 2: 1.05, 4: 1.15, 8: 1.4, 16: 2.0, 32: 3.2}
_running: "weakref.WeakSet[Scheduler]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Stop engine threads before the interpreter finalizes: a thread still in torch then aborts the process."""
    for scheduler in list(_running):
        scheduler.close()


class LoadCancelled(BaobabError):
    """The model stopped loading because the caller was interrupted."""


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

    def restrict(self, draft: Draft, budget: int) -> Draft:
        """`draft` without what the grammar forbids, with what it forces next first; at most `budget` nodes."""
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
    group: int = 0  # samples of one prompt share it (their drafter source "siblings")
    drafted: int = 0
    accepted: int = 0
    steps: int = 0  # forwards that produced this sequence's tokens


class Scheduler:
    """Owns the model and its KV slots; runs on its own thread so the event loop never waits on torch."""

    def __init__(self, load: Callable[[Callable[[str], None]], tuple[Llama, PrefixCache | None]],
                 decode: Callable[[list[int]], str], drafter: Drafter | None = None, *,
                 costs_key: dict[str, Any] | None = None, progress: Callable[[str], None] | None = None) -> None:
        """Start the engine thread and build the model there with `load(step)`; return once it is ready.

        Every torch operation runs on that one thread: when a second thread also drives OpenMP, libgomp
        stops its workers spinning and small matrix products run up to 2x slower.
        `load` calls `step(what)` before each of its steps: `progress(what)` is told, and an interrupted
        constructor (Ctrl-C) stops the loading there. The measured forward costs are kept in the disk cache under
        `costs_key` (what they depend on that the scheduler cannot see: the model, its types, the machine). With
        no such entry (or None) they are measured while the engine is idle, one forward at a time (a request waits
        for one forward at most), and typical costs (`PRIOR_VERIFY_MS`) serve until then; `costs_measured` is
        set once they are in.
        """
        self._progress, self._stage = progress, ""
        self.decode, self.drafter = decode, drafter
        self.verify_ms: dict[int, float] = {}  # forward time by number of new tokens in one row, measured at start,
        # what each cached token adds to a row of that many new tokens (one new token takes a faster attention path),
        self.context_ms: dict[int, float] = {}
        # and what each further row adds beyond its tokens (its own attention calls; (one token, several))
        self.row_ms: tuple[float, float] = (0.0, 0.0)
        # or, where steps replay CUDA graphs, the time of each padded shape (rows, tokens, window), measured
        self.fixed_ms: dict[tuple[int, int, int], float] = {}
        self.costs_measured = threading.Event()
        self._measuring: Iterator[None] | None = None  # the idle-time measurement under way, one forward a step
        self._costs_file: Path | None = None
        self._groups = itertools.count(1)
        self._calls: deque[tuple[Callable[[], Any], threading.Event, dict[str, Any]]] = deque()
        self._waiting: deque[list[Sequence]] = deque()
        self._active: list[Sequence] = []
        self._wake = threading.Condition()
        self._closed = False
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, args=(load, costs_key), name="baobab-engine",
                                        daemon=True)
        self._thread.start()
        _running.add(self)
        try:
            self._ready.wait()
        except BaseException:  # Ctrl-C: a thread left inside torch at exit would abort the process
            self.close()
            raise
        if self._load_error is not None:
            raise self._load_error

    def _step(self, what: str) -> None:
        """Report a loading step (once), or end the loading if the constructor was interrupted."""
        if self._closed:
            raise LoadCancelled(what)
        if self._progress is not None and what != self._stage:
            self._progress(what)
        self._stage = what

    def _start(self, load: Callable[[Callable[[str], None]], tuple[Llama, PrefixCache | None]],
               costs_key: dict[str, Any] | None) -> None:
        try:
            self.model, self.prefix_cache = load(self._step)
            return_freed_memory()
            self.kv = self.model.cache
            self.slots, self.max_len = self.kv.slots, self.kv.max_len
            self._free = list(range(self.slots))
            if self.drafter is not None:
                self.drafter.prepare()
            # a cache with a spare slot asks for fixed-shape steps: CUDA graphs on a GPU, eager elsewhere
            self._fixed = (FixedForward(self.model, graphs=self.kv.k.is_cuda)
                           if self.kv.k.shape[1] > self.slots else None)
            if self._fixed is not None and self._fixed.graphs:  # captures every graph now, not mid-request
                self.fixed_ms = self._measure_fixed_costs(LONGEST_STEP if self.drafter is not None else 1)
            elif self.drafter is not None:
                self._verify_costs(costs_key)
            if self._measuring is None:
                self.costs_measured.set()
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
        group_id = next(self._groups)
        for seq in group:
            seq.group = group_id
        with self._wake:
            self._waiting.append(group)
            self._wake.notify()

    def run_on_engine(self, work: Callable[[], T]) -> T:
        """Run `work` on the engine thread between steps (all torch work stays on one thread); return its result.

        >>> logits = llm.scheduler.run_on_engine(lambda: llm.model(ids, [Row(0, 0)]))  # doctest: +SKIP
        """
        done, box = threading.Event(), dict[str, Any]()
        with self._wake:
            self._calls.append((work, done, box))
            self._wake.notify()
        done.wait()
        if "error" in box:
            raise box["error"]
        result: T = box["value"]
        return result

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

    def fix_costs(self, verify_ms: dict[int, float], context_ms: dict[int, float],
                  row_ms: tuple[float, float]) -> None:
        """Price forwards with these costs from now on (a measurement under way is dropped).

        >>> llm.scheduler.fix_costs({1: 1.0, 32: 1.0}, {}, (0.0, 0.0))  # k tokens cost one: draft all  # doctest: +SKIP
        """
        def fix() -> None:
            self._measuring = None
            self.verify_ms, self.context_ms, self.row_ms = verify_ms, context_ms, row_ms
            self.costs_measured.set()

        self.run_on_engine(fix)

    def _run(self) -> None:
        while True:
            with self._wake:
                while (not self._closed and not self._waiting and not self._active and not self._calls
                       and self._measuring is None):
                    self._wake.wait()
                if self._closed:
                    return
                idle = not self._waiting and not self._active and not self._calls
            if idle:  # nothing to serve: one forward of the measurement, then look again
                self._measure_step()
                continue
            with self._wake:
                calls, self._calls = list(self._calls), deque()
                admitted = []
                while self._waiting and len(self._waiting[0]) <= len(self._free):
                    group = self._waiting.popleft()
                    for seq in group:
                        seq.slot = self._free.pop(0)
                    admitted.append(group)
                    self._active.extend(group)
            for work, done, box in calls:
                try:
                    box["value"] = work()
                except BaseException as exc:  # raised again in the caller's thread
                    box["error"] = exc
                done.set()
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
        new = first.prompt[cached:]
        graphs = self._fixed if self.fixed_ms else None  # a prefix hit's short rest replays a captured graph
        if graphs is not None and graphs.shape(1, len(new), len(first.prompt)) in self.fixed_ms:
            logits = self._forward([new], [Row(first.slot, cached)])[0, -1]
        else:
            logits = self.model(torch.tensor([new], device=self.kv.k.device), [Row(first.slot, cached)])[0]
        if self.prefix_cache is not None:
            self.prefix_cache.insert(first.prompt, self.kv, first.slot)
        for seq in group:
            seq.cached = cached
            if seq is not first:
                self.model.copy_slot(first.slot, seq.slot, len(first.prompt))
            if self.drafter is not None:
                self.drafter.begin(id(seq), seq.group, seq.prompt, sampled=not seq.params.greedy)
            self._commit(seq, self._advance(seq, logits))

    def _decode_step(self) -> None:
        running = [s for s in self._active if s.tokens and s.finish_reason is None and not s.cancelled]
        if not running:
            return
        starts = [len(s.prompt) + len(s.tokens) - 1 for s in running]
        room = self.max_len - max(starts) - 1  # every row is padded to the longest draft
        drafts = self._drafts(running, room)
        length = 1 + max(len(d) for d in drafts)
        tokens, rows = [], []
        for seq, start, draft in zip(running, starts, drafts, strict=True):
            pad = length - 1 - len(draft)  # padding tokens follow the draft: nothing before them sees them
            tokens.append([seq.tokens[-1], *draft.tokens, *[seq.tokens[-1]] * pad])
            rows.append(Row(seq.slot, start))
        logits = self._forward(tokens, rows)
        for seq, draft, out in zip(running, drafts, logits, strict=True):
            seq.steps += 1
            if length == 1:
                self._commit(seq, self._advance(seq, out[0]))
            else:
                self._verify(seq, draft, out)

    def _forward(self, tokens: list[list[int]], rows: list[Row]) -> Tensor:
        """Logits (rows x tokens x vocab) of a decode or verify step: every row has as many tokens."""
        if self._fixed is not None:
            return self._fixed(tokens, rows)
        logits: Tensor = self.model(torch.tensor(tokens, device=self.kv.k.device), rows, all_logits=True)
        return logits

    def _drafts(self, running: list[Sequence], room: int) -> list[Draft]:
        """Each sequence's drafted tree, all cut to the size that maximises the step's expected tokens per ms:
        every row is padded to the longest draft, so a batch of sampled rows drafts less than one row would."""
        if self.drafter is None:
            return [Draft() for _ in running]
        drafter = self.drafter
        budgets = [min(room, s.max_tokens - len(s.tokens) - 1) for s in running]
        full = [(drafter.draft(id(s), budget) if s.constraint is None else
                 s.constraint.restrict(drafter.draft(id(s), budget), budget)).chain()
                for s, budget in zip(running, budgets, strict=True)]
        ranked = [sorted(draft.scores, reverse=True) for draft in full]
        contexts = [len(s.prompt) + len(s.tokens) for s in running]
        best, gain = 0, float(len(running))
        best_rate = gain / self._cost(1, contexts)
        for k in range(1, min(max(map(len, full)), LONGEST_STEP - 1) + 1):  # k drafted tokens per row
            gain += sum(scores[k - 1] for scores in ranked if len(scores) >= k)
            rate = gain / self._cost(k + 1, contexts)
            if rate > best_rate:
                best, best_rate = k, rate
        return [draft.best(best) for draft in full]

    def _verify(self, seq: Sequence, draft: Draft, logits: Tensor) -> None:
        """Commit the model's own choice after the last token and after each drafted token while the choice is
        the drafted one (the keys and values of the accepted tokens are already in place)."""
        accepted = tries = 0
        while True:
            chosen = self._advance(seq, logits[accepted])
            self._commit(seq, chosen)
            if chosen is None or accepted == len(draft):
                break
            tries += accepted >= draft.forced  # forced tokens teach nothing on retrieval
            if chosen != draft.tokens[accepted]:
                break
            accepted += 1
        seq.drafted, seq.accepted = seq.drafted + len(draft), seq.accepted + accepted
        if self.drafter is not None:
            self.drafter.observe(id(seq), draft, tries, max(0, accepted - draft.forced))

    def _commit(self, seq: Sequence, token: int | None) -> None:
        if token is not None and self.drafter is not None:
            self.drafter.extend(id(seq), [token])

    def _cost(self, tokens: int, contexts: list[int]) -> float:
        """Milliseconds of a forward of `tokens` new tokens in each of rows with these cached lengths, from the
        start-up measurements (attention over a long context makes big trees dear: 3.7x one token at 1,500 on a
        CPU; rows share the projections, so 4 rows of 8 tokens cost about what one row of 32 does)."""
        if self.fixed_ms:
            assert self._fixed is not None
            return self.fixed_ms[self._fixed.shape(len(contexts), tokens, max(contexts) + tokens - 1)]
        if not self.verify_ms:
            return 1.0
        cost = sum(contexts) * _interpolated(self.context_ms, tokens) if self.context_ms else 0.0
        cost += (len(contexts) - 1) * self.row_ms[tokens > 1]
        return cost + _interpolated(self.verify_ms, tokens * len(contexts))

    def _verify_costs(self, key: dict[str, Any] | None) -> None:
        """Take the forward costs measured on this machine with this model and these settings within the last
        week from the disk cache, or start measuring them (timing them took 6 s of every start, 60 s on a busy
        machine)."""
        self.verify_ms, self.context_ms, self.row_ms = dict(PRIOR_VERIFY_MS), {}, (0.0, 0.0)
        file = None if key is None else disk_cache.entry(
            "costs", "json", **key, threads=torch.get_num_threads(), slots=self.slots, max_len=self.max_len,
            fixed=self._fixed is not None, **disk_cache.machine())
        cached = None if file is None else disk_cache.read_json(file, disk_cache.STALE_AFTER_S)
        if cached is not None:
            try:
                verify, context = ({int(n): float(ms) for n, ms in cached[name].items()}
                                   for name in ("verify_ms", "context_ms"))
                self.verify_ms, self.context_ms = verify, context
                self.row_ms = (float(cached["row_ms"][0]), float(cached["row_ms"][1]))
                log.info("forward costs from %s", file)
                return
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:  # written by other code
                log.warning("ignoring the unreadable cache file %s: %s", file, exc)
        self._costs_file, self._measuring = file, self._measure_verify_cost()

    def _measure_step(self) -> None:
        """One forward of the idle-time measurement; once it is done, use and cache what it found."""
        assert self._measuring is not None
        try:
            next(self._measuring)
        except StopIteration:
            self._measuring = None
            log.info("forward costs measured")
            if self._costs_file is not None:
                disk_cache.write_json(self._costs_file, {"verify_ms": self.verify_ms, "context_ms": self.context_ms,
                                                         "row_ms": self.row_ms})
            self.costs_measured.set()

    def _measure_verify_cost(self) -> Iterator[None]:
        """Time forwards of 1..32 tokens in one slot (best of five) on an empty and on a long context, and of
        two rows of one and of two tokens, in slots no sequence holds (the engine is idle), pausing after each
        forward; then price steps with them. (A line through one and 32 tokens priced 2-8 tokens at 500 cached
        ones 30-40% low on a CPU, and speculation then lost on hard prompts.) The empty and long forwards
        alternate: a cached token's cost is their small difference, and a slow spell of the machine over one of
        them alone tripled it (and 8 rows then never drafted)."""
        sizes = [1 << i for i in range(LONGEST_STEP.bit_length()) if 1 << i <= self.max_len]
        long = min(1024, self.max_len - 32)
        measured, far = dict.fromkeys(sizes, float("inf")), dict.fromkeys(sizes, float("inf"))
        for _ in range(5):
            for tokens in sizes:  # a forward's time does not depend on what the cache holds: no prefill
                measured[tokens] = min(measured[tokens], self._time_forward(tokens, 0, repeats=1))
                yield
                if long >= 256:  # too short a cache for context to matter otherwise
                    far[tokens] = min(far[tokens], self._time_forward(tokens, long, repeats=1))
                    yield
        row = (0.0, 0.0)
        if self.slots > 1 and 4 in measured:
            one = self._time_forward(1, 0, rows=2)
            yield
            row = (max(0.0, one - measured[2]), max(0.0, self._time_forward(2, 0, rows=2) - measured[4]))
        self.verify_ms, self.row_ms = measured, row
        self.context_ms = {n: max(0.0, far[n] - ms) / long for n, ms in measured.items()} if long >= 256 else {}

    def _measure_fixed_costs(self, longest: int) -> dict[tuple[int, int, int], float]:
        """Capture and time the graph of every shape a step of up to `longest` tokens per row can take (a
        capture costs tens of forwards: done mid-request it would make the first steps of each new shape slow)."""
        assert self._fixed is not None
        costs = {}
        for rows, length, window in self._fixed.shapes(longest):
            self._step("capturing CUDA graphs")  # an interrupted start stops between shapes
            costs[rows, length, window] = self._time_forward(length, window - length, rows)
        return costs

    def _time_forward(self, tokens: int, start: int, rows: int = 1, repeats: int = 3) -> float:
        """Best of `repeats` forwards of `tokens` new tokens in each of slots 0.. `rows` - 1 after `start` cached
        ones, in ms."""
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            self._forward([[0] * tokens] * rows, [Row(slot, start) for slot in range(rows)])
            if self.kv.k.is_cuda:
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - started)
        return best * 1e3

    def _advance(self, seq: Sequence, logits: Tensor) -> int | None:
        """Pick the sequence's next token, report new text, and finish it if a stop condition holds.
        Returns the token if the sequence goes on."""
        if seq.cancelled:
            self._finish(seq, "cancelled")
            return None
        if seq.constraint is not None:
            logits = seq.constraint.mask(logits)
        token = sample(logits, seq.params, seq.generator)
        if not seq.tokens:
            seq.first_token_at = time.perf_counter()
        if token in seq.stop_ids:  # under a grammar, only allowed once the output is complete
            self._finish(seq, "stop")
            return None
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
            return None
        return token

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
            if self.drafter is not None:
                for seq in done:
                    if id(seq) in self.drafter:
                        self.drafter.end(id(seq), seq.tokens)
            self._free.extend(s.slot for s in done)
            self._free.sort()


def return_freed_memory() -> None:
    """Hand the pages that glibc keeps after frees back to the OS: what loading freed (the GGUF's float32 copy of
    every weight: the first start held 1.1 GB resident where 0.78 GB is in use), or big requests' copies.

    >>> return_freed_memory()
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError) as exc:  # not glibc: its allocator returns memory its own way
        log.debug("malloc_trim unavailable: %s", exc)


def _interpolated(table: dict[int, float], size: int) -> float:
    """A table measured at a few sizes, at `size`: linear between them, proportional beyond the largest."""
    sizes = sorted(table)
    for low, high in itertools.pairwise(sizes):
        if size <= high:
            return table[low] + max(0.0, (size - low) / (high - low)) * (table[high] - table[low])
    return table[sizes[-1]] * size / sizes[-1]
