"""Full-text search of notes in PostgreSQL: a GIN index over the notes' own columns (`to_tsvector('english', ...)`),
ranked by `ts_rank`; the index follows the rows, so nothing is written beside them.

>>> with store.transaction() as conn:  # doctest: +SKIP
...     PostgresFullText().search(conn, ["zeppelin", "harbour"], 20)
[4012]
"""

from collections.abc import Sequence

from sqlalchemy import Connection, text

from baobab.memory.fulltext import NoteText

# a note's document, written as its GIN index is, so that the planner uses the index
_DOCUMENT = "to_tsvector('english'::regconfig, content || ' ' || keywords || ' ' || tags || ' ' || context)"
_TEXT_INDEX = text(f"CREATE INDEX IF NOT EXISTS ix_memory_notes_text ON memory_notes USING gin ({_DOCUMENT})")
BY_RANK = text(f"SELECT id FROM memory_notes WHERE {_DOCUMENT} @@ to_tsquery('english'::regconfig, :q) "
               f"ORDER BY ts_rank({_DOCUMENT}, to_tsquery('english'::regconfig, :q)) DESC LIMIT :n")


class PostgresFullText:
    """The notes' text as PostgreSQL's GIN index `ix_memory_notes_text` over `memory_notes` reads it."""

    def prepare(self, conn: Connection) -> None:
        """Make `ix_memory_notes_text` if missing."""
        conn.execute(_TEXT_INDEX)

    def write(self, conn: Connection, notes: Sequence[NoteText]) -> None:
        """Nothing: the index reads the notes' columns as they are written."""

    def remove(self, conn: Connection, ids: Sequence[int]) -> None:
        """Nothing: a deleted or rewritten row leaves the index with it."""

    def search(self, conn: Connection, terms: Sequence[str], n: int) -> list[int]:
        """The `n` notes best ranked by `ts_rank` among those holding any of `terms`."""
        wanted = " | ".join(t.replace("'", "") for t in terms)
        return [row[0] for row in conn.execute(BY_RANK, {"q": wanted, "n": n})]
