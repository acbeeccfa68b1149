"""A Zettelkasten memory (A-MEM): notes that a model describes, links to their neighbours and evolves, stored
durably through `store/` and found by hybrid retrieval (vectors + full-text keywords, fused, then links).

>>> mem = Memory("sqlite:///notes.db", llm="local:smollm2-135m")  # doctest: +SKIP
>>> note = mem.add("The deploy failed because the disk was full")  # doctest: +SKIP
>>> [hit.note.content for hit in mem.search("why did the deploy fail", k=3, hops=1)]  # doctest: +SKIP
"""

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import networkx as nx
import numpy as np
from sqlalchemy import (
    BindParameter,
    Connection,
    Executable,
    bindparam,
    delete,
    insert,
    or_,
    select,
    union_all,
    update,
)

from baobab.aio import run_sync
from baobab.engine import LLM, load_llm
from baobab.memory import writer
from baobab.memory.backends import VectorsWhere, open_fulltext, open_vectors
from baobab.memory.embedders import DEFAULT_EMBEDDER, Embedder, aembed, load_embedder
from baobab.memory.errors import NotesError
from baobab.memory.fulltext import NoteText
from baobab.memory.keywords import keywords as extract_keywords
from baobab.memory.keywords import words
from baobab.memory.types import Hit, Link, Note, NoteVersion
from baobab.store import Store
from baobab.store.schema import memory_links, memory_notes, memory_versions

log = logging.getLogger(__name__)
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)
HOP_DECAY = 0.5  # a note reached over a link scores this share of the note it was reached from
LINKS_TO_SHOWN = 32  # links made to a note that reading it returns, newest first: a note can draw thousands


# Statements of the search path, built once: SQLAlchemy then reuses their compiled form, and a search leaves no
# expression objects behind (their reference cycles, promoted while a search is in flight, make the garbage
# collector's full passes come often: each costs tens of milliseconds in a large process)
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
_NOTES_BY_ID = select(memory_notes).where(memory_notes.c.id.in_(_IDS))
_LINKS_FROM = select(memory_links).where(memory_links.c.source.in_(_IDS))
_UNION_PARTS = 64  # notes whose links one UNION statement reads (SQLite allows 500 SELECTs in one)


