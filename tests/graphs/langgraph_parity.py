"""Random graphs built from one description on LangGraph and on Baobab, and what LangGraph does with them.

A `Spec` is a small graph (3-8 nodes): plain edges, joins, routers that read the state (a counter and the log's
length), `Send` fan-out, loops bounded by the counter, nodes reached by a `Send` and a plain edge in one step.
Every task appends "node:arg" to `log` ("-" for a plain task), adds to `counter`, and some set the plain field
`last` (two in one step: InvalidUpdateError). LangGraph's outcome of each graph is recorded in
data/langgraph_random.json; tests/graphs/test_langgraph_parity.py replays Baobab against it without LangGraph.

    python tests/graphs/langgraph_parity.py --record    # rerun LangGraph (the bench extra) and rewrite the JSON
    python tests/graphs/langgraph_parity.py --compare   # run Baobab against the JSON, group the differences

An outcome is the error's class name, or per super-step the sorted entries its tasks logged, the final counter
and `last`, and whether the final log lists the steps in order (order within a step may differ).
"""

import argparse
import itertools
import json
import operator
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

DATA = Path(__file__).with_name("data") / "langgraph_random.json"
COUNT = 240  # random graphs recorded
MAX_TASKS = 120  # a graph whose LangGraph run logs more is skipped (fan-out of fan-out grows fast)
START, END = "__start__", "__end__"  # the same strings in both frameworks

Choice = str | tuple[str, int]  # a target, or (node, arg): a Send
Outcome = dict[str, Any]


@dataclass(frozen=True)
class NodeDesc:
    """A node: it adds `inc` to the counter (a Send task adds inc + arg); `last` sets the plain field `last`."""

    name: str
    inc: int
    last: bool = False


@dataclass(frozen=True)
class RouteDesc:
    """A router on `source`, of a `kind` (see `choose`); `sends` are the nodes it may `Send` to."""

    source: str
    kind: str
    targets: tuple[str, ...]
    k: int
    sends: tuple[str, ...] = ()

    @property
    def declared(self) -> list[str]:
        """Every node it may run: the targets of `.route()` / the path map of `add_conditional_edges`."""
        return list(dict.fromkeys((*self.sends, *self.targets)))


@dataclass(frozen=True)
class Spec:
    """A graph both frameworks build: `edges` are (sources, target), a join when there are several sources."""

    id: str
    nodes: tuple[NodeDesc, ...]
    edges: tuple[tuple[tuple[str, ...], str], ...]
    routes: tuple[RouteDesc, ...]
    recursion_limit: int
    counter: int = 0

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Spec":
        """The spec back from `to_json`."""
        return cls(data["id"], tuple(NodeDesc(**n) for n in data["nodes"]),
                   tuple((tuple(s), t) for s, t in data["edges"]),
                   tuple(RouteDesc(r["source"], r["kind"], tuple(r["targets"]), r["k"], tuple(r["sends"]))
                         for r in data["routes"]),
                   data["recursion_limit"], data["counter"])

    def size(self) -> int:
        """Nodes plus edges plus routers: to pick the smallest example of a difference."""
        return len(self.nodes) + len(self.edges) + len(self.routes)


def choose(route: RouteDesc, counter: int, log: Sequence[str]) -> list[Choice]:
    """What `route` picks for a state, the same for both frameworks.

    if: targets[0] while counter < k, else targets[1] (a loop when targets[0] comes earlier);
    mod: one target by (counter + len(log)) mod its number; many: the targets whose bit is set in counter;
    send: 1 + (counter + len(log)) mod k Sends cycling over `sends`, args (counter + j) mod 5, plus `targets`;
    echo: a Send to each of `sends` with the arg the last log entry carries (counter mod 5 if none).
    """
    t, n = route.targets, len(log)
    if route.kind == "if":
        return [t[0] if counter < route.k else t[1]]
    if route.kind == "mod":
        return [t[(counter + n) % len(t)]]
    if route.kind == "many":
        return [x for i, x in enumerate(t) if (counter >> i) & 1]
    if route.kind == "send":
        count = 1 + (counter + n) % route.k
        sends: list[Choice] = [(route.sends[j % len(route.sends)], (counter + j) % 5) for j in range(count)]
        return sends + list(t)
    if route.kind == "echo":
        tail = log[-1].rpartition(":")[2] if log else "-"
        arg = int(tail) if tail.isdigit() else counter % 5
        return [(s, arg) for s in route.sends]
    raise ValueError(f"unknown router kind {route.kind!r}")


