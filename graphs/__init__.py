"""Agent graphs: nodes over a pydantic state, edges, joins, routers, and durable checkpointed runs.

>>> from typing import Annotated
>>> from pydantic import BaseModel
>>> from baobab.graphs import END, START, Graph, append
>>> class State(BaseModel):
...     log: Annotated[list[str], append] = []
>>> g = Graph(State).node("hello", lambda s: {"log": ["hi"]}).edge(START, "hello").edge("hello", END)
>>> g.compile().run().state.log
['hi']
"""

from baobab.graphs.branches import Branch
from baobab.graphs.checkpoint import Checkpointer, CheckpointInfo, ThreadInfo
from baobab.graphs.errors import CheckpointError, GraphError, GraphRecursionError, NodeError
from baobab.graphs.events import (
    Checkpoint,
    Event,
    Interrupt,
    NodeEnd,
    NodeFailed,
    NodeQueued,
    NodeStart,
    Routed,
    RunResult,
    Token,
)
from baobab.graphs.fingerprint import StateSchemaError
from baobab.graphs.graph import Graph, Route
from baobab.graphs.node import END, START, Failure, Retry, RunContext, Send
from baobab.graphs.routing import Decision, RouteContext, Router
from baobab.graphs.runtime import App
from baobab.graphs.state import InvalidUpdateError, append, merge
from baobab.graphs.tokens import token_sink

__all__ = [
    "END", "START", "App", "Branch", "Checkpoint", "CheckpointError", "CheckpointInfo", "Checkpointer", "Decision",
    "Event", "Failure", "Graph", "GraphError", "GraphRecursionError", "Interrupt", "InvalidUpdateError", "NodeEnd",
    "NodeError", "NodeFailed", "NodeQueued", "NodeStart", "Retry", "Route", "RouteContext", "Routed", "Router",
    "RunContext", "RunResult", "Send", "StateSchemaError", "ThreadInfo", "Token", "append", "merge", "token_sink",
]
