"""Memory vectors in PostgreSQL (pgvector): found in the database as the in-process index finds them, written with
their notes, filled in for notes written without them, and refused with a reason where pgvector cannot serve."""

from pathlib import Path

import numpy as np
import pytest
from bag_of_words import BagOfWords
from sqlalchemy import text

from baobab.memory import Memory, NotesError
from baobab.memory.fulltext_postgres import BY_RANK
from baobab.memory.vectors_pgvector import PgVectors
from baobab.memory.vectors_process import ProcessVectors
from baobab.store import Store

TOPICS = ["deploy disk full build server", "cache restarts nightly backup", "paris capital france travel",
          "invoice payment overdue customer", "python test flaky timeout ci"]


def notes(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [f"{TOPICS[i % len(TOPICS)]} {' '.join(rng.choice(TOPICS[(i * 7) % 5].split(), 2))} note{i}"
            for i in range(n)]


def test_pgvector_finds_what_the_in_process_index_finds(pg: str) -> None:
    with Memory(pg, embedder=BagOfWords()) as in_db, Memory(pg, embedder=BagOfWords(), vectors="process") as here:
        in_db_vectors, here_vectors = in_db.vector_backend, here.vector_backend
        assert isinstance(in_db_vectors, PgVectors)  # auto picked pgvector on PostgreSQL
        assert isinstance(here_vectors, ProcessVectors)
        written = in_db.add_many(notes(300))
        assert len(here.notes(n.id for n in written)) == 300
        here.search("anything", k=1)  # a search loads the notes written since into its in-process index
        for query in ["disk full on the build server", "capital of france", "flaky ci timeout", "note17"]:
            vector = BagOfWords().embed([query])[0]
            found, expected = in_db_vectors.search(vector, 8), here_vectors.search(vector, 8)
            assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-5), query
            exact = dict(here_vectors.search(vector, 400))  # ties may be broken by other ids, each with its own score
            assert all(abs(exact[i] - s) < 1e-5 for i, s in found), query
            assert in_db.search(query, k=1, mode="vector")[0].why == [f"vector {found[0][1]:.2f} (rank 1)"]
        # links were made in the database by similarity, as the in-process index makes them
        assert written[5].links and all(x.kind == "similar" for x in written[5].links)
        tagged = in_db.add("disk full again on the build server", tags=["ops"])
        assert [h.note.id for h in in_db.search("disk", k=3, mode="vector", filters={"tags": ["ops"]})] == [tagged.id]
        changed = in_db.update(tagged.id, content="zebras and giraffes on the savanna")  # re-embedded in the row
        assert in_db.search("zebras giraffes", k=1, mode="vector")[0].note.id == changed.id
        in_db.delete(changed.id)
        assert changed.id not in {h.note.id for h in in_db.search("zebras giraffes", k=20, mode="vector")}


def test_notes_written_without_pgvector_get_their_vectors_when_a_memory_opens_it(pg: str) -> None:
    with Memory(pg, embedder=BagOfWords(), vectors="process") as before:
        old = before.add_many(["the deploy failed: disk full", "paris is the capital of france"])
    with Store(pg).transaction() as conn:  # no vector column yet: nothing used pgvector
        assert conn.execute(text("SELECT count(*) FROM pg_attribute WHERE attrelid = 'memory_notes'::regclass "
                                 "AND attname = 'vec'")).scalar_one() == 0
    with Memory(pg, embedder=BagOfWords(), vectors="pgvector") as after:
        assert after.search("capital of france", k=1, mode="vector")[0].note.id == old[1].id
    with Store(pg).transaction() as conn:
        assert conn.execute(text("SELECT count(*) FROM memory_notes WHERE vec IS NULL")).scalar_one() == 0


class Wider(BagOfWords):
    dim = 300


def test_pgvector_is_refused_with_the_reason(pg: str, tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path / 'm.db'}"
    Memory(pg, embedder=BagOfWords(), vectors="pgvector").close()  # the column is vector(256)
    with pytest.raises(NotesError, match=r"memory_notes.vec is vector\(256\), but the embedder makes 300-d"):
        Memory(pg, embedder=Wider(), vectors="pgvector")
    with pytest.raises(NotesError, match="cannot keep memory vectors in pgvector: the store is sqlite"):
        Memory(sqlite, embedder=BagOfWords(), vectors="pgvector")
    with pytest.raises(NotesError, match="vectors must be auto, pgvector or process, got 'faiss'"):
        Memory(sqlite, embedder=BagOfWords(), vectors="faiss")  # type: ignore[arg-type]


def test_keyword_search_on_postgresql_is_served_by_a_text_index(postgres_db: str) -> None:
    """The keyword query's document is the GIN index's expression, so PostgreSQL can answer it from the index
    rather than parse every note's text; the best match still comes first."""
    with Memory(postgres_db, embedder=BagOfWords(), vectors="process") as memory:
        memory.add_many(notes(200))
        wanted = memory.add("the zeppelin landed in the harbour at dawn")
        assert memory.search("zeppelin harbour", k=3, mode="keyword")[0].note.id == wanted.id
        with memory.store.transaction() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # a 201-row table is cheaper to scan: ask if it can
            plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + str(BY_RANK)),
                                                            {"q": "zeppelin | harbour", "n": 12}))
        assert "ix_memory_notes_text" in plan, plan
