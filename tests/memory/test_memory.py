"""Notes, links, evolution, versions and hybrid search, with a scripted model and in the cheap mode."""

import json
from pathlib import Path
from typing import Any

import pytest
from bag_of_words import BagOfWords

from baobab.engine import Request
from baobab.engine.scripted import ScriptedLLM
from baobab.memory import Memory, NotesError


def cheap(url: str, **options: Any) -> Memory:
    return Memory(url, embedder=BagOfWords(), **options)


def test_cheap_mode_links_by_similarity_and_search_fuses_vectors_keywords_and_links(db_url: str) -> None:
    with cheap(db_url, link_threshold=0.5) as memory:
        deploy = memory.add("the deploy failed because the build server disk was full", tags=["ops"])
        disk = memory.add("build server disk full again, the deploy failed")
        paris = memory.add("paris is the capital of france", metadata={"source": "atlas"})
        assert "deploy" in deploy.keywords and deploy.tags == ["ops"]
        assert [(x.source, x.target, x.kind) for x in disk.links] == [(disk.id, deploy.id, "similar")]
        assert memory.get(deploy.id).links == disk.links  # navigable from the other end too
        assert paris.links == []

        hits = memory.search("why did the deploy fail", k=1, hops=1)
        assert hits[0].note.id in (deploy.id, disk.id)
        assert {h.note.id for h in hits} == {deploy.id, disk.id}  # the second one over the link
        assert any(w.startswith("link from") for h in hits for w in h.why)
        assert memory.search("capital", k=3, mode="keyword")[0].note.id == paris.id
        assert memory.search("capital", k=3, mode="keyword")[0].why == ["keyword (rank 1)"]
        assert [h.note.id for h in memory.search("disk", k=5, filters={"tags": ["ops"]})] == [deploy.id]
        assert [h.note.id for h in memory.search("paris", filters={"metadata": {"source": "atlas"}})] == [paris.id]
        with pytest.raises(NotesError, match="unknown filters"):
            memory.search("x", filters={"colour": "red"})
        with pytest.raises(NotesError, match="mode must be"):
            memory.search("x", mode="fuzzy")


