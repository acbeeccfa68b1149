"""The base of every error Baobab raises: `except BaobabError` catches all of ours and nothing else.

Each error also derives from the builtin error it stands for (a bad config is a ValueError, a missing checkpoint a
LookupError), so code that catches those keeps working.

>>> from baobab.graphs import GraphError
>>> issubclass(GraphError, BaobabError) and issubclass(GraphError, ValueError)
True
"""


class BaobabError(Exception):
    """An error raised by Baobab; the message names what failed and what was expected."""
