"""A validated config made runnable: its agents, tools and models built, its workflow compiled as a graph.

>>> workflow = await Workflow.load("examples/team.yaml")  # doctest: +SKIP
>>> result = await workflow.arun({"question": "What is 17 * 23?"})  # doctest: +SKIP
>>> result.state.output  # doctest: +SKIP
"""

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baobab.agents.agent import Agent, shared_model
from baobab.agents.config import (
    BanditRouterEntry,
    Config,
    LLMRouterEntry,
    ModelEntry,
    RouteEntry,
    import_object,
    input_values,
    output_model,
    read_config,
)
from baobab.agents.llm_router import LLMRouter
from baobab.agents.state import TeamState, embedding_features
from baobab.agents.team import handoffs, pipeline, supervisor
from baobab.agents.yaml_source import ConfigError, YamlSource
from baobab.engine import LLM
from baobab.engine.budget import Spend, current_spend
from baobab.graphs import END, START, App, Graph, RunResult
from baobab.graphs.lookahead import LookaheadRouter
from baobab.search import GraphEnvironment, SearchResult
from baobab.search import asearch as search_graph
from baobab.tools import Tool, builtin_tools, load_mcp_tools, tool


@dataclass
class SearchRun:
    """A workflow's search: its stored name, the search's result (tree, best trajectory) and the best run."""

    name: str
    result: SearchResult
    best: RunResult


