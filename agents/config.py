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

import contextlib
import copy
import functools
import importlib
import inspect
import io
import re
import string
import sys
from collections.abc import Callable, Mapping
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
from baobab.agents.yaml_source import ConfigError, Loc, Problem, YamlSource
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
_INPUT_TYPES: dict[str, Callable[[str], Any]] = {  # a run input given as text (on a command line), converted
    "string": str, "integer": int, "number": float, "boolean": lambda v: {"true": True, "false": False}[v.lower()]}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelEntry(Strict):
    """A model string and the options its constructor takes (api_base, api_key, threads, ...)."""

    model: str  # a model string: local:NAME or local:PATH, a litellm name, http://host:port/v1
    options: dict[str, Any] = {}  # keyword arguments of the model's constructor


class McpEntry(Strict):
    command: list[str] | None = None  # stdio: the command line that starts the server
    url: str | None = None  # streamable HTTP: the server's URL
    env: dict[str, str] | None = None  # environment variables for the command

    @model_validator(mode="after")
    def _one_way(self) -> "McpEntry":
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        return self


class ToolEntry(BaseModel):
    """`{builtin: NAME, ...options}`, `{import: "module:attribute"}` or `{mcp: {command: [...]} | {url: ...}}`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    builtin: str | None = None  # python, files, read_file, write_file, list_files, http_get or calculator
    import_: ImportRef | None = Field(default=None, alias="import")  # a @tool function or a Tool
    mcp: McpEntry | None = None  # an MCP server: each of its tools is added

    @model_validator(mode="after")
    def _one_kind(self) -> "ToolEntry":
        kinds = [k for k in ("builtin", "import", "mcp") if getattr(self, "import_" if k == "import" else k)]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of builtin, import or mcp (got {kinds or 'none'})")
        if self.model_extra and not self.builtin:
            raise ValueError(f"options {sorted(self.model_extra)} are only for built-in tools")
        return self


class AgentEntry(Strict):
    role: str = ""  # what the agent is, in a few words (supervisors and llm routers read it)
    instructions: str = ""  # how it works: added to its system prompt
    model: str = DEFAULT_MODEL  # a key of `models`, or a model string
    tools: list[str] = []  # keys of `tools`, or built-in names
    output: Annotated[dict[str, str] | str | None, BeforeValidator(_output)] = None  # {field: type} or module:Model
    max_steps: int = Field(default=8, ge=1)  # model calls that may call tools, before it must answer
    max_tokens: int = Field(default=512, ge=1)  # the longest answer of one model call
    temperature: float = Field(default=0.0, ge=0)  # 0: greedy
    handoffs: list[str] = []  # agents it may pass the task to (transfer_to_<agent> tools)
    examples: list[Example] = []  # worked examples: {task, calls: [{tool, arguments, result}], answer}


class NodeEntry(Strict):
    """A graph node: an agent, or a Python callable `module:function` over the TeamState."""

    agent: str | None = None  # a key of `agents`
    call: ImportRef | None = None  # a function of the TeamState that returns an update

    @model_validator(mode="after")
    def _one_kind(self) -> "NodeEntry":
        if (self.agent is None) == (self.call is None):
            raise ValueError("give exactly one of agent or call")
        return self


class LLMRouterEntry(Strict):
    """`{kind: llm}`: a model picks the target from their descriptions (default: the agents' roles)."""

    kind: Literal["llm"]
    model: str = DEFAULT_MODEL  # a key of `models`, or a model string
    descriptions: dict[str, str] = {}  # target -> what it is for
    reason: bool = True  # ask for a short reason, recorded with the decision


class BanditRouterEntry(Strict):
    """`{kind: bandit, reward: module:function}`: a contextual bandit learns which target pays, across runs."""

    kind: Literal["bandit"]
    reward: ImportRef  # of the state when the routed work is over: a number, best within [0, 1]
    features: Literal["embedding"] | ImportRef | None = None  # of the state: a list of numbers
    method: Literal["linucb", "thompson"] = "linucb"  # LinUCB or Thompson sampling
    alpha: float | None = Field(default=None, gt=0)  # exploration (default: 1 for linucb, 0.5 for thompson)
    decay: float = Field(default=0.99, gt=0, le=1)  # below 1: older rewards count less, so it follows a change
    name: str | None = None  # what its rewards are stored under (default: from -> targets)


class LookaheadRouterEntry(Strict):
    """`{kind: lookahead, value: module:function}`: run each target a few steps ahead, keep the best."""

    kind: Literal["lookahead"]
    value: ImportRef  # of a branch's state: a number, higher is better
    depth: int = Field(default=2, ge=1)  # super-steps each branch runs ahead
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

    from_: str = Field(alias="from")  # the node after which to route
    to: list[str] = Field(min_length=1)  # the targets it may go to (END included)
    by: RouteBy = "next"  # what chooses among them


class SupervisorEntry(Strict):
    model: str = DEFAULT_MODEL  # the model that picks the next agent
    max_rounds: int = Field(default=8, ge=1)  # agents it may call before the run ends


class WorkflowEntry(Strict):
    type: Literal["sequential", "supervisor", "handoffs", "graph"]  # how the agents are wired
    task: str = "{task}"  # the task text; {name} is filled from the inputs
    description: str = ""  # what the workflow does: `baobab mcp` shows it as the tool's description
    agents: list[str] = []  # sequential, supervisor, handoffs: in order (handoffs start with the first)
    supervisor: SupervisorEntry = SupervisorEntry()  # supervisor: the agent that picks who works next
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

    strategy: Annotated[str, AfterValidator(_strategy)] = "mcts"  # greedy, best_of_n, beam, mcts, ...
    budget: SearchBudget = SearchBudget()  # when the search stops
    choice_points: list[str] = []  # nodes sampled k times from one checkpoint (default: every agent)
    k: int = Field(default=3, ge=1)  # samples per choice point
    reward: ImportRef  # a function of the final state: a number, higher is better
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
    run: Budget | None = None  # caps for the whole run
    agents: dict[str, Budget] = {}  # caps per agent, by name


class InputEntry(Strict):
    type: Literal["string", "integer", "number", "boolean"] = "string"  # what a command-line value becomes
    default: Any = None  # used when the input is not given (none: the input is required)
    description: str = ""  # shown to MCP clients in the tool's input schema


class Sections(Strict):
    """The sections of a config, each optional: what parsed of a file that did not validate as a whole."""

    models: dict[Name, str | ModelEntry] = {}  # names for models, which agents use instead of model strings
    tools: dict[Name, ToolEntry] = {}  # tools by the name agents list them under
    agents: dict[Name, AgentEntry] = {}  # the agents, by name
    workflow: WorkflowEntry | None = None  # how the agents work together
    budgets: BudgetsEntry = BudgetsEntry()  # hard caps on what the run and each agent spend
    inputs: dict[Name, InputEntry] = {}  # the run's inputs (--input NAME=VALUE), filled into the task
    search: SearchEntry | None = None  # a search over runs instead of one run


class Config(Sections):
    """The whole file, validated; `read_config` then checks what its names and model strings refer to."""

    agents: dict[Name, AgentEntry] = Field(min_length=1)
    workflow: WorkflowEntry


def read_config(path: str | Path, *, inputs: Mapping[str, Any] | None = None,
                model: str | None = None) -> tuple[Config, YamlSource]:
    """Load and check a config as `baobab run` does before any model loads; ConfigError lists every problem, one
    `file:line: field: what was expected` per line, in file order.

    Checked: the schema; the names it uses (models, tools, agents, nodes, routes, inputs); built-in tools'
    options; that each model string can load (a `local:` file or package exists, litellm knows the provider);
    with `inputs`, the run's inputs (unknown, missing, mistyped). `model` replaces every model the file names.

    >>> config, source = read_config("examples/team.yaml", inputs={"question": "2 + 2?"})  # doctest: +SKIP
    """
    source = YamlSource.read(path)
    try:
        config: Config | None = Config.model_validate(source.data)
        problems = []
    except ValidationError as exc:
        config, problems = None, source.validation_problems(exc)
    problems += _problems(config or _parsed(source), source, inputs, model)
    if problems or config is None:
        raise source.report(problems)
    return config, source


def input_values(config: Sections, source: YamlSource, given: Mapping[str, Any]) -> dict[str, Any]:
    """The run inputs `given` checked against the declared ones and converted (strings from a command line).

    >>> input_values(config, source, {"n": "3"})  # doctest: +SKIP
    {'n': 3}
    """
    values, problems = _inputs(config, source, given)
    if problems:
        raise source.report(problems)
    return values


def _parsed(source: YamlSource) -> Sections:
    """What of the data validates once each failing value is left out (or the entry holding it, where that one
    fails without it): the names and references of the rest are then checked too."""
    data = copy.deepcopy(source.data)
    while True:
        try:
            return Sections.model_validate(data)
        except ValidationError as exc:
            paths = sorted({source.data_path(e["loc"]) for e in exc.errors()}, key=len, reverse=True)
            if not [path for path in paths if _drop(data, path)]:  # an error of the file as a whole: no parts
                return Sections()


def _drop(data: dict[str, Any], path: Loc) -> bool:
    """Remove the value at `path`, or the nearest mapping entry holding it (list items are not removed alone:
    the indexes of the rest would no longer match their lines); False where nothing is there."""
    while path:
        *head, key = path
        parent: Any = data
        for part in head:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and key in parent:
            del parent[key]
            return True
        path = tuple(head)
    return False


def _problems(config: Sections, source: YamlSource, inputs: Mapping[str, Any] | None,
              model: str | None) -> list[Problem]:
    """Every name that points nowhere, option that is not one, model that cannot load and input that does not fit."""
    from baobab.tools import BUILTINS

    problems: list[Problem] = []

    def need(ok: bool, loc: Loc, message: str) -> None:
        if not ok:
            problems.append((loc, message))

    agents, models, tools = (_keys(source.data, (s,)) for s in ("agents", "models", "tools"))
    known_tools = sorted(tools | set(BUILTINS))
    for name, agent in config.agents.items():
        need(agent.model in models or _model_string(agent.model), ("agents", name, "model"),
             f"{agent.model!r} is not a model of this file ({sorted(models)}) nor a model string such as "
             f"local:smollm2-135m or openai/gpt-4o-mini")
        for i, tool_name in enumerate(agent.tools):
            need(tool_name in known_tools, ("agents", name, "tools", i),
                 f"{tool_name!r} is not a tool of this file ({sorted(tools)}) nor a built-in ({sorted(BUILTINS)})")
            if tool_name not in tools and tool_name in BUILTINS:  # named bare, a built-in gets no options
                needed = [str(loc[-1]) for loc, _ in _option_problems(BUILTINS[tool_name], {}, tool_name)]
                need(not needed, ("agents", name, "tools", i),
                     f"built-in tool {tool_name} needs options {needed}: declare it under tools: as "
                     f"{{builtin: {tool_name}, {', '.join(f'{n}: ...' for n in needed)}}}")
        for i, other in enumerate(agent.handoffs):
            need(other in agents and other != name, ("agents", name, "handoffs", i),
                 f"{other!r} is not another agent of this file ({sorted(agents - {name})})")
    for name, entry in config.tools.items():
        if entry.builtin is not None:
            need(entry.builtin in BUILTINS, ("tools", name, "builtin"),
                 f"{entry.builtin!r} is not a built-in tool ({sorted(BUILTINS)})")
            if entry.builtin in BUILTINS:
                problems += [((("tools", name, *loc)), message) for loc, message in
                             _option_problems(BUILTINS[entry.builtin], entry.model_extra or {},
                                              f"built-in tool {entry.builtin}")]
    flow = config.workflow
    if flow is not None:
        problems += _workflow_references(flow, source, agents, models)
    if config.search is not None and flow is not None:
        nodes = _nodes(flow)
        for i, point in enumerate(config.search.choice_points):
            need(point in nodes, ("search", "choice_points", i), f"{point!r} is not a node of the workflow ({nodes})")
    for name in config.budgets.agents:
        need(name in agents, ("budgets", "agents", name), f"{name!r} is not an agent ({sorted(agents)})")
    uses = [(("--model",), model, {})] if model is not None else _model_uses(config, models)  # --model replaces all
    problems += [((*loc[:-1], "options", *place) if place else loc, message)  # an option's place is under options
                 for loc, name, options in uses for place, message in _model_problems(name, options)]
    if inputs is not None:
        problems += _inputs(config, source, inputs)[1]
    return problems


def _workflow_references(flow: WorkflowEntry, source: YamlSource, agents: set[str], models: set[str]) -> list[Problem]:
    """The workflow's names that point nowhere: agents, nodes, route targets, router models, the task's inputs."""
    problems: list[Problem] = []
    for i, agent_name in enumerate(flow.agents):
        if agent_name not in agents:
            problems.append((("workflow", "agents", i), f"{agent_name!r} is not an agent ({sorted(agents)})"))
    for name, node in flow.nodes.items():
        if node.agent is not None and node.agent not in agents:
            problems.append((("workflow", "nodes", name, "agent"),
                             f"{node.agent!r} is not an agent ({sorted(agents)})"))
    ends = _keys(source.data, ("workflow", "nodes")) | {"START", "END"}
    for i, (sources, target) in enumerate(flow.edges):
        for end in ([sources] if isinstance(sources, str) else sources) + [target]:
            if end not in ends:
                problems.append((("workflow", "edges", i), f"{end!r} is not a node ({sorted(ends)})"))
    for i, route in enumerate(flow.routes):
        for end in [route.from_, *route.to]:
            if end not in ends:
                problems.append((("workflow", "routes", i), f"{end!r} is not a node ({sorted(ends)})"))
        if isinstance(route.by, LLMRouterEntry):
            model = route.by.model
            if not (model in models or _model_string(model)):
                problems.append((("workflow", "routes", i, "by", "model"),
                                 f"{model!r} is not a model of this file ({sorted(models)}) nor a model string"))
            for target in sorted(set(route.by.descriptions) - set(route.to)):
                problems.append((("workflow", "routes", i, "by", "descriptions", target),
                                 f"{target!r} is not a target of this route ({route.to})"))
    inputs = _keys(source.data, ("inputs",))
    fields = {f for _, f, _, _ in string.Formatter().parse(flow.task) if f is not None}
    for field in sorted(fields - inputs - ({"task"} if not inputs else set())):
        problems.append((("workflow", "task"), f"{{{field}}} is not an input ({sorted(inputs)})"))
    return problems


def _keys(data: dict[str, Any], path: Loc) -> set[str]:
    """The keys of the mapping at `path` of the file's data, those of entries that did not validate included."""
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return set(node) if isinstance(node, dict) else set()


def _model_string(model: str) -> bool:
    """Whether `model` is written as a model string rather than a name of the file's `models`."""
    return ":" in model or "/" in model


def _model_uses(config: Sections, models: set[str]) -> list[tuple[Loc, str, dict[str, Any]]]:
    """Each model string the file names, where, and its constructor options: those of `models`, and those that
    agents, the supervisor and llm routers name directly."""
    uses: list[tuple[Loc, str, dict[str, Any]]] = [
        (("models", name, "model"), entry.model, entry.options) if isinstance(entry, ModelEntry) else
        (("models", name), entry, {}) for name, entry in config.models.items()]
    used: list[tuple[Loc, str]] = [(("agents", name, "model"), agent.model) for name, agent in config.agents.items()]
    flow = config.workflow
    if flow is not None and flow.type == "supervisor":
        used.append((("workflow", "supervisor", "model"), flow.supervisor.model))
    if flow is not None:
        used += [(("workflow", "routes", i, "by", "model"), route.by.model) for i, route in enumerate(flow.routes)
                 if isinstance(route.by, LLMRouterEntry)]
    # a name that is not a model string is reported as a name of nothing
    return uses + [(loc, model, {}) for loc, model in used if model not in models and _model_string(model)]


def _model_problems(model: str, options: Mapping[str, Any]) -> list[Problem]:
    """Why the model string `model` with constructor `options` cannot load, found without loading it (no weights
    are read, nothing is sent), as in `baobab.engine.load_llm`; an option's problem is at its name, the string's
    at ().

    >>> _model_problems("local:/no/such.gguf", {})  # doctest: +ELLIPSIS
    [((), "local model '/no/such.gguf': no such file or directory (expected ...)")]
    """
    kind, _, rest = model.partition(":")
    if kind == "local" and rest:
        from baobab.engine.weights import WeightsError, resolve

        try:
            resolve(rest)
        except WeightsError as exc:
            return [((), str(exc))]
        if not options:  # none to check: spare importing the engine
            return []
        from baobab.engine.local import LocalLLM

        return _option_problems(LocalLLM, options, f"model {model}")
    if kind == "scripted":
        return []
    if kind in ("http", "https") or "/" in model:
        from baobab.engine.remote import RemoteLLM

        problems = _option_problems(RemoteLLM, options, f"model {model}")
        if kind in ("http", "https"):
            return problems
        import litellm  # after baobab.engine.remote, which sets LITELLM_LOCAL_MODEL_COST_MAP (no network fetch)

        try:
            with contextlib.redirect_stdout(io.StringIO()):  # litellm prints its list of providers on failure
                litellm.get_llm_provider(model, api_base=options.get("api_base"))
        except Exception:  # litellm raises its BadRequestError, and others on odd names
            problems.append(((), f"{model!r}: litellm knows no provider {model.split('/')[0]!r} (expected a "
                                 f"litellm model name such as openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest "
                                 f"or ollama/llama3)"))
        return problems
    return [((), f"{model!r} is not a model string: expected local:NAME_OR_PATH, scripted:TEXT, a URL ending in /v1, "
                 f"or a litellm model name such as openai/gpt-4o-mini")]


def _option_problems(factory: Callable[..., Any], options: Mapping[str, Any], what: str) -> list[Problem]:
    """`options` checked as keyword arguments of `factory` (a class: of its constructor, after the model string):
    each unknown, missing or mistyped one, at its name.

    >>> from baobab.tools.python import python
    >>> _option_problems(python, {"colour": "red"}, "built-in tool python")
    [(('colour',), 'unknown option of built-in tool python (its options: workspace, time_limit, memory_mb, \
output_limit, network, call_disk_mb, workspace_disk_mb)')]
    """
    model = _options_model(factory)
    try:
        model.model_validate(options)
    except ValidationError as exc:
        names = ", ".join(model.model_fields)
        messages = {"extra_forbidden": f"unknown option of {what} (its options: {names})",
                    "missing": f"a required option of {what}"}
        return [(tuple(problem["loc"]), messages.get(problem["type"], f"{problem['msg']}, got {problem['input']!r}"))
                for problem in exc.errors()]
    return []


@functools.cache
def _options_model(factory: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of the keyword parameters of `factory`, typed as annotated (a class: its constructor's)."""
    parameters = list(inspect.signature(factory, eval_str=True).parameters.values())
    if isinstance(factory, type):
        parameters = parameters[1:]  # the model string, given apart from the options
    fields: dict[str, Any] = {
        p.name: (Any if p.annotation is p.empty else p.annotation, ... if p.default is p.empty else p.default)
        for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    model: type[BaseModel] = create_model(f"{factory.__name__}_options", __config__=ConfigDict(
        extra="forbid", arbitrary_types_allowed=True), **fields)
    return model


def _inputs(config: Sections, source: YamlSource, given: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """`given` converted to the declared inputs' types (defaults filled in), and each input that does not fit."""
    names = sorted(_keys(source.data, ("inputs",)))
    declared = names or ["task"]  # no inputs section: the task is the one input
    where: Loc = ("inputs",) if names else ("workflow", "task")
    problems: list[Problem] = []
    unknown = sorted(set(given) - set(declared))
    if unknown:
        problems.append((where, f"unknown inputs {unknown}; this workflow takes {declared}"))
    values: dict[str, Any] = {}
    for name in declared:
        entry, loc = config.inputs.get(name), (*where, name) if names else where
        if name in given:
            value, kind = given[name], entry.type if entry is not None else "string"
            try:
                values[name] = _INPUT_TYPES[kind](value) if isinstance(value, str) else value
            except (ValueError, KeyError):
                problems.append((loc, f"expected {kind}, got {value!r}"))
        elif entry is not None and entry.default is not None:
            values[name] = entry.default
        elif entry is not None or not names:  # an entry that did not parse is reported already
            problems.append((loc, f"required: give --input {name}=VALUE"))
    return values, problems


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
