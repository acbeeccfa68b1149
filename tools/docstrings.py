"""Read a function's docstring: its summary paragraph and the per-argument descriptions (Google or numpy style)."""

import inspect
import re

_GOOGLE_HEADERS = ("args:", "arguments:", "parameters:", "params:")
_GOOGLE_ARG = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ARG = re.compile(r"^(\w+)\s*(?::.*)?$")


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line.

    >>> summary('''Add two integers.
    ...
    ...     Args:
    ...         a: the first.''')
    'Add two integers.'
    """
    paragraph = inspect.cleandoc(doc or "").split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines()).strip()


def arg_descriptions(doc: str | None) -> dict[str, str]:
    """Descriptions of arguments from an ``Args:`` (Google) or ``Parameters`` + dashes (numpy) section.

    >>> arg_descriptions('''Add.
    ...
    ...     Args:
    ...         a (int): the first
    ...             summand.
    ...         b: the second.''')
    {'a': 'the first summand.', 'b': 'the second.'}
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    for i, line in enumerate(lines):
        if line.strip().lower() in _GOOGLE_HEADERS:
            return _section(lines[i + 1:], _GOOGLE_ARG, numpy=False)
        if line.strip().lower() == "parameters" and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            return _section(lines[i + 2:], _NUMPY_ARG, numpy=True)
    return {}


def _section(lines: list[str], pattern: re.Pattern[str], *, numpy: bool) -> dict[str, str]:
    """Parse argument entries until the section ends (a blank line or a dedent to the header's level)."""
    found: dict[str, list[str]] = {}
    indent: int | None = None
    current: list[str] | None = None
    for line in lines:
        if not line.strip():
            if numpy:
                continue  # numpy sections may hold blank lines between entries
            break
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent or (numpy and depth == indent and set(line.strip()) == {"-"}):
            break
        match = pattern.match(line) if depth == indent else None
        if match:
            current = found.setdefault(match.group(1), [])
            if not numpy and match.group(2):
                current.append(match.group(2).strip())
        elif current is not None:
            current.append(line.strip())
    return {name: " ".join(words) for name, words in found.items() if words}
