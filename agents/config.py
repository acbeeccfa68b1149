"""A YAML file (or directory) that declares models, tools, agents, a workflow, budgets and inputs.

```yaml
models:
  small: local:smollm2-135m
tools:
  py: {builtin: python, time_limit: 10}
agents:
  analyst: {role: data analyst, model: small, tools: [py], max_steps: 4}
workflow: {type: sequential, agents: [analyst], task: "Answer: {question}"}
budgets: {run: {max_model_calls: 20, max_seconds: 120}}
inputs: {question: {default: "What is 17 * 23?"}}
search: {strategy: mcts, budget: {max_model_calls: 50}, choice_points: [analyst], k: 3, reward: "checks:score"}
```
With `search:`, a run is a search over runs of the workflow's graph (see `baobab.search.graph_env`).
`load_workflow(path)` validates it (errors name file, line and field) and builds a runnable `Workflow`.
"""

import importlib
import inspect
import re
import string
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    create_model,
    model_validator,
)

from baobab.agents.agent import Example
from baobab.agents.yaml_source import ConfigError, YamlSource
from baobab.engine import DEFAULT_MODEL
from baobab.engine.budget import Budget
from baobab.search import COMMON_OPTIONS, STRATEGIES, SearchBudget


def _identifier(name: str) -> str:
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not a valid name: use letters, digits and _ (not starting with a digit)")
    return name


def _output(value: Any) -> Any:
    if value is None or (isinstance(value, str) and re.match(IMPORT_PATTERN, value)):
        return value
    if isinstance(value, dict) and all(isinstance(v, str) and v in _PYTHON_TYPES for v in value.values()):
        return {_identifier(str(k)): v for k, v in value.items()}
    raise ValueError(f"expected {{field: type}} with types {', '.join(_PYTHON_TYPES)}, or 'module:Model', "
                     f"got {value!r}")


IMPORT_PATTERN = r"^[\w.]+:[\w.]+$"  # module:attribute
Name = Annotated[str, AfterValidator(_identifier)]
ImportRef = Annotated[str, Field(pattern=IMPORT_PATTERN)]
_PYTHON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
                                 "object": dict}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelEntry(Strict):
    """A model string and the options its constructor takes (api_base, api_key, threads, ...)."""

    model: str
    options: dict[str, Any] = {}


class McpEntry(Strict):
    command: list[str] | None = None
    url: str | None = None
    env: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> "McpEntry":
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        return self


