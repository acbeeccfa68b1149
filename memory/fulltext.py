"""Where a memory finds the notes that hold a query's words: the interface both databases' full-text indexes share
(`backends.open_fulltext` picks one when a memory opens). `fulltext_sqlite`: an FTS5 table ranked by BM25;
`fulltext_postgres`: a GIN index over the notes' columns ranked by `ts_rank`.

>>> with store.transaction() as conn:  # doctest: +SKIP
...     open_fulltext(store).search(conn, ["disk", "full"], 20)
[12, 7]
"""

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from sqlalchemy import Connection


class NoteText(NamedTuple):
    """What of a note the full-text index holds."""

    id: int
    content: str
    keywords: Sequence[str]
    tags: Sequence[str]
    context: str


class FullTextBackend(Protocol):
    """The notes' words, indexed in the database, each change in the transaction that makes it."""

    def prepare(self, conn: Connection) -> None:
        """Make the index if the database has none yet (when a memory opens)."""
        ...

    def write(self, conn: Connection, notes: Sequence[NoteText]) -> None:
        """Index the text of notes just inserted, or of notes whose old text `remove` took out."""
        ...

    def remove(self, conn: Connection, ids: Sequence[int]) -> None:
        """Take the text of these notes out of the index (they are deleted, or about to be written again)."""
        ...

    def search(self, conn: Connection, terms: Sequence[str], n: int) -> list[int]:
        """Up to `n` ids of notes holding any of `terms` (distinct, lower-case words), best first."""
        ...
