"""Search over environments: one tree type; greedy, best-of-n, beam, ToT BFS/DFS, MCTS, lookahead, backtracking.

Models plug in as proposer, judge, reflector and chooser (`llm_hooks`); budgets; resumable runs.

>>> from baobab.search import DeceptiveTree, search
>>> env = DeceptiveTree(depth=4, branching=3)
>>> search(env, "greedy").reward  # a step-by-step policy takes the trap
0.5
>>> result = search(env, "mcts", budget={"max_expansions": 40})
>>> result.reward, [n.action for n in result.best[1:]] == env.optimum
(1.0, True)
"""

from baobab.search.budget import SearchBudget, SearchStopped
from baobab.search.context import SearchContext, lessons
from baobab.search.environment import Environment, Transition
from baobab.search.graph_env import GraphEnvironment
from baobab.search.hooks import (
    Chooser,
    Evaluator,
    Proposer,
    Reflector,
    feedback_note,
    rollout_evaluator,
    uniform_proposer,
)
from baobab.search.llm_hooks import (
    Judgement,
    legal_actions_proposer,
    llm_chooser,
    llm_judge,
    llm_proposer,
    llm_reflector,
)
from baobab.search.run import COMMON_OPTIONS, STRATEGIES, SearchResult, asearch, search
from baobab.search.toys import DeceptiveTree
from baobab.search.tree import Node, Tree

__all__ = [
    "COMMON_OPTIONS", "STRATEGIES", "Chooser", "DeceptiveTree", "Environment", "Evaluator", "GraphEnvironment",
    "Judgement", "Node", "Proposer", "Reflector", "SearchBudget", "SearchContext", "SearchResult", "SearchStopped",
    "Transition", "Tree", "asearch", "feedback_note", "legal_actions_proposer", "lessons", "llm_chooser", "llm_judge",
    "llm_proposer", "llm_reflector", "rollout_evaluator", "search", "uniform_proposer",
]
