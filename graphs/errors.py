"""The errors a graph raises, each naming what is wrong and where."""

from baobab.errors import BaobabError


class GraphError(BaobabError, ValueError):
    """The graph is not valid: raised by `Graph.compile()` and the builder, naming the node."""


class GraphRecursionError(BaobabError, RuntimeError):
    """A run took more super-steps than its `recursion_limit`."""


class CheckpointError(BaobabError, LookupError):
    """A thread or checkpoint is unknown, or the app has no checkpointer for what was asked."""


class NodeError(BaobabError, RuntimeError):
    """A node raised; the error is recorded in the thread and `resume(thread)` retries the step.

    The original exception is `__cause__`.
    """

    def __init__(self, node: str, step: int, thread: str, error: BaseException) -> None:
        super().__init__(
            f"node {node!r} failed at step {step} of thread {thread!r}: {type(error).__name__}: {error}"
        )
        self.node, self.step, self.thread = node, step, thread


class NodeInterrupt(BaobabError):
    """Raised by `RunContext.interrupt()` to pause the run until `resume(thread, value=...)`."""

    def __init__(self, payload: object = None) -> None:
        super().__init__(payload)
        self.payload = payload
