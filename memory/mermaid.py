"""A memory's graph as Mermaid text: notes as boxes, links as labelled arrows (paste into any Mermaid viewer)."""

from typing import Any

import networkx as nx


def mermaid(graph: "nx.DiGraph[Any]", width: int = 40) -> str:
    """Mermaid flowchart source for `Memory.graph()`.

    >>> g = nx.DiGraph(); g.add_node(1, content="a note"); g.add_node(2, content="b"); g.add_edge(2, 1, kind="supports")
    >>> print(mermaid(g))
    graph LR
      n1["1: a note"]
      n2["2: b"]
      n2 -->|supports| n1
    """
    lines = ["graph LR"]
    for note, data in graph.nodes(data=True):
        text = str(data.get("content", ""))
        text = (text[:width - 1] + "…" if len(text) > width else text).replace('"', "'")
        lines.append(f'  n{note}["{note}: {text}"]')
    lines += [f"  n{a} -->|{data.get('kind', '')}| n{b}" for a, b, data in graph.edges(data=True)]
    return "\n".join(lines)
