"""The search tree every strategy shares: nodes with action, state, observation, value and visits."""

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Node:
    """One state reached by one action from its parent; `value` is the mean of the returns backed up to it.

    A return counts this node's own reward and the rewards after it (estimated by the evaluator where
    the episode did not end). `cost` is the model calls spent creating and evaluating the node;
    `expanded` says its children were proposed (`children` may still be empty: a dead end).
    `reflection` is a lesson written on a failed node (a LATS reflection, a LEAFE experience note);
    `failed_at`, the depth on its path of the step where the reflection says the failure began (1: the first
    action), when it named one; `critique` is what a judging evaluator wrote with its value (SWE-Search).

    >>> Node(id=0, parent=None, action=None, state=[]).visits
    0
    """

    id: int
    parent: int | None
    action: Any
    state: Any
    observation: str = ""
    reward: float = 0.0
    done: bool = False
    feedback: str = ""
    prior: float = 1.0
    depth: int = 0
    value: float = 0.0
    visits: int = 0
    reflection: str = ""
    failed_at: int | None = None
    critique: str = ""
    cost: int = 0
    expanded: bool = False
    children: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The node as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Node":
        """A node from `to_dict()` data (unknown keys are an error, missing ones take their defaults)."""
        return cls(**data)


class Tree:
    """Nodes by id, from root 0; every change goes through a method so that `dirty` lists what to persist.

    >>> tree = Tree([0])
    >>> child = tree.add(tree.root, action=1, state=[0, 1], reward=1.0, done=True)
    >>> [n.id for n in tree.best_trajectory()]
    [0, 1]
    """

    def __init__(self, root_state: Any = None, nodes: list[Node] | None = None) -> None:
        self.nodes: list[Node] = nodes if nodes is not None else [Node(0, None, None, root_state)]
        self.recalled: list[str] = []  # lessons of earlier episodes, from an attached Memory
        self.dirty: set[int] = set() if nodes is not None else {0}
        self.expansions = sum(node.expanded for node in self.nodes)  # the unit of `max_expansions`

    @property
    def root(self) -> Node:
        """The node of the initial state."""
        return self.nodes[0]

    def add(self, parent: Node, *, action: Any, state: Any, observation: str = "", reward: float = 0.0,
            done: bool = False, feedback: str = "", prior: float = 1.0, cost: int = 0) -> Node:
        """A new child of `parent`."""
        node = Node(len(self.nodes), parent.id, action, state, observation, reward, done, feedback, prior,
                    parent.depth + 1, cost=cost)
        self.nodes.append(node)
        parent.children.append(node.id)
        self.dirty.update((node.id, parent.id))
        return node

    def mark_expanded(self, node: Node) -> None:
        """Record that `node`'s children were proposed."""
        self.expansions += not node.expanded
        node.expanded = True
        self.dirty.add(node.id)

    def record(self, node: Node, value: float, cost: int = 0) -> None:
        """Back up one return to `node`: one more visit, the mean moves towards `value`."""
        node.visits += 1
        node.value += (value - node.value) / node.visits
        node.cost += cost
        self.dirty.add(node.id)

    def annotate(self, node: Node, reflection: str, cost: int = 0, failed_at: int | None = None) -> None:
        """Write a lesson on `node` (its model calls add to its cost), with the depth of the step it blames.

        A step that is not on `node`'s path (below the root, at most `node`'s depth) is no step: None.
        """
        node.reflection = reflection
        node.failed_at = failed_at if failed_at is not None and 1 <= failed_at <= node.depth else None
        node.cost += cost
        self.dirty.add(node.id)

    def blamed(self, node: Node) -> Node:
        """The node a lesson on `node` is about: the step it blames on `node`'s path, else `node` itself.

        >>> tree = Tree([]); a = tree.add(tree.root, action=0, state=[0]); b = tree.add(a, action=1, state=[0, 1])
        >>> tree.annotate(b, "the first step was wrong", failed_at=1); tree.blamed(b).id
        1
        """
        return node if node.failed_at is None else self.path(node)[node.failed_at]

    def scope(self, node: Node) -> list[Node]:
        """The nodes whose lessons bear on what is sampled from `node`, newest first: those about a node of its
        path (an ancestor's step failed) or about an alternative to one (a sibling of a node of the path).

        A failure in another branch below a sibling is that branch's business, not `node`'s.

        >>> tree = Tree([]); a, b = (tree.add(tree.root, action=i, state=[i], done=True) for i in (0, 1))
        >>> tree.annotate(a, "0 failed"); [n.id for n in tree.scope(b)]
        [1]
        """
        on_path = {n.id for n in self.path(node)}
        about = ((n, self.blamed(n)) for n in reversed(self.nodes) if n.reflection)
        return [n for n, step in about if step.id in on_path or step.parent in on_path]

    def lessons(self) -> list[str]:
        """Lessons recalled from earlier episodes, then the reflections written so far, oldest node first: what
        later expansions and a Memory learn from."""
        return [*self.recalled, *self.reflections()]

    def reflections(self) -> list[str]:
        """The reflections and experience notes written in this search, oldest node first."""
        return [n.reflection for n in self.nodes if n.reflection]

    def children(self, node: Node) -> list[Node]:
        """`node`'s children, in the order they were proposed."""
        return [self.nodes[i] for i in node.children]

    def path(self, node: Node) -> list[Node]:
        """The nodes from the root to `node`."""
        path = [node]
        while path[-1].parent is not None:
            path.append(self.nodes[path[-1].parent])
        return path[::-1]

    def returns(self, node: Node) -> float:
        """The rewards collected from the root to `node`."""
        return sum(n.reward for n in self.path(node))

    def score(self, node: Node) -> float:
        """The estimated total return of a trajectory through `node`: rewards before it plus its value."""
        if not node.visits:
            return self.returns(node)
        return self.returns(node) - node.reward + node.value

    def ranked(self, nodes: list[Node]) -> list[Node]:
        """`nodes` best first: by score, then prior, then age."""
        return sorted(nodes, key=lambda n: (-self.score(n), -n.prior, n.id))

    def best_trajectory(self) -> list[Node]:
        """The path to the best terminal node (by total reward, then value), else to the best-scored node."""
        ended = [n for n in self.nodes if n.done]
        if ended:
            best = max(ended, key=lambda n: (self.returns(n), n.value, -n.id))
        else:
            best = max(self.nodes, key=lambda n: (self.score(n), n.depth, -n.id))
        return self.path(best)

    def to_json(self) -> str:
        """The tree as JSON: `{"nodes": [...]}`, each node as `Node.to_dict()`."""
        return json.dumps({"nodes": [n.to_dict() for n in self.nodes]})

    @classmethod
    def from_json(cls, text: str) -> "Tree":
        """The tree that `to_json()` wrote."""
        return cls.from_nodes([Node.from_dict(d) for d in json.loads(text)["nodes"]])

    @classmethod
    def from_nodes(cls, nodes: list[Node]) -> "Tree":
        """A tree of `nodes` (ids 0..n-1, in any order); nothing is dirty."""
        ordered = sorted(nodes, key=lambda n: n.id)
        if [n.id for n in ordered] != list(range(len(ordered))) or not ordered:
            raise ValueError("a search tree needs nodes numbered 0..n-1 with the root at 0")
        return cls(nodes=ordered)