def returned(route: RouteDesc, chosen: list[Choice], send: Callable[[str, int], Any]) -> Any:
    """A router's return value in a framework: a name for `if` and `mod`, else a list, Sends made by `send`."""
    out = [send(c[0], c[1]) if isinstance(c, tuple) else c for c in chosen]
    return out[0] if route.kind in ("if", "mod") else out


def make_router(i: int, route: RouteDesc, view: Callable[[Any], tuple[int, list[str]]],
                send: Callable[[str, int], Any]) -> Callable[[Any], Any]:
    """`route` as a framework's router function, named route{i}: `view` reads (counter, log) from its state."""
    def router(state: Any) -> Any:
        return returned(route, choose(route, *view(state)), send)
    router.__name__ = f"route{i}"
    return router


def task_update(node: NodeDesc, arg: int | None) -> dict[str, Any]:
    """What a task of `node` writes: its log entry, its share of the counter, and maybe `last`."""
    update: dict[str, Any] = {"log": [f"{node.name}:{'-' if arg is None else arg}"],
                              "counter": node.inc + (arg or 0)}
    if node.last:
        update["last"] = node.name
    return update


# ---- the generator --------------------------------------------------------------------------------------------


def generate(seed: int) -> Spec:
    """A random graph in which every node is reachable from START and reaches END, and every loop is
    closed by an `if` router that leaves it once the counter (which every task raises) reaches its k."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(rng.randint(3, 8))]
    nodes = tuple(NodeDesc(n, rng.randint(1, 3), rng.random() < 0.08) for n in names)
    edges: list[tuple[tuple[str, ...], str]] = []
    routed: dict[str, list[str]] = {}  # forward targets of one router per source, its kind chosen at the end
    sent: dict[str, list[str]] = {}  # nodes a source Sends to
    loops: list[RouteDesc] = []
    for i, name in enumerate(names):  # one forward way in: an edge, a join, a router's target or a Send
        earlier, way = [START, *names[:i]], rng.random()
        if way < 0.15 and i >= 2:
            edges.append((tuple(sorted(rng.sample(names[:i], 3 if i >= 3 and rng.random() < 0.3 else 2))), name))
        elif way < 0.5:
            edges.append(((rng.choice(earlier),), name))
        elif way < 0.75:
            routed.setdefault(rng.choice(earlier), []).append(name)
        else:
            sent.setdefault(rng.choice(earlier), []).append(name)
    for i, name in enumerate(names):  # one forward way out (END from the last node), and maybe a loop back
        later, way = [*names[i + 1:], END], rng.random()
        if way < 0.5 or len(later) == 1:
            edges.append(((name,), rng.choice(later) if rng.random() < 0.6 else END))
        elif way < 0.8 or i == 0:
            routed.setdefault(name, []).append(rng.choice(later))
        else:  # a join with an earlier node
            edges.append((tuple(sorted((rng.choice(names[:i]), name))), rng.choice(later[:-1])))
        if rng.random() < 0.25:
            loops.append(RouteDesc(name, "if", (rng.choice(names[:i + 1]), rng.choice(later)), rng.randint(3, 14)))
    if len(names) >= 4 and rng.random() < 0.1:  # a second join into one node
        edges.append((tuple(sorted(rng.sample(names[:-1], 2))), names[-1]))
    routes: list[RouteDesc] = []
    for source in dict.fromkeys([*routed, *sent]):
        targets, sends = list(dict.fromkeys(routed.get(source, []))), list(dict.fromkeys(sent.get(source, [])))
        targets = [t for t in targets if t != END] + [END] * (END in targets)
        if sends and source != START and rng.random() < 0.15:  # Send on what the task itself logged
            routes.append(RouteDesc(source, "echo", (), 1, tuple(sends)))
            sends = []
        if sends:
            if rng.random() < 0.3:  # the same node by Send and by name in one step
                targets.append(sends[0])
            routes.append(RouteDesc(source, "send", tuple(dict.fromkeys(targets)), rng.randint(1, 4), tuple(sends)))
        elif targets:
            if END not in targets and rng.random() < 0.4:
                targets.append(END)
            routes.append(RouteDesc(source, rng.choice(["mod", "many"]) if len(targets) > 1 else "mod",
                                    tuple(targets), 1))
    for sources, target in list(edges):  # now and then a Send beside a plain edge to the same node
        if len(sources) == 1 and sources[0] != START and target != END and rng.random() < 0.08:
            routes.append(RouteDesc(sources[0], "send", (), rng.randint(1, 3), (target,)))
    return Spec(f"g{seed:03d}", nodes, tuple(dict.fromkeys(edges)), (*routes, *loops), rng.randint(3, 30),
                rng.randint(0, 3))


def examples() -> list[Spec]:
    """Hand-written graphs, one per rule where Baobab differed from LangGraph (see `Rules`).

    map-map: START Sends each item to `process`, whose router Sends the item its task logged on to `refine`;
    LangGraph routes each `process` task on its own view, so `refine` runs once per item.
    join-rounds: a loops once (a -> a) and also goes to b, c joins a and b; a ran in step 1, a and b in step 2:
    the join fires once (c in step 3); b again in step 3 alone must not fire it again.
    two-joins: edge([a, b], d) and edge([a, c], d); a and b run, c never: d runs after the first join.
    limit: a run of two steps under recursion_limit=2: LangGraph fails it, Baobab finishes it.
    """
    n = NodeDesc
    return [
        Spec("map-map", (n("process", 1), n("refine", 1)), (((("refine",), END)),),
             (RouteDesc(START, "send", (), 5, ("process",)), RouteDesc("process", "echo", (), 1, ("refine",))), 25, 2),
        Spec("join-rounds", (n("a", 1), n("b", 1), n("c", 1)),
             (((START,), "a"), (("a",), "b"), (("a", "b"), "c"), (("b",), END), (("c",), END)),
             (RouteDesc("a", "if", ("a", END), 2),), 25),
        Spec("two-joins", (n("a", 1), n("b", 1), n("c", 1), n("d", 1)),
             (((START,), "a"), ((START,), "b"), (("c",), END), (("a", "b"), "d"), (("a", "c"), "d"), (("d",), END)),
             (RouteDesc("a", "if", ("c", END), 0),), 25),
        Spec("limit", (n("a", 1), n("b", 1)), (((START,), "a"), (("a",), "b"), (("b",), END)), (), 2),
    ]


# ---- Baobab ---------------------------------------------------------------------------------------------------


class BaobabState(BaseModel):
    """The state of every graph on Baobab."""

    log: Annotated[list[str], operator.add] = []
    counter: Annotated[int, operator.add] = 0
    last: str = ""


def _node_fn(node: NodeDesc) -> Callable[[Any], dict[str, Any]]:
    def fn(x: Any) -> dict[str, Any]:  # the state (a model or a dict), or a Send's int
        return task_update(node, x if isinstance(x, int) else None)
    fn.__name__ = node.name
    return fn


def build_baobab(spec: Spec) -> Any:
    """The spec as a compiled Baobab app."""
    from baobab.graphs import Graph, Send

    g = Graph(BaobabState)
    for node in spec.nodes:
        g.node(node.name, _node_fn(node))
    for sources, target in spec.edges:
        g.edge(sources[0] if len(sources) == 1 else list(sources), target)
    for i, route in enumerate(spec.routes):
        g.route(route.source, make_router(i, route, lambda s: (s.counter, s.log), Send), route.declared)
    # LangGraph's limit counts its input step too; Baobab's counts node steps (N steps run under limit N)
    return g.compile(recursion_limit=spec.recursion_limit - 1)


def outcome(steps: dict[int, list[str]], log: list[str], counter: int, last: str) -> Outcome:
    """An outcome from each step's log entries and the final state."""
    numbers = sorted(steps) or [1]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), f"steps not consecutive: {numbers}"
    blocks = [sorted(steps[n]) for n in numbers if n in steps]
    cuts, ordered = 0, True
    for block in blocks:
        ordered = ordered and sorted(log[cuts:cuts + len(block)]) == block
        cuts += len(block)
    return {"error": None, "steps": blocks, "counter": counter, "last": last, "ordered": ordered and cuts == len(log)}


