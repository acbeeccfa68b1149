"""What a strategy works with: the tree, and `expand`/`evaluate`/`reflect`/`ask`/`commit`, which keep to the budget.

A strategy only decides which nodes to expand and evaluate; the context runs a batch concurrently,
counts expansions exactly, stops at the budget (raising `SearchStopped` after keeping what finished)
and commits the changed nodes. Expanding an expanded node or evaluating a visited one costs nothing,
so a strategy that replays its decisions over a resumed tree redoes none of the work.
"""

import asyncio
import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from baobab.engine.budget import BudgetExceeded, Spend
from baobab.engine.types import Usage
from baobab.executors import Executor, LocalExecutor, Record, portable_url, task_key
from baobab.search.budget import SearchBudget, SearchStopped, limit_reached
from baobab.search.environment import Environment, Transition, resolve
from baobab.search.hooks import Evaluator, Proposer, Reflector
from baobab.search.persist import SearchRecorder
from baobab.search.tree import Node, Tree

T = TypeVar("T")
Proposal = tuple[int, list[tuple[Any, float, Transition]]]  # model calls, then (action, prior, transition)
_TREE: ContextVar[Tree | None] = ContextVar("baobab_search_tree", default=None)  # the tree of the hook's search
# the lessons in scope of the node being expanded or evaluated: what the agents of its samples read
_SCOPE: ContextVar[tuple[str, ...]] = ContextVar("baobab_search_scope", default=())
MAX_LESSONS, MAX_WORDS = 5, 200  # what a sample is shown: a few lessons, a paragraph of prompt at most


def lessons() -> list[str]:
    """The reflections written so far in the search whose hook is calling (oldest first); [] outside a search.

    How a proposer conditions later expansions on earlier failures (LATS, LEAFE) with its signature unchanged.

    >>> lessons()
    []
    """
    tree = _TREE.get()
    return tree.lessons() if tree is not None else []


def lessons_in_scope() -> list[str]:
    """The lessons bearing on the sample being run, newest first (see `lessons_for`); [] outside a search.

    Set by the search around each expansion and evaluation, and copied into the tasks and threads they
    start, so an agent inside a graph run's node reads it without knowing about search (`Agent` does).

    >>> lessons_in_scope()
    []
    """
    return list(_SCOPE.get())


def lessons_for(tree: Tree, node: Node, *, limit: int = MAX_LESSONS, words: int = MAX_WORDS) -> list[str]:
    """What the samples drawn from `node` are shown: the lessons of `tree.scope(node)` (failures of its
    siblings and ancestors, newest first), then those recalled from earlier episodes; repeats dropped, at most
    `limit` lessons and `words` words (the last one cut short).

    Failed branches condition later expansions (LATS, Zhou et al. 2024) through a bounded prompt section.

    >>> tree = Tree([]); a, b = (tree.add(tree.root, action=i, state=[i], done=True) for i in (0, 1))
    >>> tree.annotate(a, "0 failed"); tree.annotate(b, "1 failed too"); lessons_for(tree, tree.root, words=4)
    ['1 failed too', '0...']
    """
    chosen: list[str] = []
    seen: set[str] = set()
    left = words
    for text in [*(n.reflection for n in tree.scope(node)), *tree.recalled]:
        if len(chosen) == limit or left <= 0:
            break
        said = text.split()
        if not said or " ".join(said) in seen:
            continue
        seen.add(" ".join(said))
        chosen.append(" ".join(said[:left]) + ("..." if len(said) > left else ""))
        left -= len(said)
    return chosen


def lessons_section(notes: Sequence[str]) -> str:
    """The prompt section that shows `notes` to a model ("" without any).

    >>> lessons_section(["avoid the trap"])
    '\\n\\nLessons from earlier attempts:\\n- avoid the trap'
    """
    return "\n\nLessons from earlier attempts:\n" + "\n".join(f"- {n}" for n in notes) if notes else ""


