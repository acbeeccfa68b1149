"""Graph definition: compile-time validation names the node; Mermaid and DOT export."""

from typing import Annotated

import pytest
from pydantic import BaseModel

from baobab.graphs import END, START, Graph, GraphError, append


class S(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []


def noop(state: S) -> None:
    return None


def chain(*names: str) -> Graph:
    g = Graph(S)
    for name in names:
        g.node(name, noop)
    previous = START
    for name in names:
        g.edge(previous, name)
        previous = name
    return g.edge(previous, END)


def test_a_valid_graph_compiles() -> None:
    assert chain("a", "b").compile().run().status == "done"


@pytest.mark.parametrize(("build", "message"), [
    (lambda g: g.edge("a", "nope"), "unknown node 'nope'"),
    (lambda g: g.edge("ghost", "a"), "unknown node 'ghost'"),
    (lambda g: g.node("lonely", noop).edge("lonely", END), r"\['lonely'\] cannot be reached from START"),
    (lambda g: g.node("sink", noop).edge("a", "sink"), r"\['sink'\] have no path to END"),
    (lambda g: g.route("a", lambda s: END, []), "on 'a' has no targets"),
    (lambda g: g.route("a", lambda s: END, ["elsewhere"]), "unknown target 'elsewhere'"),
    (lambda g: g.route("nowhere", lambda s: END, [END]), "on unknown node 'nowhere'"),
    (lambda g: g.edge(END, "a"), "nothing leaves END"),
])
def test_invalid_graphs_are_refused_naming_the_node(build, message: str) -> None:  # type: ignore[no-untyped-def]
    g = chain("a")
    build(g)
    with pytest.raises(GraphError, match=message):
        g.compile()


def test_nothing_after_start() -> None:
    with pytest.raises(GraphError, match="nothing follows START"):
        Graph(S).node("a", noop).edge("a", END).compile()


def test_node_names_are_checked_when_added() -> None:
    g = chain("a")
    with pytest.raises(GraphError, match="already in the graph"):
        g.node("a", noop)
    with pytest.raises(GraphError, match="reserved"):
        g.node(END, noop)
    with pytest.raises(GraphError, match="needs a callable"):
        g.node("b", 42)  # type: ignore[arg-type]
    with pytest.raises(GraphError, match=r"writes to \['missing'\]"):
        g.node("c", noop, writes=["missing"])


def test_a_function_names_its_node() -> None:
    g = Graph(S).node(noop).edge(START, "noop").edge("noop", END)
    assert list(g.nodes) == ["noop"]


def test_interrupts_and_limits_are_checked() -> None:
    with pytest.raises(GraphError, match="interrupt on unknown node 'x'"):
        chain("a").compile(interrupt_before=["x"])
    with pytest.raises(GraphError, match="recursion_limit"):
        chain("a").compile(recursion_limit=0)


def test_parallel_writes_to_a_plain_field_are_caught_at_compile_time() -> None:
    g = Graph(S).node("a", noop, writes=["n"]).node("b", noop, writes=["n"]).node("c", noop, writes=["log"])
    g.edge(START, "a").edge(START, "b").edge(START, "c").edge(["a", "b", "c"], END)
    with pytest.raises(GraphError, match=r"'a' and 'b' can run in parallel after '__start__' and both write \['n'\]"):
        g.compile()


def test_a_routers_alternatives_may_write_the_same_field() -> None:
    g = Graph(S).node("a", noop, writes=["n"]).node("b", noop, writes=["n"])
    g.route(START, lambda s: "a", ["a", "b"]).edge("a", END).edge("b", END)
    g.compile()
    # appending from parallel nodes is what reducers are for
    g2 = Graph(S).node("a", noop, writes=["log"]).node("b", noop, writes=["log"])
    g2.edge(START, "a").edge(START, "b").edge("a", END).edge("b", END)
    g2.compile()


def test_state_must_be_a_pydantic_model() -> None:
    with pytest.raises(TypeError, match="pydantic BaseModel"):
        Graph(dict)  # type: ignore[arg-type]


def test_structure_is_a_networkx_digraph_with_edge_kinds() -> None:
    g = Graph(S).node("a", noop).node("b", noop).node("c", noop)
    g.edge(START, "a").edge(START, "b").edge(["a", "b"], "c").route("c", lambda s: END, ["a", END])
    kinds = {(u, v): k for u, v, k in g.structure().edges(data="kind")}
    assert kinds == {(START, "a"): "edge", (START, "b"): "edge", ("a", "c"): "join", ("b", "c"): "join",
                     ("c", "a"): "route", ("c", END): "route"}


def test_mermaid_and_dot_export() -> None:
    g = Graph(S).node("plan", noop).node("act", noop)
    g.edge(START, "plan").edge("plan", "act").route("act", lambda s: END, ["plan", END])
    assert g.to_mermaid().splitlines() == [
        "flowchart TD", "    n0([START])", "    n1[plan]", "    n2[act]", "    n3([END])",
        "    n0 --> n1", "    n1 --> n2", "    n2 -.-> n1", "    n2 -.-> n3"]
    dot = g.to_dot()
    assert dot.startswith('digraph "S" {') and '"act" -> "plan" [style=dashed];' in dot and dot.endswith("}")