def run_baobab(spec: Spec) -> Outcome:
    """Baobab's outcome of the spec."""
    from baobab.graphs import NodeEnd, RunResult

    try:
        app = build_baobab(spec)
        steps: dict[int, list[str]] = {}
        final: Any = None
        for event in app.stream({"counter": spec.counter}):
            if isinstance(event, NodeEnd):
                steps.setdefault(event.step, []).extend(event.update.get("log", []))
            elif isinstance(event, RunResult):
                final = event.state
    except Exception as exc:
        return {"error": type(exc).__name__}
    return outcome(steps, list(final.log), final.counter, final.last)


# ---- LangGraph ------------------------------------------------------------------------------------------------


def build_langgraph(spec: Spec) -> Any:
    """The spec as a compiled LangGraph graph (needs the bench extra)."""
    from typing import TypedDict

    from langgraph.graph import StateGraph
    from langgraph.types import Send

    class LangGraphState(TypedDict, total=False):
        log: Annotated[list[str], operator.add]
        counter: Annotated[int, operator.add]
        last: str

    g: Any = StateGraph(LangGraphState)
    for node in spec.nodes:
        g.add_node(node.name, _node_fn(node))
    for sources, target in spec.edges:
        g.add_edge(sources[0] if len(sources) == 1 else list(sources), target)
    for i, route in enumerate(spec.routes):
        router = make_router(i, route, lambda s: (s.get("counter", 0), s.get("log", [])), Send)
        g.add_conditional_edges(route.source, router, route.declared)
    return g.compile()