class SearchContext:
    """The shared machinery of every strategy.

    >>> ctx = SearchContext(Tree([]), env, propose, evaluate, SearchBudget(max_expansions=9), Spend())  # doctest: +SKIP
    >>> await ctx.expand([ctx.tree.root]); await ctx.evaluate(ctx.tree.children(ctx.tree.root))  # doctest: +SKIP
    """

    def __init__(self, tree: Tree, env: Environment, proposer: Proposer, evaluator: Evaluator, budget: SearchBudget,
                 spend: Spend, *, k: int | None = None, max_depth: int | None = None, target: float | None = None,
                 recorder: SearchRecorder | None = None, seed: int = 0, executor: Executor | None = None) -> None:
        self.tree, self.env, self.proposer, self.evaluator = tree, env, proposer, evaluator
        self.budget, self.spend, self.recorder = budget, spend, recorder
        self.k, self.max_depth, self.target, self.seed = k, max_depth, target, seed
        self.executor = executor or LocalExecutor()
        # workers commit each expansion's and evaluation's result in the search's store, once (see baobab.executors)
        self.record_url = (portable_url(recorder.store.url) if recorder is not None and not self.executor.local
                           else None)

    @property
    def elapsed(self) -> float:
        """Seconds spent on this search, earlier runs of a resumed search included."""
        return time.monotonic() - self.spend.started

    async def expand(self, nodes: Sequence[Node]) -> None:
        """Propose and step the children of each unexpanded, unfinished node, concurrently, within the budget."""
        todo = list({n.id: n for n in nodes if not n.expanded and not n.done and not self.too_deep(n)}.values())
        if not todo:
            return
        self.check()
        room = self._room(len(todo))
        if self.budget.max_expansions is not None:
            room = min(room, self.budget.max_expansions - self.tree.expansions)
        batch = todo[:room]
        results, stop = await self._gather([self._propose(n) for n in batch])
        new: list[Node] = []
        for node, result in zip(batch, results, strict=True):
            if result is not None:
                calls, steps = result
                new += [self.tree.add(node, action=a, state=t.state, observation=t.observation, reward=t.reward,
                                      done=t.done, feedback=t.feedback, prior=p, cost=calls) for a, p, t in steps]
                self.tree.mark_expanded(node)
        if stop is not None:
            raise stop
        if self.target is not None and any(n.done and self.tree.returns(n) >= self.target for n in new):
            raise SearchStopped("target")
        if len(batch) < len(todo):  # a limit left no room for the rest: reached now, or room again
            await self.expand(todo[len(batch):])

    async def evaluate(self, nodes: Sequence[Node]) -> None:
        """Give each unvisited node its first return: its reward, plus the evaluator's estimate unless it ended."""
        todo = list({n.id: n for n in nodes if not n.visits}.values())
        for node in todo:
            if node.done:
                self.tree.record(node, node.reward)
        todo = [n for n in todo if not n.done]
        if not todo:
            return
        self.check()
        batch = todo[:self._room(len(todo))]
        results, stop = await self._gather([self._estimate(n) for n in batch])
        for node, result in zip(batch, results, strict=True):
            if result is not None:
                self.tree.record(node, node.reward + result[1], cost=result[0])
                node.critique = result[2]
        if stop is not None:
            raise stop
        if len(batch) < len(todo):
            await self.evaluate(todo[len(batch):])

    async def reflect(self, nodes: Sequence[Node], hook: Reflector) -> None:
        """Write `hook`'s lesson on each node that has none (failed leaves), concurrently, within the budget."""
        todo = list({n.id: n for n in nodes if not n.reflection}.values())
        if not todo:
            return
        self.check()
        batch = todo[:self._room(len(todo))]
        results, stop = await self._gather([self._call(hook, self.tree.path(n)) for n in batch])
        for node, result in zip(batch, results, strict=True):
            if result is not None:  # a Lesson may name the step where the failure began (LEAFE)
                self.tree.annotate(node, str(result[1]).strip() or "(no lesson)", cost=result[0],
                                   failed_at=_step(result[1]))  # marks it failed
        if stop is not None:
            raise stop
        if len(batch) < len(todo):
            await self.reflect(todo[len(batch):], hook)

    async def ask(self, hook: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One call of a model-calling hook (`hook(*args, spend)`) within the budget; SearchStopped at a limit."""
        self.check()
        results, stop = await self._gather([self._call(hook, *args)])
        if stop is not None:
            raise stop
        assert results[0] is not None  # no stop: it finished
        return results[0][1]

    async def _call(self, hook: Callable[..., Awaitable[T]], *args: Any) -> tuple[int, T]:
        """`hook(*args, spend)` with a spend of its own, so its model calls are known: (calls, result)."""
        spend = self.spend.child(None, "hook")
        _TREE.set(self.tree)
        result = await hook(*args, spend)
        return spend.calls, result

    def commit(self, status: str = "running", result: dict[str, Any] | None = None) -> None:
        """Persist the changed nodes and the spend in one transaction (a no-op without a store)."""
        if self.recorder is not None:
            spent = {"calls": self.spend.calls, "usage": self.spend.usage.model_dump(), "seconds": self.elapsed}
            self.recorder.commit(self.tree, spent, status, result)

    def check(self) -> None:
        """Raise SearchStopped if a limit is reached."""
        if self.budget.max_expansions is not None and self.tree.expansions >= self.budget.max_expansions:
            raise SearchStopped("max_expansions")
        if self.budget.max_seconds is not None and self.elapsed >= self.budget.max_seconds:
            raise SearchStopped("max_seconds")
        try:
            self.spend.check()
        except BudgetExceeded as exc:
            raise SearchStopped(limit_reached(self.spend), str(exc)) from None

    def _room(self, wanted: int) -> int:
        """How many of `wanted` hook calls may start: under a model-call limit each is presumed to make one."""
        if self.budget.max_model_calls is None:
            return wanted
        return min(wanted, self.budget.max_model_calls - self.spend.calls)

    def too_deep(self, node: Node) -> bool:
        """Whether `node` is at `max_depth`, where nothing is expanded."""
        return self.max_depth is not None and node.depth >= self.max_depth

    async def _propose(self, node: Node) -> Proposal:
        spend = self.spend.child(None, "expansion")  # its calls are the cost of the nodes it creates
        path = self.tree.path(node)
        scope = lessons_for(self.tree, node)
        if self.executor.local:
            _TREE.set(self.tree)  # run in a task of its own (see _gather): `lessons()` answers for this search only
            _SCOPE.set(tuple(scope))  # ... and `lessons_in_scope()` for this node only
            steps = await expansion(self.env, self.proposer, node.state, path, self.k, spend)
            return spend.calls, steps
        done = await self.executor.call(remote_expansion, self.env, self.proposer, node.state, path, self.k, spend,
                                        self.tree.lessons(), scope, record=self._record("expand", path))
        _charge(spend, done["usages"])
        return spend.calls, [(a, p, Transition(**t)) for a, p, t in done["steps"]]

    async def _estimate(self, node: Node) -> tuple[int, float, str]:
        spend = self.spend.child(None, "evaluation")
        path = self.tree.path(node)
        scope = lessons_for(self.tree, node)  # a rollout's agents learn like an expansion's
        if self.executor.local:
            _TREE.set(self.tree)
            _SCOPE.set(tuple(scope))
            value = await self.evaluator(node.state, path, spend)
            return spend.calls, float(value), str(getattr(value, "critique", ""))  # a judge's reasons, if it gave them
        done = await self.executor.call(remote_estimate, self.evaluator, node.state, path, spend, self.tree.lessons(),
                                        scope, record=self._record("evaluate", path))
        _charge(spend, done["usages"])
        return spend.calls, done["value"], done["critique"]

    def _record(self, kind: str, path: list[Node]) -> Record | None:
        """Where a worker commits the result of `kind` for the last node of `path`: keyed by the run, the node, its
        state and the actions that led to it, so a retried call reads back its earlier attempt's result."""
        if self.record_url is None or self.recorder is None:
            return None
        node = path[-1]
        return Record(self.record_url, task_key("search", self.recorder.name, kind, node.id, node.state,
                                                [n.action for n in path], self.k))

    async def _gather(self, coros: list[Awaitable[T]]) -> tuple[list[T | None], SearchStopped | None]:
        """Run `coros` concurrently until the time budget; keep the results that finished."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        seconds = self.budget.max_seconds
        done, pending = await asyncio.wait(tasks, timeout=None if seconds is None else seconds - self.elapsed)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        stop = SearchStopped("max_seconds") if pending else None
        results: list[T | None] = []
        errors = [task.exception() for task in tasks if task in done]  # every one retrieved, none left to warn
        for task in tasks:
            exc = task.exception() if task in done else None
            if isinstance(exc, BudgetExceeded):
                stop = stop or SearchStopped(limit_reached(self.spend), str(exc))
            results.append(task.result() if task in done and exc is None else None)
        failure = next((e for e in errors if e is not None and not isinstance(e, BudgetExceeded)), None)
        if failure is not None:
            raise failure
        return results, stop


async def expansion(env: Environment, proposer: Proposer, state: Any, path: list[Node], k: int | None,
                    spend: Spend) -> list[tuple[Any, float, Transition]]:
    """The children of `state`: the proposer's actions (repeats merged, priors summed and normalised), each stepped.

    >>> from baobab.search import DeceptiveTree, uniform_proposer
    >>> env = DeceptiveTree(depth=2, branching=2)
    >>> [a for a, _, _ in asyncio.run(expansion(env, uniform_proposer(env), [], [], None, Spend()))]
    [0, 1]
    """
    proposals = await proposer(state, path, k, spend)
    merged: dict[str, tuple[Any, float]] = {}
    for action, prior in proposals:  # a sampling proposer may repeat itself: one child, summed prior
        key = _plain(action, "action")
        merged[key] = (json.loads(key), merged.get(key, (None, 0.0))[1] + prior)
    total = sum(p for _, p in merged.values()) or 1.0
    steps = await asyncio.gather(*(resolve(env.step(state, a)) for a, _ in merged.values()))
    for step in steps:
        if not isinstance(step, Transition):
            raise TypeError(f"env.step must return a Transition, not {type(step).__name__}")
    return [(a, p / total, _plain_state(t)) for (a, p), t in zip(merged.values(), steps, strict=True)]


async def remote_expansion(env: Environment, proposer: Proposer, state: Any, path: list[Node], k: int | None,
                           spend: Spend, lessons: list[str], scope: list[str]) -> dict[str, Any]:
    """`expansion` on a worker, as JSON: the steps, and each model call's usage for the search to charge.

    `spend` is a copy of the search's (its caps hold as of the call), `lessons` what `lessons()` answers there,
    `scope` what `lessons_in_scope()` does (a worker's context is not the search's: both travel as arguments).

    >>> from baobab.search import DeceptiveTree, uniform_proposer
    >>> env = DeceptiveTree(depth=2, branching=2)
    >>> asyncio.run(remote_expansion(env, uniform_proposer(env), [], [], 1, Spend(), [], []))["steps"][0][:2]
    [0, 1.0]
    """
    recording = _Recording(spend)
    _TREE.set(_lessons_tree(lessons))
    _SCOPE.set(tuple(scope))
    steps = await expansion(env, proposer, state, path, k, recording)
    return {"usages": [u.model_dump() for u in recording.charged],
            "steps": [[a, p, dataclasses.asdict(t)] for a, p, t in steps]}


async def remote_estimate(evaluator: Evaluator, state: Any, path: list[Node], spend: Spend,
                          lessons: list[str], scope: list[str]) -> dict[str, Any]:
    """The evaluator's value of `state` on a worker, as JSON (see `remote_expansion`).

    >>> from baobab.search import DeceptiveTree, rollout_evaluator
    >>> asyncio.run(remote_estimate(rollout_evaluator(DeceptiveTree()), [0], [], Spend(), [], []))["value"]
    0.5
    """
    recording = _Recording(spend)
    _TREE.set(_lessons_tree(lessons))
    _SCOPE.set(tuple(scope))
    value = await evaluator(state, path, recording)
    return {"usages": [u.model_dump() for u in recording.charged], "value": float(value),
            "critique": str(getattr(value, "critique", ""))}


class _Recording(Spend):
    """A worker's spend: charged like the search's (a copy of it is its parent), and keeping each call's usage."""

    def __init__(self, parent: Spend) -> None:
        super().__init__(None, "worker", parent)
        self.charged: list[Usage] = []

    def charge(self, usage: Usage) -> None:
        self.charged.append(usage)
        super().charge(usage)


def _lessons_tree(lessons: list[str]) -> Tree:
    tree = Tree(None)
    tree.recalled = lessons
    return tree


def _step(lesson: Any) -> int | None:
    """The step a reflector's lesson blames (a `Lesson`'s `step`), if it names one as an int."""
    step = getattr(lesson, "step", None)
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _charge(spend: Spend, usages: list[dict[str, Any]]) -> None:
    """Charge `spend` with the model calls a worker made, one by one, as if they were made here."""
    for usage in usages:
        spend.charge(Usage(**usage))


def _plain(value: Any, what: str) -> str:
    """`value` as canonical JSON, or a TypeError that says states and actions must be JSON."""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"search {what}s must be JSON-serialisable (lists, dicts, str, numbers): {value!r}") from exc


def _plain_state(step: Transition) -> Transition:
    # what a resumed search reads back from JSON, so a run behaves the same before and after a crash
    return Transition(json.loads(_plain(step.state, "state")), step.observation, float(step.reward), bool(step.done),
                      step.feedback)