def test_a_note_shows_all_links_it_made_and_the_newest_made_to_it(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from baobab.memory import memory as module

    monkeypatch.setattr(module, "LINKS_TO_SHOWN", 3)  # a hub drew 6: reading it, or hopping from it, shows 3
    with cheap(db_url, link_threshold=0.6, neighbours=1) as memory:
        hub = memory.add("alpha")
        spokes = [memory.add(f"alpha zz{i}") for i in range(6)]
        assert [[x.target for x in s.links] for s in spokes] == [[hub.id]] * 6
        assert [x.source for x in memory.get(hub.id).links] == [s.id for s in spokes[3:]]
        assert memory.graph().in_degree(hub.id) == 6
        hits = memory.search("alpha", k=1, hops=1)
        assert hits[0].note.id == hub.id and {h.note.id for h in hits[1:]} == {s.id for s in spokes[3:]}


def test_versions_revert_and_delete_cleans_links(db_url: str) -> None:
    with cheap(db_url, link_threshold=0.5) as memory:
        first = memory.add("the cache server restarts every night")
        second = memory.add("the cache server restarts at night for backups")
        changed = memory.update(first.id, content="the cache server restarts every hour", tags=["ops"])
        assert changed.version == 2 and changed.tags == ["ops"]
        assert [(v.version, v.content, v.reason) for v in memory.history(first.id)] == [
            (1, "the cache server restarts every night", "updated")]
        assert memory.search("every hour", k=1)[0].note.id == first.id  # re-embedded and re-indexed
        back = memory.revert(first.id, 1)
        assert (back.content, back.tags, back.version) == ("the cache server restarts every night", [], 3)
        assert [v.version for v in memory.history(first.id)] == [1, 2]
        with pytest.raises(NotesError, match="no earlier version 7"):
            memory.revert(first.id, 7)
        memory.delete(first.id)
        assert memory.get(second.id).links == []
        assert [h.note.id for h in memory.search("cache server", k=5)] == [second.id]
        with pytest.raises(NotesError, match=f"no note {first.id}"):
            memory.get(first.id)


def test_graph_export_and_import(tmp_path: Path) -> None:
    with cheap(f"sqlite:///{tmp_path / 'a.db'}", link_threshold=0.5) as memory:
        a = memory.add("tests catch regressions early")
        b = memory.add("regressions caught early by tests are cheap")
        graph = memory.graph()
        assert set(graph.nodes) == {a.id, b.id} and graph.edges[b.id, a.id]["kind"] == "similar"
        assert memory.export(tmp_path / "notes.jsonl") == 2
    with cheap(f"sqlite:///{tmp_path / 'b.db'}") as other:
        other.add("an unrelated first note")
        imported = other.import_(tmp_path / "notes.jsonl")
        assert [n.content for n in imported] == [a.content, b.content]
        assert other.graph().number_of_edges() == 1
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with cheap(f"sqlite:///{tmp_path / 'c.db'}") as third, pytest.raises(NotesError, match=r"bad\.jsonl"):
        third.import_(tmp_path / "bad.jsonl")


def test_scopes_keep_agents_apart(store_url: str) -> None:
    alice = cheap(store_url, scope="agent:alice", reads=("global", "team:red"))
    bob = cheap(store_url, scope="agent:bob", reads=("global", "team:red"))
    team = cheap(store_url, scope="team:red")
    shared = cheap(store_url)
    try:
        alice.add("alice keeps the api key rotation schedule")
        team.add("the red team rotates keys monthly")
        shared.add("keys must never be committed")
        seen_by_bob = {h.note.content for h in bob.search("keys rotation", k=10)}
        assert seen_by_bob == {"the red team rotates keys monthly", "keys must never be committed"}
        assert len(alice.search("keys rotation", k=10)) == 3
        assert shared.graph().number_of_nodes() == 1
    finally:
        for memory in (alice, bob, team, shared):
            memory.close()


def answers(request: Request) -> str:
    """A scripted note writer: describes a note; links to and evolves the first neighbour it is shown."""
    name = request.response_format["json_schema"]["name"] if request.response_format else ""
    prompt = request.messages[-1].content if request.messages else ""
    if name == "attributes":
        content = prompt.removeprefix("Note: ")
        return json.dumps({"keywords": content.split()[:2], "tags": ["incident"], "context": f"About: {content}"})
    first = int(prompt.split("Earlier notes:\nid ")[1].split(":")[0])
    return json.dumps({"links": [{"id": first, "kind": "elaborates", "reason": "same outage"}],
                       "evolve": [{"id": first, "context": "A deploy failed on a full disk.", "tags": ["disk"]}]})


def test_a_model_writes_links_by_id_and_evolves_the_linked_note(db_url: str) -> None:
    llm = ScriptedLLM(answers)
    with Memory(db_url, llm=llm, embedder=BagOfWords()) as memory:
        first = memory.add("the deploy failed at noon")
        assert (first.keywords, first.tags, first.context) == (["the", "deploy"], ["incident"],
                                                                "About: the deploy failed at noon")
        memory.add("a printer ran out of paper")  # no word in common: not shown to the model, not linked
        second = memory.add("the deploy failed because the disk was full")
        assert [(x.source, x.target, x.kind, x.reason) for x in second.links] == [
            (second.id, first.id, "elaborates", "same outage")]
        evolved = memory.get(first.id)
        assert (evolved.context, evolved.tags, evolved.version) == ("A deploy failed on a full disk.",
                                                                     ["incident", "disk"], 2)  # added to, not replaced
        [before] = memory.history(first.id)
        assert (before.context, before.tags, before.reason) == ("About: the deploy failed at noon", ["incident"],
                                                                  f"evolved by note {second.id}")
        shown = [r for r in llm.requests if r.response_format["json_schema"]["name"] == "decision"]  # type: ignore
        assert f"id {first.id}:" in shown[-1].messages[-1].content  # ids, not ranks, are shown and asked for
        ids = shown[-1].response_format["json_schema"]["schema"]["properties"]["links"]["items"]  # type: ignore
        assert first.id in ids["properties"]["id"]["enum"]


def test_a_model_that_writes_no_valid_json_still_stores_the_note_and_says_so(store_url: str,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    cut = '{"keywords": ["deploy", "deploy_fails_fails_fails_fails'  # what max_tokens left of a looping answer
    with Memory(store_url, llm=ScriptedLLM([cut, "not json"]), embedder=BagOfWords()) as memory:
        first = memory.add("The deploy on Friday failed again: the disk filled with docker images.", tags=["ops"])
        assert (first.keywords[:2], first.tags, first.context) == (["deploy", "friday"], ["ops"], "")  # as if llm=None
        assert first.metadata["made_by"] == "fallback"
        assert first.metadata["fallback"][0].startswith("attributes: scripted wrote no valid JSON")
        assert memory.get(first.id).metadata == first.metadata  # stored, not only returned
        assert "filled without the model" in caplog.text
    with cheap(store_url) as memory, pytest.raises(NotesError, match="content is empty"):
        memory.add("   ")


def test_a_decision_that_is_no_valid_json_links_by_similarity(db_url: str) -> None:
    attributes = json.dumps({"keywords": ["disk"], "tags": ["ops"], "context": "A full disk."})
    with Memory(db_url, llm=ScriptedLLM([attributes, attributes, '{"links": [']), embedder=BagOfWords(),
                link_threshold=0.3) as memory:
        first = memory.add("the build disk is full")
        second = memory.add("the build disk is full again")
        assert first.metadata == {"made_by": "model"}
        assert [(x.target, x.kind) for x in second.links] == [(first.id, "similar")]
        assert second.metadata["made_by"] == "fallback" and second.metadata["fallback"][0].startswith("links: ")
        assert memory.get(first.id).version == 1  # nothing evolved


def test_attributes_are_bounded_and_free_of_repeats(db_url: str) -> None:
    looping = json.dumps({"keywords": ["support group"] * 6 + ["Support Group", "lgbtq"], "tags": ["a", "A", "b"],
                          "context": "She went to a support group. She went to a support group. " * 3})
    with Memory(db_url, llm=ScriptedLLM([looping]), embedder=BagOfWords()) as memory:
        note = memory.add("Caroline: I went to a LGBTQ support group yesterday")
        assert (note.keywords, note.tags, note.context) == (["support group", "lgbtq"], ["a", "b"],
                                                            "She went to a support group.")
        request = memory.llm.requests[0]  # type: ignore[union-attr]
        schema = request.response_format["json_schema"]["schema"]["properties"]  # type: ignore[index]
        assert schema["keywords"]["maxItems"] == 6 and schema["keywords"]["items"]["maxLength"] == 24
        assert schema["tags"]["maxItems"] == 3 and schema["context"]["maxLength"] == 160


@pytest.mark.parametrize(("change", "context", "tags", "reason"), [
    ({"context": "", "tags": []}, "About: the deploy failed at noon", ["incident"], None),  # would blank both
    ({"context": "About: the deploy failed at noon. " * 5, "tags": ["incident", "Incident"]},
     "About: the deploy failed at noon", ["incident"], None),  # the same context five times, a tag twice
    ({"context": "A deploy that failed on a full disk. A deploy that failed on a full disk.", "tags": []},
     "A deploy that failed on a full disk.", ["incident"], "tags: none proposed, kept"),
    ({"context": "   ", "tags": ["disk", "disk", "full full"]}, "About: the deploy failed at noon",
     ["incident", "disk", "full"], "context: fewer than 3 words, kept"),
    ({"context": "tags: I was swa; tags: Lemonade, Lemon", "tags": ["tags: I was swa", "Lemonade"]},
     "About: the deploy failed at noon", ["incident"], None),  # prompt labels and words from neither note
])
def test_evolution_only_adds_or_refines(db_url: str, change: dict[str, Any], context: str, tags: list[str],
                                        reason: str | None) -> None:
    def evolving(request: Request) -> str:
        if request.response_format and request.response_format["json_schema"]["name"] == "decision":
            return json.dumps({"links": [], "evolve": [{"id": 1, **change}]})
        return answers(request)

    with Memory(db_url, llm=ScriptedLLM(evolving), embedder=BagOfWords()) as memory:
        first = memory.add("the deploy failed at noon")
        memory.add("the deploy failed because the disk was full")
        evolved = memory.get(first.id)
        assert (evolved.context, evolved.tags) == (context, tags)
        history = memory.history(first.id)
        if reason is None:
            assert evolved.version == 1 and history == []  # nothing left to change: no new version
        else:
            assert history[0].reason == f"evolved by note 2 ({reason})"
            assert (history[0].context, history[0].tags) == ("About: the deploy failed at noon", ["incident"])


def test_an_agent_recalls_notes_before_acting_and_stores_what_it_answered(store_url: str) -> None:
    from baobab.agents import Agent

    llm = ScriptedLLM(["The deploy fails when the disk is full; clean /tmp first.", "Clean /tmp, then deploy."])
    with cheap(store_url, scope="agent:ops", reads=("global", "agent:ops")) as memory:
        memory.add("the build server disk fills up with old artifacts in /tmp")
        agent = Agent("ops", model=llm, memory=memory)
        agent.run("Why does the deploy on the build server fail?")
        assert "old artifacts in /tmp" in (llm.requests[0].messages[0].content or "")  # recalled before acting
        stored = memory.search("deploy fails disk full", k=5, filters={"tags": ["ops"]})
        assert [h.note.metadata for h in stored] == [{"agent": "ops"}]
        assert "clean /tmp first" in stored[0].note.content
        agent.run("How do I deploy on the build server?")  # the next run sees the first run's answer
        assert "clean /tmp first" in (llm.requests[1].messages[0].content or "")


def test_keyword_search_leaves_out_terms_too_common_to_rank_by(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from baobab.memory import fulltext_sqlite as module

    with cheap(f"sqlite:///{tmp_path / 'k.db'}", link_threshold=2.0) as memory:
        common = memory.add_many([f"status report number {i}" for i in range(30)])
        rare = memory.add("the quarterly status report mentions a zeppelin")
        everything = memory._keyword_search("status zeppelin", 100, None)
        assert set(everything) == {n.id for n in common} | {rare.id} and everything[0] == rare.id
        monkeypatch.setattr(module, "KEYWORD_ROWS", 5)  # 'status' is in 31 notes: past the budget, left out
        assert memory._keyword_search("status zeppelin", 100, None) == [rare.id]
        newest = [rare.id, *(n.id for n in reversed(common))]  # past the budget alone: the newest notes first
        assert memory._keyword_search("status report", 100, None) == newest
        long_query = " ".join(f"word{i}" for i in range(700)) + " zeppelin"  # more terms than one statement counts
        assert memory._keyword_search(long_query, 100, None) == [rare.id]