def run_langgraph(spec: Spec) -> Outcome:
    """LangGraph's outcome of the spec, each task's step read from stream_mode="debug"."""
    graph = build_langgraph(spec)
    steps: dict[int, list[str]] = {}
    final: dict[str, Any] = {}
    try:
        for mode, event in graph.stream({"log": [], "counter": spec.counter},
                                        {"recursion_limit": spec.recursion_limit}, stream_mode=["debug", "values"]):
            if mode == "values":
                final = event
            elif event["type"] == "task_result":
                steps.setdefault(event["step"], []).extend(event["payload"]["result"].get("log", []))
    except Exception as exc:
        return {"error": type(exc).__name__}
    return outcome(steps, final.get("log", []), final.get("counter", 0), final.get("last", ""))


# ---- a model of both rules, to tell the differences apart --------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """The rules a run follows where LangGraph and Baobab (before issue 27) differ; LangGraph's are True.

    per_task_routing: a node's routers run once per task, each on the state before the step plus that task's
    writes; else once per node, on the state merged after the step (edges and joins count once per node).
    join_per_edge: each `edge([a, b], c)` has its own barrier; else a target has one, waiting for the sources
    of its last join, fed by the sources of all its joins.
    step_joins: a barrier takes the sources that ran in a step all at once and fires after the step; else it
    takes them node by node in task order and fires at once, so sources counted after it fired in that step
    start its next round.
    start_step_counts: the run fails once it has run recursion_limit steps, even with nothing left to run
    (LangGraph's loop checks the limit before it looks for tasks, its START counting as step 0); else only
    when it would run step recursion_limit + 1.
    """

    per_task_routing: bool = True
    join_per_edge: bool = True
    step_joins: bool = True
    start_step_counts: bool = True


LANGGRAPH = Rules()
BAOBAB_BEFORE_27 = Rules(False, False, False, False)
RULE_NAMES = {"per_task_routing": "per-task routing", "join_per_edge": "one join per target",
              "step_joins": "join rounds", "start_step_counts": "recursion limit"}


def simulate(spec: Spec, rules: Rules) -> Outcome:
    """The outcome by a plain model of the super-step loop under `rules`, next tasks in Baobab's order."""
    nodes = {n.name: n for n in spec.nodes}
    counter, log, last = spec.counter, list[str](), ""
    steps: dict[int, list[str]] = {}
    joins = [(frozenset(sources), target) for sources, target in spec.edges if len(sources) > 1]
    last_join = {target: sources for sources, target in joins}
    barriers: dict[Any, set[str]] = {}  # by join, or by target

    def barrier(sources: frozenset[str], target: str) -> tuple[Any, frozenset[str]]:
        return ((sources, target), sources) if rules.join_per_edge else (target, last_join[target])

    def follow(views: dict[str, list[tuple[int, list[str]]]]) -> list[tuple[str, int | None]]:
        """The next tasks after the nodes that ran, each with the views its routers see, in task order."""
        tasks: list[tuple[str, int | None]] = []

        def add(node: str) -> None:
            if node != END and (node, None) not in tasks:
                tasks.append((node, None))

        for source, node_views in views.items():  # edges and joins once per node: the same under both rules
            for edge_sources, target in spec.edges:
                if edge_sources == (source,):
                    add(target)
            for sources, target in joins:
                if source in sources:
                    key, needed = barrier(sources, target)
                    barriers.setdefault(key, set()).add(source)
                    if not rules.step_joins and barriers[key] >= needed:
                        del barriers[key]
                        add(target)
            for view, route in itertools.product(node_views, spec.routes):
                if route.source == source:
                    for c in choose(route, *view):
                        if isinstance(c, tuple):
                            tasks.append(c)
                        else:
                            add(c)
        if rules.step_joins:
            for sources, target in joins:
                key, needed = barrier(sources, target)
                if key in barriers and barriers[key] >= needed:
                    del barriers[key]
                    add(target)
        return tasks

    tasks = follow({START: [(counter, log)]})
    step = 0
    while tasks:
        if not rules.start_step_counts and step >= spec.recursion_limit:
            return {"error": "GraphRecursionError"}
        step += 1
        updates = [task_update(nodes[n], arg) for n, arg in tasks]
        if sum("last" in u for u in updates) > 1:
            return {"error": "InvalidUpdateError"}
        before = (counter, log)
        steps[step] = [u["log"][0] for u in updates]
        counter += sum(u["counter"] for u in updates)
        log = log + steps[step]
        last = next((u["last"] for u in updates if "last" in u), last)
        views: dict[str, list[tuple[int, list[str]]]] = {}
        for (n, _), u in zip(tasks, updates, strict=True):
            if rules.per_task_routing:
                views.setdefault(n, []).append((before[0] + u["counter"], before[1] + u["log"]))
            else:
                views[n] = [(counter, log)]
        tasks = follow(views)
        if rules.start_step_counts and step >= spec.recursion_limit:
            return {"error": "GraphRecursionError"}
    return outcome(steps, log, counter, last)


def classify(spec: Spec, expected: Outcome, got: Outcome) -> str:
    """Why Baobab's outcome differs from LangGraph's: the fewest of LangGraph's rules that, changed to
    Baobab's, reproduce it; "other" when no set does."""
    if simulate(spec, LANGGRAPH) != expected:
        return "the model does not reproduce LangGraph"
    for size in range(1, len(RULE_NAMES) + 1):
        for changed in itertools.combinations(RULE_NAMES, size):
            if simulate(spec, replace(LANGGRAPH, **dict.fromkeys(changed, False))) == got:
                return " + ".join(RULE_NAMES[c] for c in changed)
    return "other"


# ---- recording and comparing ----------------------------------------------------------------------------------


def load() -> list[dict[str, Any]]:
    """The recorded cases: id, seed (None for hand-written ones), spec and LangGraph's outcome."""
    cases: list[dict[str, Any]] = json.loads(DATA.read_text())["cases"]
    return cases


def record() -> None:
    """Run LangGraph on the examples and on COUNT random graphs, and write the JSON."""
    import importlib.metadata

    cases: list[dict[str, Any]] = [{"id": s.id, "seed": None, "spec": s.to_json(), "expect": run_langgraph(s)}
                                   for s in examples()]
    seed = 0
    while len(cases) < COUNT + len(examples()):
        spec = generate(seed)
        seed += 1
        expect = run_langgraph(spec)
        if expect["error"] is None and sum(map(len, expect["steps"])) > MAX_TASKS:
            continue
        assert expect.get("ordered", True), f"{spec.id}: LangGraph's log is not in step order"
        cases.append({"id": spec.id, "seed": seed - 1, "spec": spec.to_json(), "expect": expect})
    header = {"langgraph": importlib.metadata.version("langgraph"), "count": len(cases),
              "regenerate": "python tests/graphs/langgraph_parity.py --record"}
    DATA.parent.mkdir(exist_ok=True)
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases)
    DATA.write_text(json.dumps(header)[:-1] + ', "cases": [\n' + lines + "\n]}\n")
    errors = Counter(c["expect"]["error"] for c in cases)
    print(f"recorded {len(cases)} graphs (seeds 0..{seed - 1}) into {DATA}; outcomes: {dict(errors)}")


