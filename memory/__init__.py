"""Zettelkasten memory (A-MEM): notes that link and evolve, durable in the store, found by hybrid retrieval.

>>> from baobab.memory import Memory
>>> mem = Memory("sqlite:///notes.db", llm=None)  # cheap mode: no model, links by similarity  # doctest: +SKIP
"""

from baobab.memory.embedders import DEFAULT_EMBEDDER, Embedder, LiteLLMEmbedder, LocalEmbedder, load_embedder
from baobab.memory.errors import NotesError
from baobab.memory.memory import Memory
from baobab.memory.types import LINK_KINDS, Hit, Link, Note, NoteVersion

__all__ = [
           "DEFAULT_EMBEDDER",
           "LINK_KINDS",
           "Embedder",
           "Hit",
           "Link",
           "LiteLLMEmbedder",
           "LocalEmbedder",
           "Memory",
           "Note",
           "NoteVersion",
           "NotesError",
           "load_embedder",
]
