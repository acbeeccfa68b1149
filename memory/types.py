"""What a memory holds: notes, the typed links between them, earlier versions, and search hits."""

from typing import Any

from pydantic import BaseModel, Field

LINK_KINDS = ("supports", "contradicts", "elaborates", "same-topic")


class Link(BaseModel):
    """A typed link from one note to another, with the reason it was made; navigable from both ends."""

    source: int
    target: int
    kind: str
    reason: str = ""


class Note(BaseModel):
    """A Zettelkasten note: the content and what was written about it (keywords, tags, context).

    >>> Note(id=1, content="Paris is in France").version
    1
    """

    id: int
    content: str
    keywords: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    context: str = ""
    timestamp: float = 0.0
    metadata: dict[str, Any] = Field(default_factory=dict)
    scope: str = "global"
    version: int = 1
    links: list[Link] = Field(default_factory=list)  # all it made; the newest made to it (Memory.LINKS_TO_SHOWN)


class NoteVersion(BaseModel):
    """A note as it was before a change (evolution, update or revert), and why it changed."""

    note: int
    version: int
    content: str
    keywords: list[str]
    tags: list[str]
    context: str
    metadata: dict[str, Any]
    reason: str
    created: float


class Hit(BaseModel):
    """A search result: the note, its fused score and why it matched."""

    note: Note
    score: float
    why: list[str] = Field(default_factory=list)