def compare() -> int:
    """Run Baobab on every recorded graph; print how many match and the differences by class."""
    cases = load()
    by_class: dict[str, list[tuple[Spec, Outcome, Outcome]]] = {}
    for case in cases:
        spec = Spec.from_json(case["spec"])
        got = run_baobab(spec)
        if got != case["expect"]:
            by_class.setdefault(classify(spec, case["expect"], got), []).append((spec, case["expect"], got))
    failing = [spec.id for diffs in by_class.values() for spec, _, _ in diffs]
    print(f"{len(cases) - len(failing)} of {len(cases)} graphs match LangGraph")
    for name, diffs in by_class.items():
        spec, expected, got = min(diffs, key=lambda d: d[0].size())
        print(f"\n{name}: {len(diffs)} graphs: {' '.join(s.id for s, _, _ in diffs)}")
        print(f"  smallest, {spec.id}: {json.dumps(spec.to_json())}\n  LangGraph: {expected}\n  Baobab:    {got}")
    per_task_only = replace(BAOBAB_BEFORE_27, per_task_routing=True)
    remain = [c["id"] for c in cases if simulate(Spec.from_json(c["spec"]), per_task_only) != c["expect"]]
    print(f"\nin the model, Baobab before issue 27 with per-task routing alone differs on {len(remain)}: "
          f"{' '.join(remain)}")
    if failing:
        print(f"\njust these: pytest tests/graphs/test_langgraph_parity.py -k '{' or '.join(failing)}'")
    return 1 if failing else 0


def main(argv: list[str] | None = None) -> int:
    """Command line: --record or --compare."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", action="store_true", help="run LangGraph and rewrite the JSON")
    group.add_argument("--compare", action="store_true", help="run Baobab against the JSON")
    args = parser.parse_args(argv)
    if args.record:
        record()
        return 0
    return compare()


if __name__ == "__main__":
    sys.exit(main())
