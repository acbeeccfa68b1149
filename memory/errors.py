"""The memory's error, named so that it never hides Python's own `MemoryError` (out of memory) where both are used.

>>> from baobab.memory import NotesError
>>> issubclass(NotesError, RuntimeError)
True
"""

from baobab.errors import BaobabError


class NotesError(BaobabError, RuntimeError):
    """A note is missing, or the memory cannot do what was asked (the message says which note and why)."""
