"""A griffe extension (mkdocs.yml names it for mkdocstrings): the doctest examples in Baobab's docstrings are
shown as Python code blocks, not read as Markdown (where `['a', 'b']` would be a link)."""

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)>>> .*?(?=\n[ \t]*\n|\Z)", re.MULTILINE | re.DOTALL)


def fence_doctests(text: str) -> str:
    """Each run of doctest lines (from `>>>` to the next blank line) in a ```python fence.

    >>> fence_doctests("Adds.\\n\\n>>> 1 + 1\\n2")
    'Adds.\\n\\n```python\\n>>> 1 + 1\\n2\\n```'
    """
    def fenced(match: re.Match[str]) -> str:
        indent = match.group("indent")
        return f"{indent}```python\n{match.group(0)}\n{indent}```"

    return _EXAMPLE.sub(fenced, text)


class FencedDoctests(griffe.Extension):
    """Fences the examples of every object's docstring once it is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring's examples; objects without a docstring are left alone."""
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
