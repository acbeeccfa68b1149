"""What a search tree shows about each node: a success below it, a failure seen below it, how often it won.

A success is an ended node whose total reward reaches `success`; a failure is an ended node below it, or a dead
end (expanded, no children). A node "holds no success" when none was found in its subtree.
"""

from baobab.search.tree import Node, Tree

INF = 1 << 30  # no success below


class Outcomes:
    """The successes and failures under every node of `tree`, counted in one bottom-up pass.

    >>> tree = Tree([]); a = tree.add(tree.root, action=0, state=[0], done=True)
    >>> b = tree.add(tree.root, action=1, state=[1], reward=1.0, done=True)
    >>> o = Outcomes(tree); sorted(o.won), o.rate(tree.root)
    ([0, 2], 0.5)
    """

    def __init__(self, tree: Tree, success: float = 1.0) -> None:
        self.tree, self.success = tree, success
        self.wins = [0] * len(tree.nodes)  # successes in each subtree
        self.ends = [0] * len(tree.nodes)  # ended nodes and dead ends in each subtree
        self.nearest = [INF] * len(tree.nodes)  # the depth of the shallowest success in each subtree
        for node in reversed(tree.nodes):  # children have larger ids than their parents
            if self.is_success(node):
                self.wins[node.id] += 1
                self.nearest[node.id] = node.depth
            if node.done or (node.expanded and not node.children):
                self.ends[node.id] += 1
            if node.parent is not None:
                self.wins[node.parent] += self.wins[node.id]
                self.ends[node.parent] += self.ends[node.id]
                self.nearest[node.parent] = min(self.nearest[node.parent], self.nearest[node.id])
        self.won = {n.id for n in tree.nodes if self.wins[n.id]}

    def is_success(self, node: Node) -> bool:
        """Whether `node` ended with a total reward of at least `success`."""
        return node.done and self.tree.returns(node) >= self.success

    def failed(self, node: Node) -> bool:
        """Whether `node` holds no success and a failure was seen at or below it (not merely left unexplored)."""
        return node.id not in self.won and self.ends[node.id] > 0

    def rate(self, node: Node) -> float | None:
        """The share of the ends seen at or below `node` that were successes (None: none seen)."""
        return self.wins[node.id] / self.ends[node.id] if self.ends[node.id] else None

    def successes(self) -> list[Node]:
        """The successful ended nodes, oldest first."""
        return [n for n in self.tree.nodes if self.is_success(n)]

    def first_failures(self) -> list[Node]:
        """The first failing steps: failed nodes whose parent holds a success (an alternative to them won), oldest
        first. Everything below one fails too, so it is where a recovery trace splices (Agent-R)."""
        return [n for n in self.tree.nodes if n.parent is not None and self.failed(n) and n.parent in self.won]

    def best(self, nodes: list[Node]) -> Node:
        """Of `nodes` that hold a success, the one with the shortest way to it, then the highest value, then oldest."""
        return min((n for n in nodes if n.id in self.won), key=lambda n: (self.nearest[n.id], -n.value, n.id))

    def to_success(self, node: Node) -> list[Node]:
        """The path from `node` down to its nearest success (the oldest among the nearest), `node` first."""
        path = [node]
        while not self.is_success(path[-1]):
            below = [self.tree.nodes[i] for i in path[-1].children if i in self.won]
            path.append(min(below, key=lambda n: (self.nearest[n.id], n.id)))
        return path
