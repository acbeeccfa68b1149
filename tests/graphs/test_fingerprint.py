"""A state class that changed: incompatible changes fail naming the fields, compatible ones pass, a migrate hook
converts stored states and updates, and resuming records the new fingerprint."""

import json
from typing import Annotated, Any

import pytest
from pydantic import BaseModel
from sqlalchemy import update

from baobab.graphs import END, START, App, Checkpointer, Graph, StateSchemaError, append, merge
from baobab.graphs.fingerprint import Migrate, changes, fingerprint
from baobab.graphs.state import StateSchema
from baobab.store.schema import threads


class V1(BaseModel):
    n: int = 0
    log: Annotated[list[str], append] = []


class Added(V1):
    note: str = "none"  # a new field with a default: compatible


class Renamed(BaseModel):  # n became count, a string: a migration
    count: str
    log: Annotated[list[str], append] = []


def app_of(state: type[BaseModel], url: str, migrate: Migrate | None = None) -> App:
    """Each step logs one line; it pauses after each, so a thread can be resumed under another class."""
    g = Graph(state, name="g", migrate=migrate).node("step", lambda s: {"log": [f"line{len(s.log) + 1}"]})
    g.edge(START, "step").route("step", lambda s: "step" if len(s.log) < 6 else END, ["step", END])
    return g.compile(checkpointer=url, interrupt_after=["step"])


def v1_thread(url: str, steps: int = 3) -> App:
    app = app_of(V1, url)
    app.run({"n": 7}, thread="t")
    for _ in range(steps - 1):
        app.resume("t")
    return app


def rename(old: dict[str, Any], fingerprint: dict[str, Any]) -> dict[str, Any]:
    assert "n" in fingerprint["fields"]  # what the row was written with
    if "n" in old:  # a state has n; an update only the fields it set
        old["count"] = str(old.pop("n"))
    return old


def test_an_incompatible_class_fails_naming_the_fields_on_every_read(store_url: str) -> None:
    first = v1_thread(store_url).history("t")[-1].id
    app = app_of(Renamed, store_url)
    expected = ["'n' removed", "'count' added without a default"]
    for read in (lambda: app.state("t"), lambda: app.state(checkpoint=first), lambda: app.resume("t")):
        with pytest.raises(StateSchemaError, match="thread 't' was written by state class V1, which Renamed cannot "
                                                   "read: 'n' removed; 'count' added without a default") as info:
            read()
        assert info.value.changes == expected
    assert Checkpointer(store_url).thread("t").status == "interrupted"  # type: ignore[union-attr]  # untouched


def test_types_and_reducers_that_changed_are_named() -> None:
    class Other(BaseModel):
        n: str = ""
        log: Annotated[list[str], merge] = []

    old, new = (json.loads(fingerprint(m, StateSchema(m).reducers))["fields"] for m in (V1, Other))
    assert changes(old, new) == ["'log' reducer changed from append to merge", "'n' type changed from int to str"]


def test_a_field_added_with_a_default_passes_and_resuming_records_the_class(store_url: str) -> None:
    v1_thread(store_url)
    app = app_of(Added, store_url)
    assert app.state("t") == Added(n=7, log=["line1", "line2", "line3"])
    assert app.resume("t").state == Added(n=7, log=["line1", "line2", "line3", "line4"])
    assert Checkpointer(store_url).thread("t").fingerprint == app.schema.fingerprint  # type: ignore[union-attr]
    with pytest.raises(StateSchemaError, match="'note' removed"):  # its rows now hold note
        app_of(V1, store_url).state("t")


def test_migrate_converts_states_and_updates_and_resuming_stores_them_converted(store_url: str) -> None:
    history = v1_thread(store_url).history("t")
    app = app_of(Renamed, store_url, migrate=rename)
    assert app.state("t") == Renamed(count="7", log=["line1", "line2", "line3"])
    assert [app.state(checkpoint=c.id).log for c in history] == [  # type: ignore[attr-defined]
        ["line1", "line2", "line3"], ["line1", "line2"], ["line1"], []]
    assert app.resume("t").state == Renamed(count="7", log=["line1", "line2", "line3", "line4"])
    plain = app_of(Renamed, store_url)  # no hook needed any more: the rows were rewritten
    assert plain.state(checkpoint=history[-1].id) == Renamed(count="7")
    assert plain.resume("t").state.log[-1] == "line5"  # type: ignore[attr-defined]


def test_a_fork_reads_each_row_as_its_own_thread_wrote_it(store_url: str) -> None:
    v1_app = v1_thread(store_url)
    app = app_of(Renamed, store_url, migrate=rename)
    fork = app.fork(v1_app.history("t")[0].id, update={"count": "8"}, thread="f")  # rows in V1 and in Renamed
    assert app.state(fork) == Renamed(count="8", log=["line1", "line2", "line3"])
    assert app.resume(fork).state == Renamed(count="8", log=["line1", "line2", "line3", "line4"])
    assert v1_app.state("t").log == ["line1", "line2", "line3"]  # type: ignore[attr-defined]  # t unchanged


def test_a_migrate_that_returns_a_bad_state_is_named(store_url: str) -> None:
    v1_thread(store_url)
    with pytest.raises(StateSchemaError, match="migrate returned a state of thread 't' that does not fit Renamed"):
        app_of(Renamed, store_url, migrate=lambda old, fp: old).state("t")


def test_threads_stored_before_fingerprints_load_and_get_one_when_resumed(store_url: str) -> None:
    v1_thread(store_url)
    cp = Checkpointer(store_url)
    with cp.store.transaction() as conn:
        conn.execute(update(threads).values(fingerprint=None))
    app = app_of(V1, store_url)
    assert app.state("t") == V1(n=7, log=["line1", "line2", "line3"])
    app.resume("t")
    assert cp.thread("t").fingerprint == app.schema.fingerprint  # type: ignore[union-attr]


def test_a_fingerprint_ignores_docs_and_nested_class_names_and_names_nested_changes() -> None:
    class Item(BaseModel):
        """An item."""
        name: str

    class Item2(BaseModel):
        """Another docstring."""
        name: str

    class Item3(BaseModel):
        name: int

    def fields(item: type[BaseModel]) -> dict[str, Any]:
        model = type("S", (BaseModel,), {"__annotations__": {"items": list[item]}, "items": []})  # type: ignore
        return dict(json.loads(fingerprint(model, {}))["fields"])

    assert fields(Item)["items"]["type"] == fields(Item2)["items"]["type"]  # docstrings and class names are not shape
    assert changes(fields(Item), fields(Item2)) == []
    assert changes(fields(Item), fields(Item3)) == ["'items' type changed from list[Item] to list[Item3]"]
