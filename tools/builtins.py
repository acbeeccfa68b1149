"""Built-in tools by the names YAML files use: each name maps to a configurable factory."""

import inspect
from collections.abc import Callable

from baobab.tools.calculator import calculator
from baobab.tools.files import files, list_files, read_file, write_file
from baobab.tools.http import http_get
from baobab.tools.python import python
from baobab.tools.tool import Tool

BUILTINS: dict[str, Callable[..., Tool | list[Tool]]] = {
    "python": python, "files": files, "read_file": read_file, "write_file": write_file, "list_files": list_files,
    "http_get": http_get, "calculator": calculator,
}


def builtin_tools(name: str, **options: object) -> list[Tool]:
    """The tools a built-in name stands for, made with `options`.

    >>> [t.name for t in builtin_tools("files", workspace="/tmp/ws")]
    ['read_file', 'write_file', 'list_files']
    >>> builtin_tools("shell")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown built-in tool 'shell'; known: python, files, read_file, ...
    """
    if name not in BUILTINS:
        raise ValueError(f"unknown built-in tool {name!r}; known: {', '.join(BUILTINS)}")
    factory = BUILTINS[name]
    accepted = inspect.signature(factory).parameters
    unknown = [option for option in options if option not in accepted]
    if unknown:
        raise TypeError(f"built-in tool {name!r} has no option {', '.join(map(repr, unknown))}; "
                        f"its options: {', '.join(accepted) or 'none'}")
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise TypeError(f"built-in tool {name!r}: {exc}") from None
    made = factory(**options)
    return made if isinstance(made, list) else [made]
