"""Search over environments: one tree type; greedy, best-of-n, beam, ToT BFS/DFS and MCTS; budgets; resumable runs.

>>> from baobab.search import DeceptiveTree, search
>>> env = DeceptiveTree(depth=4, branching=3)
>>> search(env, "greedy").reward  # a step-by-step policy takes the trap
0.5
>>> result = search(env, "mcts", budget={"max_expansions": 40})
>>> result.reward, [n.action for n in result.best[1:]] == env.optimum
(1.0, True)
"""

from baobab.search.budget import SearchBudget, SearchStopped
from baobab.search.context import SearchContext
from baobab.search.environment import Environment, Transition
from baobab.search.hooks import Evaluator, Proposer, rollout_evaluator, uniform_proposer
from baobab.search.run import COMMON_OPTIONS, STRATEGIES, SearchResult, asearch, search
from baobab.search.toys import DeceptiveTree
from baobab.search.tree import Node, Tree

__all__ = [
    "COMMON_OPTIONS", "STRATEGIES", "DeceptiveTree", "Environment", "Evaluator", "Node", "Proposer",
    "SearchBudget", "SearchContext", "SearchResult", "SearchStopped", "Transition", "Tree", "asearch",
    "rollout_evaluator", "search", "uniform_proposer",
]
