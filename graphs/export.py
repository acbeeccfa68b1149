"""Text drawings of a graph's structure: Mermaid and Graphviz DOT."""

from typing import TYPE_CHECKING, Any

from baobab.graphs.node import END, START

if TYPE_CHECKING:  # networkx is imported where a graph is first checked (graph.py): 0.2 s of every start
    import networkx as nx

_ARROWS = {"edge": "-->", "join": "==>", "route": "-.->"}
_DOT_STYLES = {"edge": "", "join": ' [style=bold]', "route": ' [style=dashed]'}


def to_mermaid(g: "nx.DiGraph[Any]") -> str:
    """Mermaid flowchart text: plain edges solid, joins thick, router targets dotted.

    >>> import networkx as nx
    >>> g = nx.DiGraph([(START, "a"), ("a", END)], kind="edge")
    >>> print(to_mermaid(g))
    flowchart TD
        n0([START])
        n1[a]
        n2([END])
        n0 --> n1
        n1 --> n2
    """
    ids = {node: f"n{i}" for i, node in enumerate(_ordered(g))}
    lines = ["flowchart TD"]
    for node, ident in ids.items():
        label = _label(node).replace('"', "#quot;")
        lines.append(f"    {ident}([{label}])" if node in (START, END) else f'    {ident}["{label}"]'
                     if not label.isidentifier() else f"    {ident}[{label}]")
    for a, b, kind in g.edges(data="kind", default="edge"):
        lines.append(f"    {ids[a]} {_ARROWS[kind]} {ids[b]}")
    return "\n".join(lines)


def to_dot(g: "nx.DiGraph[Any]", name: str = "graph") -> str:
    """Graphviz DOT text with the same conventions as `to_mermaid`."""
    lines = [f"digraph {_quote(name)} {{"]
    for node in _ordered(g):
        shape = ' [shape=oval]' if node in (START, END) else ' [shape=box]'
        lines.append(f"    {_quote(_label(node))}{shape};")
    for a, b, kind in g.edges(data="kind", default="edge"):
        lines.append(f"    {_quote(_label(a))} -> {_quote(_label(b))}{_DOT_STYLES[kind]};")
    lines.append("}")
    return "\n".join(lines)


def _ordered(g: "nx.DiGraph[Any]") -> list[str]:
    return [START, *(n for n in g.nodes if n not in (START, END)), END]


def _label(node: str) -> str:
    return {START: "START", END: "END"}.get(node, node)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
