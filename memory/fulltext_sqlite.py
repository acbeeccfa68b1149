"""Full-text search of notes in SQLite: an FTS5 table (`memory_fts`, one row a note, its rowid the note's id) ranked
by BM25, with queries cut to the terms rare enough to rank by, so that a query costs about the same at any size.

>>> with store.transaction() as conn:  # doctest: +SKIP
...     SqliteFullText().search(conn, ["zeppelin", "status"], 20)
[4012]
"""

from collections.abc import Sequence
from functools import lru_cache

from sqlalchemy import Connection, TextClause, text

from baobab.memory.fulltext import NoteText

KEYWORD_ROWS = 1000  # notes a keyword query may make SQLite score (BM25 costs ~2 us a note at 1M notes): see _match
_UNION_PARTS = 64  # query terms whose notes one UNION statement counts (SQLite allows 500 SELECTs in one)
# built once, like the memory's other statements: SQLAlchemy reuses their compiled form (see memory.py)
_CREATE = text("CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5(body)")
_INSERT = text("INSERT INTO memory_fts(rowid, body) VALUES (:id, :body)")
_DELETE = text("DELETE FROM memory_fts WHERE rowid = :id")
_BY_BM25 = text("SELECT rowid FROM memory_fts WHERE memory_fts MATCH :q ORDER BY bm25(memory_fts) LIMIT :n")
_NEWEST = text("SELECT rowid FROM memory_fts WHERE memory_fts MATCH :q ORDER BY rowid DESC LIMIT :n")


class SqliteFullText:
    """The notes' text in SQLite's FTS5 table `memory_fts` (content, keywords, tags and context as one body)."""

    def prepare(self, conn: Connection) -> None:
        """Make `memory_fts` if missing."""
        conn.execute(_CREATE)

    def write(self, conn: Connection, notes: Sequence[NoteText]) -> None:
        """One FTS5 row a note, all in one statement (bulk ingestion writes thousands)."""
        if notes:
            conn.execute(_INSERT, [{"id": n.id, "body": " ".join([n.content, *n.keywords, *n.tags, n.context])}
                                   for n in notes])

    def remove(self, conn: Connection, ids: Sequence[int]) -> None:
        """Delete these notes' FTS5 rows."""
        if ids:
            conn.execute(_DELETE, [{"id": note} for note in ids])

    def search(self, conn: Connection, terms: Sequence[str], n: int) -> list[int]:
        """The `n` best notes by BM25 over the rarest terms, or the newest holding the rarest when it is common."""
        match, by_bm25 = _match(conn, terms)
        return [row[0] for row in conn.execute(_BY_BM25 if by_bm25 else _NEWEST, {"q": match, "n": n})]


def _match(conn: Connection, terms: Sequence[str]) -> tuple[str, bool]:
    """An FTS5 query of the rarest terms, as many as hold KEYWORD_ROWS notes between them, and whether to rank
    by BM25: when even the rarest term is in more notes than that, the newest notes holding it come first.

    A term found in a large share of the notes barely moves BM25 (its idf is near 0), yet would make the query
    score every note that holds it, and BM25's idf alone reads all of them: at a million notes, a common word
    costs a tenth of a second. Counting stops at KEYWORD_ROWS + 1 notes a term, so a query costs about the same
    at any size.
    """
    quoted = ['"' + term.replace('"', "") + '"' for term in terms]
    held: dict[int, int] = {}
    for start in range(0, len(quoted), _UNION_PARTS):
        chunk = quoted[start:start + _UNION_PARTS]
        values = {"most": KEYWORD_ROWS + 1, **{f"t{i}": term for i, term in enumerate(chunk)}}
        held.update((start + int(i), int(n)) for i, n in conn.execute(_count_terms(len(chunk)), values))
    rarest = sorted(held, key=held.__getitem__)
    kept, rows = [quoted[rarest[0]]], held[rarest[0]]
    for i in rarest[1:]:
        rows += held[i]
        if rows > KEYWORD_ROWS:
            break
        kept.append(quoted[i])
    return " OR ".join(kept), held[rarest[0]] <= KEYWORD_ROWS


@lru_cache(maxsize=_UNION_PARTS)
def _count_terms(n: int) -> TextClause:
    """How many notes hold each of `n` terms (:t0 ...), counted up to :most."""
    return text(" UNION ALL ".join(f"SELECT {i}, (SELECT count(*) FROM (SELECT 1 FROM memory_fts WHERE memory_fts "
                                   f"MATCH :t{i} LIMIT :most))" for i in range(n)))