class Workflow:
    """A config's workflow, ready to run; `await Workflow.load(path)` builds one (`aclose()` when done)."""

    def __init__(self, config: Config, source: YamlSource, base: Path, model: str | None = None) -> None:
        self.config, self.source, self.base, self.model_override = config, source, base, model
        self.agents: dict[str, Agent] = {}
        self.graph: Graph | None = None
        self._closers: list[Any] = []

    @classmethod
    async def load(cls, path: str | Path, *, model: str | None = None,
                   inputs: Mapping[str, Any] | None = None) -> "Workflow":
        """Check and build the workflow of `path`; `model` replaces every model it names (e.g. for tests).

        Every problem `read_config` finds (with `inputs`: in the run's inputs too) is raised before any model loads.
        """
        config, source = read_config(path, inputs=inputs, model=model)
        base = Path(path) if Path(path).is_dir() else Path(path).parent
        workflow = cls(config, source, base.resolve(), model)
        try:
            await workflow._build()
        except BaseException:
            await workflow.aclose()
            raise
        return workflow

    def inputs(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """`given` checked against the declared inputs (strings from a command line are converted)."""
        return input_values(self.config, self.source, given)

    def task(self, inputs: Mapping[str, Any]) -> str:
        """The workflow's task text for `inputs`."""
        return self.config.workflow.task.format(**self.inputs(inputs))

    def compile(self, checkpointer: Any = None) -> App:
        """The workflow's graph, compiled (with a checkpointer, runs are durable and resumable)."""
        assert self.graph is not None, "Workflow.load() builds the graph"
        return self.graph.compile(checkpointer=checkpointer)

    @contextlib.contextmanager
    def spending(self) -> Iterator[Spend]:
        """Model calls inside the block count against the run budget (and the agents' own)."""
        spend = Spend(self.config.budgets.run, "run")
        token = current_spend.set(spend)
        try:
            yield spend
        finally:
            current_spend.reset(token)

    async def arun(self, inputs: Mapping[str, Any], *, thread: str | None = None,
                   checkpointer: Any = None) -> RunResult:
        """Run the workflow on `inputs` to the end, within the run budget; with a `search:` section, the best
        run the search found (`asearch` for the search itself)."""
        if self.config.search is not None:
            return (await self.asearch(inputs, run=thread, checkpointer=checkpointer)).best
        app = self.compile(checkpointer)
        with self.spending():
            return await app.arun({"task": self.task(inputs)}, thread=thread)

    async def asearch(self, inputs: Mapping[str, Any], *, run: str | None = None, checkpointer: Any = None,
                      strategy: str | None = None, budget: Mapping[str, Any] | None = None) -> "SearchRun":
        """Search over runs of the workflow as its `search:` section says (`strategy`, `budget` override it).

        The search is stored under `run` (default: a new name) in the checkpointer's store, next to the
        checkpoints it forked (in memory without a checkpointer); calling again with the same `run` resumes
        it. Model calls count against the search budget and the run budget.

        >>> found = await workflow.asearch({"question": "..."}, checkpointer="sqlite:///runs.db")  # doctest: +SKIP
        >>> found.best.state.output, found.result.reward  # doctest: +SKIP
        """
        entry = self.config.search
        if entry is None:
            raise ConfigError(f"{self.source.where(())}: no search section: add search: {{reward: module:function, "
                              f"...}} to search over runs of this workflow")
        name = run or f"search-{uuid.uuid4().hex[:8]}"
        app = self.compile(checkpointer if checkpointer is not None else "sqlite://")
        assert app.checkpointer is not None
        reward = import_object(entry.reward, self.source.where(("search", "reward")), self.base)
        env = GraphEnvironment(app, {"task": self.task(inputs)}, reward=reward, k=entry.k, thread=name,
                               choice_points=entry.choice_points or self._agent_nodes())
        limits = {**entry.budget.model_dump(exclude_none=True), **(budget or {})}
        with self.spending() as spend:
            result = await search_graph(env, strategy or entry.strategy, budget=limits, store=app.checkpointer.store,
                                        run=name, spend=spend, **entry.options)
        leaf = result.best[-1].state
        info = app.checkpointer.load(leaf).info
        best = RunResult(info.thread, "done" if result.best[-1].done else "interrupted",
                         app.state(checkpoint=leaf), info.step, leaf)
        return SearchRun(name, result, best)

    async def aclose(self) -> None:
        """Close what the tools hold (MCP connections)."""
        for closer in reversed(self._closers):
            await closer.aclose()
        self._closers.clear()

    async def _build(self) -> None:
        config, tools = self.config, {}
        for name, entry in config.agents.items():
            for tool_name in entry.tools:
                if tool_name not in tools:
                    tools[tool_name] = await self._tools(tool_name)
            output = None
            if isinstance(entry.output, dict):
                output = output_model(name, entry.output)
            elif isinstance(entry.output, str):
                output = import_object(entry.output, self.source.where(("agents", name, "output")), self.base)
            self.agents[name] = Agent(
                name, role=entry.role, instructions=entry.instructions, model=self._model(entry.model),
                tools=[t for n in entry.tools for t in tools[n]], output=output, examples=entry.examples,
                max_steps=entry.max_steps,
                max_tokens=entry.max_tokens, temperature=entry.temperature, handoffs=entry.handoffs,
                budget=config.budgets.agents.get(name))
        self.graph = self._graph()

    def _graph(self) -> Graph:
        flow = self.config.workflow
        team = [self.agents[n] for n in flow.agents]
        if flow.type == "sequential":
            return pipeline(team)
        if flow.type == "supervisor":
            return supervisor(team, model=self._model(flow.supervisor.model), max_rounds=flow.supervisor.max_rounds)
        if flow.type == "handoffs":
            return handoffs(team)
        graph = Graph(TeamState, name="workflow")
        for name, node in flow.nodes.items():
            where = self.source.where(("workflow", "nodes", name))
            graph.node(name, self.agents[node.agent] if node.agent else import_object(str(node.call), where, self.base))
        ends = {"START": START, "END": END}
        for sources, target in flow.edges:
            named = [sources] if isinstance(sources, str) else sources
            graph.edge([ends.get(s, s) for s in named], ends.get(target, target))
        for i, route in enumerate(flow.routes):
            graph.route(ends.get(route.from_, route.from_), self._router(route, i), [ends.get(t, t) for t in route.to])
        return graph

    def _router(self, route: RouteEntry, i: int) -> Any:
        """The router a route entry names: the state's `next`, a function, or an llm/bandit/lookahead router."""
        by, where = route.by, self.source.where(("workflow", "routes", i, "by"))
        if by == "next":
            return lambda s: s.next or END
        if isinstance(by, str):
            return import_object(by, where, self.base)
        if isinstance(by, LLMRouterEntry):
            ends = {"END": END}
            return LLMRouter(self._model(by.model), {ends.get(t, t): d for t, d in by.descriptions.items()},
                             reason=by.reason)
        if isinstance(by, BanditRouterEntry):
            from baobab.graphs.bandit import BanditRouter  # imported on use: numpy is 0.2 s of every start

            features = (embedding_features() if by.features == "embedding" else
                        import_object(by.features, where, self.base) if by.features else None)
            return BanditRouter(by.name or f"{route.from_}->{'|'.join(route.to)}",
                                reward=import_object(by.reward, where, self.base), features=features,
                                method=by.method, alpha=by.alpha, decay=by.decay)
        return LookaheadRouter(import_object(by.value, where, self.base), depth=by.depth, budget=by.budget,
                               sample=by.sample)

    def _agent_nodes(self) -> list[str]:
        """The graph's nodes that are agents: where a run samples, so a search's default choice points."""
        flow = self.config.workflow
        return [n for n, node in flow.nodes.items() if node.agent] if flow.type == "graph" else list(flow.agents)

    def _model(self, name: str) -> LLM:
        if self.model_override is not None:
            return shared_model(self.model_override)
        entry = self.config.models.get(name, name)
        if isinstance(entry, ModelEntry):
            return shared_model(entry.model, **entry.options)
        return shared_model(entry)

    async def _tools(self, name: str) -> list[Tool]:
        entry = self.config.tools.get(name)
        if entry is None:
            return builtin_tools(name)
        where = self.source.where(("tools", name))
        if entry.builtin is not None:
            try:
                return builtin_tools(entry.builtin, **(entry.model_extra or {}))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: tools.{name}: {exc}") from exc
        if entry.mcp is not None:
            server = await load_mcp_tools(command=entry.mcp.command, url=entry.mcp.url, env=entry.mcp.env)
            self._closers.append(server)
            return list(server.tools)
        obj = import_object(str(entry.import_), where, self.base)
        items = obj if isinstance(obj, list) else [obj]
        return [item if isinstance(item, Tool) else tool(item) for item in items]