class ToolEntry(BaseModel):
    """`{builtin: NAME, ...options}`, `{import: "module:attribute"}` or `{mcp: {command: [...]} | {url: ...}}`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    builtin: str | None = None
    import_: ImportRef | None = Field(default=None, alias="import")
    mcp: McpEntry | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "ToolEntry":
        kinds = [k for k in ("builtin", "import", "mcp") if getattr(self, "import_" if k == "import" else k)]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of builtin, import or mcp (got {kinds or 'none'})")
        if self.model_extra and not self.builtin:
            raise ValueError(f"options {sorted(self.model_extra)} are only for built-in tools")
        return self


class AgentEntry(Strict):
    role: str = ""
    instructions: str = ""
    model: str = DEFAULT_MODEL  # a key of `models`, or a model string
    tools: list[str] = []  # keys of `tools`, or built-in names
    output: Annotated[dict[str, str] | str | None, BeforeValidator(_output)] = None  # {field: type} or module:Model
    max_steps: int = Field(default=8, ge=1)
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.0, ge=0)
    handoffs: list[str] = []
    examples: list[Example] = []  # worked examples: {task, calls: [{tool, arguments, result}], answer}


class NodeEntry(Strict):
    """A graph node: an agent, or a Python callable `module:function` over the TeamState."""

    agent: str | None = None
    call: ImportRef | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "NodeEntry":
        if (self.agent is None) == (self.call is None):
            raise ValueError("give exactly one of agent or call")
        return self


class LLMRouterEntry(Strict):
    """`{kind: llm}`: a model picks the target from their descriptions (default: the agents' roles)."""

    kind: Literal["llm"]
    model: str = DEFAULT_MODEL  # a key of `models`, or a model string
    descriptions: dict[str, str] = {}
    reason: bool = True


class BanditRouterEntry(Strict):
    """`{kind: bandit, reward: module:function}`: a contextual bandit learns which target pays, across runs."""

    kind: Literal["bandit"]
    reward: ImportRef  # of the state when the routed work is over: a number, best within [0, 1]
    features: Literal["embedding"] | ImportRef | None = None  # of the state: a list of numbers
    method: Literal["linucb", "thompson"] = "linucb"
    alpha: float | None = Field(default=None, gt=0)  # exploration (default: 1 for linucb, 0.5 for thompson)
    decay: float = Field(default=0.99, gt=0, le=1)
    name: str | None = None  # what its rewards are stored under (default: from -> targets)


class LookaheadRouterEntry(Strict):
    """`{kind: lookahead, value: module:function}`: run each target a few steps ahead, keep the best."""

    kind: Literal["lookahead"]
    value: ImportRef  # of a branch's state: a number, higher is better
    depth: int = Field(default=2, ge=1)
    budget: int | None = Field(default=None, ge=1)  # super-steps one decision may spend on branches
    sample: int | None = Field(default=None, ge=1)  # explore only this many targets


def _route_kind(value: Any) -> str | None:
    return (value.get("kind") if isinstance(value, dict) else "function") if not isinstance(value, BaseModel) else \
        getattr(value, "kind", "function")


RouteBy = Annotated[Annotated[Literal["next"] | ImportRef, Tag("function")] | Annotated[LLMRouterEntry, Tag("llm")]
                    | Annotated[BanditRouterEntry, Tag("bandit")] | Annotated[LookaheadRouterEntry, Tag("lookahead")],
                    Discriminator(_route_kind, custom_error_type="router_kind", custom_error_message=(
                        "expected next, module:function or {kind: llm | bandit | lookahead, ...}"))]


class RouteEntry(Strict):
    """After `from`, go where `by` says: `next` (the state's next field: handoffs, supervisors),
    `module:function` of the state, or a router: `{kind: llm | bandit | lookahead, ...}`."""

    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    by: RouteBy = "next"


class SupervisorEntry(Strict):
    model: str = DEFAULT_MODEL
    max_rounds: int = Field(default=8, ge=1)


class WorkflowEntry(Strict):
    type: Literal["sequential", "supervisor", "handoffs", "graph"]
    task: str = "{task}"  # the task text; {name} is filled from the inputs
    agents: list[str] = []  # sequential, supervisor, handoffs: in order (handoffs start with the first)
    supervisor: SupervisorEntry = SupervisorEntry()
    nodes: dict[Name, NodeEntry] = {}  # graph
    edges: list[tuple[str | list[str], str]] = []  # graph: [source or [sources], target]; START and END
    routes: list[RouteEntry] = []  # graph

    @model_validator(mode="after")
    def _shape(self) -> "WorkflowEntry":
        if self.type == "graph":
            if self.agents or not self.nodes:
                raise ValueError("a graph workflow lists nodes (and edges, routes), not agents")
        elif not self.agents or self.nodes or self.edges or self.routes:
            raise ValueError(f"a {self.type} workflow lists agents, not nodes, edges or routes")
        return self


def _strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise ValueError(f"{name!r} is not a search strategy ({sorted(STRATEGIES)})")
    return name


class SearchEntry(Strict):
    """Search over runs of the workflow: `choice_points` (nodes that sample; default every agent) are run `k`
    times from the same checkpoint, `reward` (`module:function` of the final state) scores each end."""

    strategy: Annotated[str, AfterValidator(_strategy)] = "mcts"
    budget: SearchBudget = SearchBudget()
    choice_points: list[str] = []
    k: int = Field(default=3, ge=1)
    reward: ImportRef
    options: dict[str, Any] = {}  # the strategy's own: mcts {c, selection, batch}, beam {width}, ...

    @model_validator(mode="after")
    def _known_options(self) -> "SearchEntry":
        own = list(inspect.signature(STRATEGIES[self.strategy]).parameters)[1:]  # after the search context
        valid = sorted({*own, *COMMON_OPTIONS} - {"k"})  # k is a field of its own
        unknown = sorted(set(self.options) - set(valid))
        if unknown:
            raise ValueError(f"options {unknown} are not options of strategy {self.strategy} ({valid})")
        return self


class BudgetsEntry(Strict):
    run: Budget | None = None
    agents: dict[str, Budget] = {}


class InputEntry(Strict):
    type: Literal["string", "integer", "number", "boolean"] = "string"
    default: Any = None
    description: str = ""


class Config(Strict):
    """The whole file, validated; `check` then verifies the names it uses refer to something."""

    models: dict[Name, str | ModelEntry] = {}
    tools: dict[Name, ToolEntry] = {}
    agents: dict[Name, AgentEntry] = Field(min_length=1)
    workflow: WorkflowEntry
    budgets: BudgetsEntry = BudgetsEntry()
    inputs: dict[Name, InputEntry] = {}
    search: SearchEntry | None = None


def read_config(path: str | Path) -> tuple[Config, YamlSource]:
    """Load and validate a config, its cross-references included; ConfigError lists every problem.

    >>> config, source = read_config("examples/team.yaml")  # doctest: +SKIP
    """
    source = YamlSource.read(path)
    try:
        config = Config.model_validate(source.data)
    except ValidationError as exc:
        raise source.validation_error(exc) from exc
    problems = _references(config, source)
    if problems:
        raise ConfigError("\n".join(problems))
    return config, source


def _references(config: Config, source: YamlSource) -> list[str]:
    """Every name that points nowhere, with where it is."""
    from baobab.tools import BUILTINS

    problems: list[str] = []

    def need(ok: bool, loc: tuple[str | int, ...], message: str) -> None:
        if not ok:
            problems.append(source.line(loc, message))

    agents, models = set(config.agents), set(config.models)
    for name, agent in config.agents.items():
        need(agent.model in models or ":" in agent.model or "/" in agent.model, ("agents", name, "model"),
             f"{agent.model!r} is not a model of this file ({sorted(models)}) nor a model string such as "
             f"local:smollm2-135m or openai/gpt-4o-mini")
        for i, tool in enumerate(agent.tools):
            need(tool in config.tools or tool in BUILTINS, ("agents", name, "tools", i),
                 f"{tool!r} is not a tool of this file ({sorted(config.tools)}) nor a built-in ({sorted(BUILTINS)})")
        for i, other in enumerate(agent.handoffs):
            need(other in agents and other != name, ("agents", name, "handoffs", i),
                 f"{other!r} is not another agent of this file ({sorted(agents - {name})})")
    for name, entry in config.tools.items():
        need(entry.builtin is None or entry.builtin in BUILTINS, ("tools", name, "builtin"),
             f"{entry.builtin!r} is not a built-in tool ({sorted(BUILTINS)})")
    flow = config.workflow
    for i, agent_name in enumerate(flow.agents):
        need(agent_name in agents, ("workflow", "agents", i), f"{agent_name!r} is not an agent ({sorted(agents)})")
    for name, node in flow.nodes.items():
        need(node.agent is None or node.agent in agents, ("workflow", "nodes", name, "agent"),
             f"{node.agent!r} is not an agent ({sorted(agents)})")
    ends = set(flow.nodes) | {"START", "END"}
    for i, (sources, target) in enumerate(flow.edges):
        for end in ([sources] if isinstance(sources, str) else sources) + [target]:
            need(end in ends, ("workflow", "edges", i), f"{end!r} is not a node ({sorted(ends)})")
    for i, route in enumerate(flow.routes):
        for end in [route.from_, *route.to]:
            need(end in ends, ("workflow", "routes", i), f"{end!r} is not a node ({sorted(ends)})")
        if isinstance(route.by, LLMRouterEntry):
            model = route.by.model
            need(model in models or ":" in model or "/" in model, ("workflow", "routes", i, "by", "model"),
                 f"{model!r} is not a model of this file ({sorted(models)}) nor a model string")
            for target in sorted(set(route.by.descriptions) - set(route.to)):
                need(False, ("workflow", "routes", i, "by", "descriptions", target),
                     f"{target!r} is not a target of this route ({route.to})")
    if config.search is not None:
        nodes = _nodes(flow)
        for i, point in enumerate(config.search.choice_points):
            need(point in nodes, ("search", "choice_points", i), f"{point!r} is not a node of the workflow ({nodes})")
    for name in config.budgets.agents:
        need(name in agents, ("budgets", "agents", name), f"{name!r} is not an agent ({sorted(agents)})")
    fields = {f for _, f, _, _ in string.Formatter().parse(flow.task) if f is not None}
    for field in sorted(fields - set(config.inputs) - ({"task"} if not config.inputs else set())):
        need(False, ("workflow", "task"), f"{{{field}}} is not an input ({sorted(config.inputs)})")
    return problems


def _nodes(flow: WorkflowEntry) -> list[str]:
    """The names of the workflow graph's nodes."""
    if flow.type == "graph":
        return sorted(flow.nodes)
    return sorted([*flow.agents, *(["supervisor"] if flow.type == "supervisor" else [])])


def import_object(reference: str, where: str, base: Path) -> Any:
    """The object named `module:attribute`, importing modules next to the config file first."""
    module_name, _, attribute = reference.partition(":")
    sys.path.insert(0, str(base))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r}: {exc}") from exc
    finally:
        sys.path.remove(str(base))
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}: {module_name} has no {attribute!r}")
        obj = getattr(obj, part)
    return obj


def output_model(name: str, spec: dict[str, str]) -> type[BaseModel]:
    """A pydantic model from `{field: type}` (string, integer, number, boolean, array, object)."""
    fields: dict[str, Any] = {field: (_PYTHON_TYPES[kind], ...) for field, kind in spec.items()}
    model: type[BaseModel] = create_model(re.sub(r"\W", "", name.title()) + "Output", **fields)
    return model
