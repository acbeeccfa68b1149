"""The memory's backends, through their interfaces: both full-text indexes find the same notes for the same words,
each database gets its own backends once, and a memory whose vectors are in pgvector keeps none in its process.
(pgvector and the in-process index finding the same vectors: test_pgvector.py.)"""

from pathlib import Path
from typing import Any

import pytest
from bag_of_words import BagOfWords
from sqlalchemy import event

from baobab.memory import Memory, NotesError
from baobab.memory.backends import open_fulltext, open_vectors
from baobab.memory.fulltext_postgres import PostgresFullText
from baobab.memory.fulltext_sqlite import SqliteFullText
from baobab.memory.index import VectorIndex
from baobab.memory.vectors_pgvector import PgVectors
from baobab.memory.vectors_process import ProcessVectors
from baobab.store import Store

# each word in one form only: PostgreSQL's english configuration stems words, SQLite's FTS5 does not
NOTES = ["deploy failed disk full build server", "cache restart nightly backup", "paris capital france travel",
         "invoice payment overdue customer", "python test flaky timeout", "disk quota server cache"]
QUERIES = {"disk": {0, 5}, "cache zebra": {1, 5}, "paris": {2}, "invoice python": {3, 4}, "zebra": set()}


def found(memory: Memory, terms: list[str], ids: list[int]) -> list[int]:
    """What the memory's full-text backend returns for `terms`, as positions in NOTES."""
    with memory.store.transaction() as conn:
        return [ids.index(note) for note in memory.fulltext_backend.search(conn, terms, 20)]


def test_both_full_text_backends_find_the_same_notes(tmp_path: Path, postgres_db: str) -> None:
    answers = []
    for url, backend in [(f"sqlite:///{tmp_path / 'm.db'}", SqliteFullText), (postgres_db, PostgresFullText)]:
        with Memory(url, embedder=BagOfWords(), vectors="process") as memory:
            assert isinstance(memory.fulltext_backend, backend)
            ids = [n.id for n in memory.add_many(NOTES)]
            answers.append({query: found(memory, query.split(), ids) for query in QUERIES})
            assert found(memory, ["deploy", "disk"], ids)[0] == 0  # both terms beat one (BM25 and ts_rank alike)
            memory.update(ids[0], content="the harbour was calm", keywords=["harbour"])  # old words out
            assert found(memory, ["deploy"], ids) == [] and found(memory, ["harbour"], ids) == [0]
            memory.delete(ids[5])
            assert found(memory, ["quota"], ids) == []
    sqlite, postgres = answers
    assert {q: set(hits) for q, hits in sqlite.items()} == QUERIES
    assert {q: set(hits) for q, hits in postgres.items()} == QUERIES


def test_each_database_gets_its_own_backends(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    assert isinstance(open_fulltext(store), SqliteFullText)
    assert isinstance(open_vectors(store, 8, "auto"), ProcessVectors)
    assert isinstance(open_vectors(store, 8, "process"), ProcessVectors)
    with pytest.raises(NotesError, match="cannot keep memory vectors in pgvector: the store is sqlite"):
        open_vectors(store, 8, "pgvector")
    store.close()


def test_a_memory_on_pgvector_keeps_no_vector_in_its_process(pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening and refreshing read no embedding and build no in-process index; the notes are still found."""
    built: list[VectorIndex] = []
    make_index = VectorIndex.__init__

    def counted(index: VectorIndex, *args: Any, **options: Any) -> None:
        built.append(index)
        make_index(index, *args, **options)

    monkeypatch.setattr(VectorIndex, "__init__", counted)
    with Memory(pg, embedder=BagOfWords()) as writer:
        writer.add_many([f"{NOTES[i % len(NOTES)]} note{i}" for i in range(60)])
        assert built == []  # pgvector, picked by "auto"
        for where, indexes in [("pgvector", 0), ("process", 1)]:
            store, read = Store(pg), list[int]()  # rows of embeddings each statement returned

            def count_embeddings(conn: Any, cursor: Any, *args: Any, read: list[int] = read) -> None:
                if cursor.description and any(column.name == "embedding" for column in cursor.description):
                    read.append(cursor.rowcount)

            event.listen(store.engine, "after_cursor_execute", count_embeddings)
            built.clear()
            with Memory(store, embedder=BagOfWords(), vectors=where) as memory:
                added = writer.add(f"zebras and giraffes seen by {where}")  # by another process: found by a refresh
                writer.add_many([f"{NOTES[i % len(NOTES)]} later{i}" for i in range(9)])
                assert memory.search(f"giraffes {where}", k=1, mode="vector")[0].note.id == added.id
                assert isinstance(memory.vector_backend, PgVectors if where == "pgvector" else ProcessVectors)
            assert len(built) == indexes, where
            # the hit's own row is read whole to show it; the process index also read every note's embedding
            assert sum(read) == 1 if where == "pgvector" else sum(read) >= 70 + 1, (where, read)