class Memory:
    """Notes in a store, written by `scope` (global, team:NAME or agent:NAME) and read from `scope` and `reads`.

    `llm=None` is the cheap mode: keywords by frequency, links to neighbours at least `link_threshold` similar,
    no evolution. With a model, it writes each note's keywords, tags and context, picks the links among the
    `neighbours` nearest notes and evolves the linked ones (their previous versions are kept).
    `vectors`: where nearest notes are found: "pgvector" (in PostgreSQL, an HNSW index every process shares),
    "process" (an index in this process, loaded from the store), or "auto" (pgvector when the store is
    PostgreSQL with the `vector` extension available, else the process). The backends that serve the vectors
    (`vector_backend`) and the full text (`fulltext_backend`) are chosen here, once (`backends`).
    """

    def __init__(self, url: str | Store | None = None, *, llm: str | LLM | None = None,
                 embedder: str | Embedder | None = DEFAULT_EMBEDDER, scope: str = "global",
                 reads: Sequence[str] = ("global",), link_threshold: float = 0.6, neighbours: int = 5,
                 vectors: VectorsWhere = "auto") -> None:
        self.store = url if isinstance(url, Store) else Store(url)
        self.llm = load_llm(llm) if isinstance(llm, str) else llm
        self.embedder = load_embedder(embedder)
        self.scope, self.visible = scope, frozenset({scope, *reads})
        self.link_threshold, self.neighbours = link_threshold, neighbours
        self.vector_backend = open_vectors(self.store, self.embedder.dim, vectors)
        self.fulltext_backend = open_fulltext(self.store)
        self._scopes: dict[int, str] = {}
        self._scope_set: set[str] | None = None  # the scopes of the notes indexed, worked out when needed
        self._seen = 0.0
        self._writer = uuid.uuid4().hex[:16]
        self._lock = threading.Lock()
        # with pgvector, the vectors stay in the database: a refresh reads scopes only
        self._everything = select(memory_notes.c.id, memory_notes.c.scope, memory_notes.c.updated,
                                  *self.vector_backend.columns)
        self._changed = self._everything.where(memory_notes.c.updated > bindparam("since"),
                                               memory_notes.c.writer != bindparam("writer"))
        with self.store.transaction() as conn:  # the keyword search's index
            self.fulltext_backend.prepare(conn)
        self._refresh()

    # -- writing ---------------------------------------------------------------------------------------------

    async def aadd(self, content: str, *, timestamp: float | None = None, metadata: Mapping[str, Any] | None = None,
                   tags: Sequence[str] | None = None) -> Note:
        """Store a note: describe it, embed it, link it to its neighbours and evolve them; return it.

        With a model, the note records how it was made: `metadata["made_by"]` is "model", or "fallback" when a step
        of the model wrote no valid JSON (or no keyword of the note's) and was done as in the cheap mode instead
        (`metadata["fallback"]` says which and why; it is logged too), so a valid text is never lost. An evolution may
        only add or refine (`writer.refine`): a neighbour never loses its tags or context, nor gets repeated text.

        >>> (await mem.aadd("The deploy failed: the disk was full")).metadata["made_by"]  # doctest: +SKIP
        'model'
        """
        if not content.strip():
            raise NotesError("add: content is empty")
        found, context, tag_list = extract_keywords(content), "", list(tags or ())
        fallbacks: list[str] = []  # the model steps that failed, each filled without the model instead
        if self.llm is not None:
            try:
                described = await writer.describe(self.llm, content)
                if not described.keywords:
                    fallbacks.append("keywords: the model wrote none")
                found, context = [*described.keywords] or found, described.context
                tag_list += [t for t in described.tags if t not in tag_list]
            except ValueError as exc:  # no valid JSON: the note is kept, described as in the cheap mode
                fallbacks.append(f"attributes: {exc}")
        vector = (await aembed(self.embedder, [_embedded_text(content, context, found)]))[0]
        self._refresh()
        near = [(i, s) for i, s in self.vector_backend.search(vector, self.neighbours, self._visible_ids()) if s > 0]
        links = [(i, "similar", f"cosine {s:.2f}") for i, s in near if s >= self.link_threshold]
        evolutions: list[dict[str, Any]] = []
        if self.llm is not None and near:
            try:
                decision = await writer.decide(self.llm, content, self.notes([i for i, _ in near]))
                links = [(x["id"], x["kind"], x["reason"]) for x in decision.links]
                evolutions = decision.evolve
            except ValueError as exc:  # linked by similarity, as in the cheap mode; nothing evolves
                fallbacks.append(f"links: {exc}")
        if self.llm is not None:
            for failure in fallbacks:
                log.warning("note %r: %s; filled without the model", content[:60], failure)
            made = {"made_by": "fallback", "fallback": fallbacks} if fallbacks else {"made_by": "model"}
            metadata = {**(metadata or {}), **made}
        now = time.time()
        # read as they are now, with no await before the writes: an add running beside this one may have evolved them
        evolved = {n.id: n for n in self.notes([x["id"] for x in evolutions])}
        with self.store.transaction() as conn:
            [note_id] = self._insert(conn, [_NewNote(content, found, tag_list, context, dict(metadata or {}),
                                                     timestamp if timestamp is not None else now, vector)], now)
            for target, kind, reason in dict.fromkeys(links):
                conn.execute(insert(memory_links).values(source=note_id, target=target, kind=kind, reason=reason,
                                                         created=now))
            for change in evolutions:
                if (old := evolved.get(change["id"])) is None:
                    continue  # deleted since it was shown
                fields, refused = writer.refine(old, change, content)
                if refused:
                    log.info("note %d evolved by note %d: %s", old.id, note_id, "; ".join(refused))
                if fields:
                    kept = f" ({'; '.join(refused)})" if refused else ""
                    self._change(conn, old.id, f"evolved by note {note_id}{kept}", fields, now)
        self._put([note_id], vector[None], self.scope)
        return self.get(note_id)

    def add(self, content: str, **options: Any) -> Note:
        """`aadd` for scripts."""
        return run_sync(self.aadd(content, **options))

    async def aadd_many(self, contents: Sequence[str], *, timestamps: Sequence[float] | None = None,
                        metadatas: Sequence[Mapping[str, Any]] | None = None) -> list[Note]:
        """Bulk ingestion in the cheap mode (no model): one batched embedding, one transaction, links by
        similarity to earlier notes and to each other."""
        if self.llm is not None:
            return [await self.aadd(c, timestamp=timestamps[i] if timestamps else None,
                                    metadata=metadatas[i] if metadatas else None) for i, c in enumerate(contents)]
        found = [extract_keywords(c) for c in contents]
        vectors = await aembed(self.embedder, [_embedded_text(c, "", k) for c, k in zip(contents, found, strict=True)])
        self._refresh()
        now = time.time()
        with self.store.transaction() as conn:
            ids = self._insert(conn, [_NewNote(c, found[i], [], "", dict(metadatas[i]) if metadatas else {},
                                               timestamps[i] if timestamps else now, vectors[i])
                                      for i, c in enumerate(contents)], now)
            self._put(ids, vectors, self.scope)
            visible = self._visible_ids()
            rows = []
            nearest = self.vector_backend.search_many(vectors, self.neighbours + 1, conn)
            for note, near in zip(ids, nearest, strict=True):
                for other, score in near:
                    if other != note and score >= self.link_threshold and (visible is None or other in visible):
                        rows.append({"source": note, "target": other, "kind": "similar",
                                     "reason": f"cosine {score:.2f}", "created": now})
            if rows:
                conn.execute(insert(memory_links), rows)
        return self.notes(ids)

    def add_many(self, contents: Sequence[str], **options: Any) -> list[Note]:
        """`aadd_many` for scripts."""
        return run_sync(self.aadd_many(contents, **options))

    def update(self, note: int, *, content: str | None = None, tags: Sequence[str] | None = None,
               context: str | None = None, keywords: Sequence[str] | None = None,
               metadata: Mapping[str, Any] | None = None) -> Note:
        """Change a note's fields; the previous version is kept (`history`, `revert`)."""
        fields: dict[str, Any] = {k: v for k, v in {"content": content, "tags": tags, "context": context,
                                                      "keywords": keywords, "metadata": metadata}.items()
                                  if v is not None}
        with self.store.transaction() as conn:
            self._change(conn, note, "updated", fields, time.time())
        self._refresh()
        return self.get(note)

    def revert(self, note: int, version: int) -> Note:
        """Make note `note` what it was at `version` (the current one is kept as a version too)."""
        old = {v.version: v for v in self.history(note)}
        if version not in old:
            raise NotesError(f"note {note} has no earlier version {version} (has {sorted(old)})")
        was = old[version]
        fields = {"content": was.content, "keywords": was.keywords, "tags": was.tags, "context": was.context,
                  "metadata": was.metadata}
        with self.store.transaction() as conn:
            self._change(conn, note, f"reverted to version {version}", fields, time.time())
        self._refresh()
        return self.get(note)

    def delete(self, note: int) -> None:
        """Remove a note, its links (both ways) and its versions."""
        with self.store.transaction() as conn:
            if conn.execute(delete(memory_notes).where(memory_notes.c.id == note)).rowcount == 0:
                raise NotesError(f"no note {note}")
            conn.execute(delete(memory_links).where(or_(memory_links.c.source == note, memory_links.c.target == note)))
            conn.execute(delete(memory_versions).where(memory_versions.c.note == note))
            self.fulltext_backend.remove(conn, [note])
        with self._lock:
            self.vector_backend.remove([note])
            self._scopes.pop(note, None)
            self._scope_set = None

    # -- reading ---------------------------------------------------------------------------------------------

    async def asearch(self, query: str, k: int = 5, *, hops: int = 0, filters: Mapping[str, Any] | None = None,
                      mode: str = "hybrid") -> list[Hit]:
        """The `k` notes that best match `query`: vector similarity and full-text keywords fused by reciprocal
        rank (`mode` hybrid | vector | keyword), then notes `hops` links away; each hit says why it matched.

        `filters`: `tags` (all of them), `scope`, `since`/`until` (timestamps), `metadata` (equal values).
        """
        if mode not in ("hybrid", "vector", "keyword"):
            raise NotesError(f"search: mode must be hybrid, vector or keyword, got {mode!r}")
        self._refresh()
        allowed = self._allowed(filters)
        pool = max(k * 4, 20)
        fused: dict[int, float] = {}
        why: dict[int, list[str]] = {}
        if mode != "keyword":
            vector = (await aembed(self.embedder, [query]))[0]
            for rank, (note, score) in enumerate(self.vector_backend.search(vector, pool, allowed), 1):
                fused[note] = fused.get(note, 0.0) + 1 / (RRF_K + rank)
                why.setdefault(note, []).append(f"vector {score:.2f} (rank {rank})")
        if mode != "vector":
            for rank, note in enumerate(self._keyword_search(query, pool, allowed), 1):
                fused[note] = fused.get(note, 0.0) + 1 / (RRF_K + rank)
                why.setdefault(note, []).append(f"keyword (rank {rank})")
        ranked = sorted(fused, key=lambda n: -fused[n])[:k]
        scores = {n: fused[n] for n in ranked}
        frontier = list(ranked)
        for hop in range(1, hops + 1):
            reached = []
            for link in self._links(frontier):
                source, other = (link.source, link.target) if link.source in frontier else (link.target, link.source)
                if other in scores or (allowed is not None and other not in allowed):
                    continue
                scores[other] = scores[source] * HOP_DECAY
                why[other] = [f"link from {source}: {link.kind}" + (f" (hop {hop})" if hop > 1 else "")]
                reached.append(other)
            frontier = reached
        notes = {n.id: n for n in self.notes(list(scores))}
        hits = [Hit(note=notes[n], score=round(s, 6), why=why[n]) for n, s in scores.items() if n in notes]
        return sorted(hits, key=lambda h: -h.score)

    def search(self, query: str, k: int = 5, **options: Any) -> list[Hit]:
        """`asearch` for scripts."""
        return run_sync(self.asearch(query, k, **options))

    def get(self, note: int) -> Note:
        """One note with its links: all it made, and the newest LINKS_TO_SHOWN made to it (`graph()` has all)."""
        found = self.notes([note])
        if not found:
            raise NotesError(f"no note {note}")
        return found[0]

    def notes(self, ids: Iterable[int]) -> list[Note]:
        """The notes with these ids, in that order (missing ones left out)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return []
        with self.store.transaction() as conn:
            rows = {r.id: r for r in conn.execute(_NOTES_BY_ID, {"ids": wanted})}
        by_note: dict[int, list[Link]] = {}
        for link in self._links(wanted):  # grouped once: a bulk add reads thousands of notes and their links
            for end in dict.fromkeys((link.source, link.target)):
                by_note.setdefault(end, []).append(link)
        return [_note(rows[i], by_note.get(i, [])) for i in wanted if i in rows]

    def history(self, note: int) -> list[NoteVersion]:
        """The earlier versions of a note, oldest first, each with the reason it was replaced."""
        with self.store.transaction() as conn:
            rows = conn.execute(select(memory_versions).where(memory_versions.c.note == note)
                                .order_by(memory_versions.c.version)).all()
        return [NoteVersion(note=note, version=r.version, reason=r.reason, created=r.created, **json.loads(r.data))
                for r in rows]

    def graph(self) -> "nx.DiGraph[int]":
        """The visible notes as a networkx graph: node attributes are the note's fields, edges its links.

        >>> mem.graph().number_of_nodes()  # doctest: +SKIP
        """
        graph: nx.DiGraph[int] = nx.DiGraph()
        with self.store.transaction() as conn:
            for r in conn.execute(select(memory_notes).where(memory_notes.c.scope.in_(self.visible))):
                graph.add_node(r.id, content=r.content, keywords=json.loads(r.keywords), tags=json.loads(r.tags),
                               context=r.context, scope=r.scope, version=r.version, timestamp=r.timestamp)
            for link in conn.execute(select(memory_links)):
                if link.source in graph and link.target in graph:
                    graph.add_edge(link.source, link.target, kind=link.kind, reason=link.reason)
        return graph

    def export(self, path: str | Path) -> int:
        """Write the visible notes and their links as JSON lines; return how many notes."""
        graph = self.graph()
        with Path(path).open("w") as out:
            for note in self.notes(list(graph.nodes)):
                out.write(note.model_dump_json() + "\n")
        return graph.number_of_nodes()

    def import_(self, path: str | Path) -> list[Note]:
        """Add the notes of an `export` file (new ids; links between imported notes kept, in this scope)."""
        lines = Path(path).read_text().splitlines()
        try:
            loaded = [Note.model_validate_json(line) for line in lines if line.strip()]
        except ValueError as exc:
            raise NotesError(f"{path}: not an export file of notes ({exc})") from exc
        vectors = self.embedder.embed([_embedded_text(n.content, n.context, n.keywords) for n in loaded])
        now = time.time()
        with self.store.transaction() as conn:
            ids = self._insert(conn, [_NewNote(n.content, n.keywords, n.tags, n.context, n.metadata, n.timestamp, v)
                                      for n, v in zip(loaded, vectors, strict=True)], now)
            new = {note.id: note_id for note, note_id in zip(loaded, ids, strict=True)}
            links = {(x.source, x.target, x.kind, x.reason) for n in loaded for x in n.links}
            for source, target, kind, reason in links:
                if source in new and target in new:
                    conn.execute(insert(memory_links).values(source=new[source], target=new[target], kind=kind,
                                                             reason=reason, created=now))
        self._put(list(new.values()), vectors, self.scope)
        return self.notes(new.values())

    def close(self) -> None:
        """Release the store (when this memory opened it)."""
        self.store.close()

    def __enter__(self) -> "Memory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------

    def _insert(self, conn: Connection, notes: Sequence["_NewNote"], now: float) -> list[int]:
        """Insert `notes` (one statement for all: bulk ingestion is bound by it) and index their text; their ids."""
        rows = [{"scope": self.scope, "content": n.content, "keywords": json.dumps(n.keywords),
                 "tags": json.dumps(n.tags), "context": n.context, "meta": json.dumps(n.metadata),
                 "timestamp": n.timestamp, "version": 1, "embedding": np.asarray(n.vector, dtype=np.float32).tobytes(),
                 "updated": now, "writer": self._writer} for n in notes]
        returning = insert(memory_notes).returning(memory_notes.c.id, sort_by_parameter_order=True)
        ids = [int(i) for i in conn.execute(returning, rows).scalars()]
        self.vector_backend.write(conn, [(i, n.vector) for i, n in zip(ids, notes, strict=True)])
        self.fulltext_backend.write(conn, [NoteText(i, n.content, n.keywords, n.tags, n.context)
                                           for i, n in zip(ids, notes, strict=True)])
        return ids

    def _change(self, conn: Connection, note: int, reason: str, fields: Mapping[str, Any], now: float) -> None:
        """Keep the note's current version, then apply `fields` (re-embedding a changed content)."""
        # lock the row before reading it (PostgreSQL: the row; SQLite: the database), so that processes changing
        # one note take turns and none overwrites a version another just made
        conn.execute(update(memory_notes).where(memory_notes.c.id == note).values(version=memory_notes.c.version))
        row = conn.execute(select(memory_notes).where(memory_notes.c.id == note)).first()
        if row is None:
            raise NotesError(f"no note {note}")
        current = {"content": row.content, "keywords": json.loads(row.keywords), "tags": json.loads(row.tags),
                   "context": row.context, "metadata": json.loads(row.meta)}
        conn.execute(insert(memory_versions).values(note=note, version=row.version, data=json.dumps(current),
                                                    reason=reason, created=now))
        merged = {**current, **fields}
        values: dict[str, Any] = {"content": merged["content"], "keywords": json.dumps(list(merged["keywords"])),
                                  "tags": json.dumps(list(merged["tags"])), "context": merged["context"],
                                  "meta": json.dumps(dict(merged["metadata"])), "version": row.version + 1,
                                  "updated": now, "writer": self._writer}
        if merged["content"] != row.content:
            vector = self.embedder.embed([_embedded_text(merged["content"], merged["context"], merged["keywords"])])
            values["embedding"] = vector[0].tobytes()
            self._put([note], vector, row.scope)
        conn.execute(update(memory_notes).where(memory_notes.c.id == note).values(**values))
        if "embedding" in values:
            self.vector_backend.write(conn, [(note, vector[0])])
        self.fulltext_backend.remove(conn, [note])
        self.fulltext_backend.write(conn, [NoteText(note, merged["content"], list(merged["keywords"]),
                                                    list(merged["tags"]), merged["context"])])

    def _keyword_search(self, query: str, limit: int, allowed: set[int] | None) -> list[int]:
        terms = list(dict.fromkeys(words(query)))
        if not terms:
            return []
        with self.store.transaction() as conn:
            found = self.fulltext_backend.search(conn, terms, limit * 4)
        return [note for note in found if allowed is None or note in allowed][:limit]

    def _links(self, ids: Sequence[int]) -> list[Link]:
        """The links of these notes: all they made, and the newest LINKS_TO_SHOWN made to each of them."""
        if not ids:
            return []
        rows: dict[int, Any] = {}
        with self.store.transaction() as conn:
            for start in range(0, len(ids), _UNION_PARTS):
                chunk = list(ids[start:start + _UNION_PARTS])
                rows.update((r.id, r) for r in conn.execute(_LINKS_FROM, {"ids": chunk}))
                rows.update((r.id, r) for r in conn.execute(_links_to(len(chunk)), {
                    "most": LINKS_TO_SHOWN, **{f"n{i}": note for i, note in enumerate(chunk)}}))
        return [Link(source=r.source, target=r.target, kind=r.kind, reason=r.reason)
                for _, r in sorted(rows.items())]

    def _visible_ids(self) -> set[int] | None:
        """The ids of notes this memory may read; None when it may read them all."""
        if self._scope_set is None:
            self._scope_set = set(self._scopes.values())
        if self._scope_set <= self.visible:
            return None
        return {n for n, scope in self._scopes.items() if scope in self.visible}

    def _allowed(self, filters: Mapping[str, Any] | None) -> set[int] | None:
        allowed = self._visible_ids()
        if not filters:
            return allowed
        unknown = set(filters) - {"tags", "scope", "since", "until", "metadata"}
        if unknown:
            raise NotesError(f"search: unknown filters {sorted(unknown)} (expected tags, scope, since, until, "
                             "metadata)")
        query = select(memory_notes.c.id, memory_notes.c.tags, memory_notes.c.meta)
        if "scope" in filters:
            query = query.where(memory_notes.c.scope == filters["scope"])
        if "since" in filters:
            query = query.where(memory_notes.c.timestamp >= filters["since"])
        if "until" in filters:
            query = query.where(memory_notes.c.timestamp <= filters["until"])
        wanted_tags = set(filters.get("tags", ()))
        wanted_meta = dict(filters.get("metadata", {}))
        with self.store.transaction() as conn:
            rows = conn.execute(query).all()
        matching = {r.id for r in rows if wanted_tags <= set(json.loads(r.tags))
                    and all(json.loads(r.meta).get(k) == v for k, v in wanted_meta.items())}
        return matching if allowed is None else allowed & matching

    def _put(self, ids: list[int], vectors: np.ndarray[Any, Any], scope: str) -> None:
        with self._lock:
            self.vector_backend.put(ids, vectors)
            self._scopes.update(dict.fromkeys(ids, scope))
            self._scope_set = None

    def _refresh(self) -> None:
        """Bring the index up to date with notes written since (by this or any other process; a note another
        process deleted stays in the index until reopened, and is dropped from results as missing)."""
        started = time.time()
        with self.store.transaction() as conn:  # the index on (updated, writer) makes an idle check cheap at any size
            if self._seen:  # rows others wrote since; commits may land out of timestamp order, hence the margin
                rows = conn.execute(self._changed, {"since": self._seen - 5.0, "writer": self._writer}).all()
            else:
                rows = conn.execute(self._everything).all()
        with self._lock:
            if rows:
                self.vector_backend.load(rows)
                self._scopes.update({r.id: r.scope for r in rows})
                self._scope_set = None
                self._seen = max(self._seen, max(r.updated for r in rows))
            self._seen = max(self._seen, started - 5.0)  # from now on, only what others write


class _NewNote(NamedTuple):
    content: str
    keywords: Sequence[str]
    tags: Sequence[str]
    context: str
    metadata: Mapping[str, Any]
    timestamp: float
    vector: np.ndarray[Any, Any]


@lru_cache(maxsize=_UNION_PARTS)
def _links_to(n: int) -> Executable:
    """The newest :most links made to each of `n` notes (:n0 ...): an index walk each, however many there are."""
    newest = [select(memory_links).where(memory_links.c.target == bindparam(f"n{i}"))
              .order_by(memory_links.c.id.desc()).limit(bindparam("most")).subquery() for i in range(n)]
    return union_all(*(select(part) for part in newest))


def _embedded_text(content: str, context: str, found: Sequence[str]) -> str:
    """What is embedded: the content, and what was written about it (A-MEM embeds both)."""
    return " ".join(part for part in (content, context, " ".join(found)) if part)


def _note(row: Any, links: list[Link]) -> Note:
    return Note(id=row.id, content=row.content, keywords=json.loads(row.keywords), tags=json.loads(row.tags),
                context=row.context, timestamp=row.timestamp, metadata=json.loads(row.meta), scope=row.scope,
                version=row.version, links=links)
