"""The base of every error Baobab raises: `except BaobabError` catches all of ours and nothing else.

Each error also derives from the builtin error it stands for (a bad config is a ValueError, a missing checkpoint a
LookupError), so code that catches those keeps working.

>>> from baobab.graphs import GraphError
>>> issubclass(GraphError, BaobabError) and issubclass(GraphError, ValueError)
True
"""

import importlib.util


class BaobabError(Exception):
    """An error raised by Baobab; the message names what failed and what was expected."""


class MissingExtraError(BaobabError, ModuleNotFoundError):
    """A feature whose packages are one of Baobab's optional extras, not installed here."""


def require_extra(extra: str, feature: str, *modules: str) -> None:
    """Raise MissingExtraError, naming the extra to install, unless every module in `modules` is installed.

    Looks the modules up without importing them, so the check costs nothing on the path that has them.

    >>> require_extra("remote", "remote models", "json")  # installed: no error
    >>> require_extra("remote", "remote models", "no_such_module")
    Traceback (most recent call last):
    ...
    baobab.errors.MissingExtraError: remote models: no_such_module is not installed; pip install 'baobab[remote]'
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise MissingExtraError(f"{feature}: {', '.join(missing)} {verb} not installed; pip install 'baobab[{extra}]'")
