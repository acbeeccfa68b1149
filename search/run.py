"""`search(env, strategy, budget)`: one entry point for every strategy, persisted and resumable by run name."""

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from baobab.aio import run_sync
from baobab.engine.budget import Budget, Spend
from baobab.engine.types import Usage
from baobab.executors import Executor
from baobab.search.backtrack import backtrack
from baobab.search.best_of_n import best_of_n
from baobab.search.budget import SearchBudget, SearchStopped
from baobab.search.context import SearchContext
from baobab.search.dfs import dfs
from baobab.search.environment import Environment, resolve
from baobab.search.graph_env import GraphEnvironment
from baobab.search.greedy import greedy
from baobab.search.hooks import Evaluator, Proposer, rollout_evaluator, uniform_proposer
from baobab.search.levels import beam, bfs
from baobab.search.lookahead import lookahead
from baobab.search.mcts import mcts
from baobab.search.persist import SearchRecorder
from baobab.search.tree import Node, Tree
from baobab.store import Store

Strategy = Callable[..., Awaitable[None]]
STRATEGIES: dict[str, Strategy] = {"greedy": greedy, "best_of_n": best_of_n, "beam": beam, "bfs": bfs, "dfs": dfs,
                                   "mcts": mcts, "lookahead": lookahead, "backtrack": backtrack}
LESSON_TAG = "lesson"  # the tag of notes a search keeps in a Memory
COMMON_OPTIONS = ("k", "max_depth", "target")  # children per expansion, depth limit, stop at this total reward


@dataclass
class SearchResult:
    """The best trajectory (root first) and its total reward, the tree, and why the search stopped.

    `stopped_by` is "done" (the strategy finished), "target", or the limit reached: "max_expansions",
    "max_seconds", "max_model_calls", "max_tokens", "max_cost", or "budget" (an enclosing spend's).
    """

    best: list[Node]
    reward: float
    tree: Tree
    expansions: int
    stopped_by: str
    detail: str = ""
    model_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    experiences: list[str] = field(default_factory=list)


async def asearch(env: Environment, strategy: str = "mcts", *, budget: Budget | Mapping[str, Any] | None = None,
                  proposer: Proposer | None = None, evaluator: Evaluator | None = None,
                  store: Store | str | None = None, run: str | None = None, seed: int = 0,
                  spend: Spend | None = None, memory: Any = None, task: str | None = None,
                  executor: Executor | None = None, **options: Any) -> SearchResult:
    """Search `env` with `strategy` within `budget`; with `run` (a name) every step is committed to `store`.

    Calling again with the same `run` resumes an interrupted search from its stored tree (nothing
    committed is redone, the budget counts what was spent) or returns a finished run's result.
    `proposer` defaults to the environment's `propose` method if it has one, else to the legal actions with
    a uniform prior; `evaluator` to its `evaluate` method, else to a random rollout;
    `spend` is an enclosing spend (an agent's) that the search's model calls also count against.
    `store` is a Store or a URL (default: `baobab.store.default_url()`).
    `memory` (a `baobab.memory.Memory`) recalls the lessons of earlier episodes of `task` (default: the start
    state as text) before the search, and keeps this one's reflections and experience notes after it.
    `executor` runs the expansions and evaluations (default: here, in this event loop); on a `RayExecutor` the
    environment and hooks must pickle, and with `run` the workers commit each result to `store` (a file or
    PostgreSQL URL they can open) once, so a worker that dies mid-search costs only its call in flight.
    Options: `k`, `max_depth`, `target` for every strategy, and the strategy's own (see STRATEGIES).

    >>> from baobab.search.toys import DeceptiveTree
    >>> result = await asearch(DeceptiveTree(), "mcts", budget={"max_expansions": 60})  # doctest: +SKIP
    >>> result = await asearch(DeceptiveTree(), "mcts", executor=RayExecutor(workers=2), batch=8,
    ...                        store="sqlite:///runs.db", run="deceptive-1")  # doctest: +SKIP
    """
    recalled: list[str] = []
    if memory is not None:  # lessons of earlier episodes of this task
        task = task or json.dumps(await resolve(env.reset()), default=str)
        recalled = [hit.note.content for hit in await memory.asearch(task, 5, filters={"tags": [LESSON_TAG]})]
    result = await _search(env, strategy, budget, proposer, evaluator, store, run, seed, spend, recalled, options,
                           executor)
    if memory is not None:
        for lesson in dict.fromkeys(result.experiences):
            if lesson not in recalled:
                await memory.aadd(lesson, tags=[LESSON_TAG, f"task:{task}"[:200]], metadata={"task": task})
    return result


async def _search(env: Environment, strategy: str, budget: Budget | Mapping[str, Any] | None,
                  proposer: Proposer | None, evaluator: Evaluator | None, store: Store | str | None, run: str | None,
                  seed: int, spend: Spend | None, recalled: list[str], options: dict[str, Any],
                  executor: Executor | None) -> SearchResult:
    fn = _strategy(strategy, options)
    search_budget = SearchBudget.model_validate(budget.model_dump() if isinstance(budget, Budget) else budget or {})
    hooks = (proposer or getattr(env, "propose", None) or uniform_proposer(env, seed),
             evaluator or getattr(env, "evaluate", None) or rollout_evaluator(env, seed=seed))
    if run is None:
        if store is not None:
            raise ValueError("store= needs run= (the name to persist the search under and resume it by)")
        return await _run(env, fn, options, hooks, search_budget, Spend(search_budget, "search", spend), seed, None,
                          recalled, executor)
    db = store if isinstance(store, Store) else Store(store)
    try:
        recorder = SearchRecorder(db, run, checkpoints=isinstance(env, GraphEnvironment))
        stored = recorder.open(strategy, json.loads(json.dumps({"seed": seed, "options": options}, default=_hook)))
        calls, usage = stored.spent.get("calls", 0), Usage(**stored.spent.get("usage", {}))
        if stored.status == "done" and stored.tree is not None and stored.result is not None:
            return _result(stored.tree, stored.result, calls, usage)
        search_spend = Spend(search_budget, "search", spend)  # counting on from what the earlier runs spent
        search_spend.calls, search_spend.usage = calls, usage
        search_spend.started -= stored.spent.get("seconds", 0.0)
        return await _run(env, fn, options, hooks, search_budget, search_spend, seed, recorder, recalled,
                          executor, stored.tree)
    finally:
        if db is not store:
            db.close()


async def _run(env: Environment, fn: Strategy, options: Mapping[str, Any], hooks: tuple[Proposer, Evaluator],
               budget: SearchBudget, spend: Spend, seed: int, recorder: SearchRecorder | None,
               recalled: list[str], executor: Executor | None, tree: Tree | None = None) -> SearchResult:
    tree = tree or Tree(json.loads(json.dumps(await resolve(env.reset()))))
    tree.recalled = recalled
    ctx = SearchContext(tree, env, *hooks, budget, spend, k=options.get("k"), max_depth=options.get("max_depth"),
                        target=options.get("target"), recorder=recorder, seed=seed, executor=executor)
    try:
        await fn(ctx, **{name: value for name, value in options.items() if name not in COMMON_OPTIONS})
        stop = SearchStopped("done")
    except SearchStopped as exc:
        stop = exc
    except BaseException as exc:
        if recorder is not None and recorder.run_id is not None:
            ctx.commit("error", {"stopped_by": "error", "detail": repr(exc)})
        raise
    result = {"stopped_by": stop.reason, "detail": stop.detail}
    ctx.commit("done", result)
    return _result(tree, result, spend.calls, spend.usage)


def search(env: Environment, strategy: str = "mcts", **kwargs: Any) -> SearchResult:
    """`asearch` from sync code.

    >>> from baobab.search.toys import DeceptiveTree
    >>> search(DeceptiveTree(), "greedy").reward  # the trap's plateau
    0.5
    """
    return run_sync(asearch(env, strategy, **kwargs))


def _strategy(name: str, options: Mapping[str, Any]) -> Strategy:
    """The strategy named `name`, or a ValueError naming what is valid; likewise for its options."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}; valid: {sorted(STRATEGIES)}")
    if options.get("k") is not None and options["k"] < 1:
        raise ValueError(f"k (children per expansion) must be >= 1 or None, not {options['k']}")
    own = list(inspect.signature(STRATEGIES[name]).parameters)[1:]  # after the context
    unknown = sorted(set(options) - set(own) - set(COMMON_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for search strategy {name!r}; "
                         f"valid: {sorted([*own, *COMMON_OPTIONS])}")
    return STRATEGIES[name]


def _result(tree: Tree, result: Mapping[str, Any], calls: int, usage: Usage) -> SearchResult:
    best = tree.best_trajectory()
    return SearchResult(best, tree.returns(best[-1]), tree, tree.expansions, result["stopped_by"],
                        result.get("detail", ""), calls, usage, tree.reflections())


def _hook(value: Any) -> str:
    """A hook option (a reflector, say) is stored by its name: like the proposer, it is code, not data."""
    if not callable(value):
        raise TypeError(f"search options must be JSON-serialisable or hooks, not {value!r}")
    return f"<hook {getattr(value, '__qualname__', type(value).__name__)}>"
