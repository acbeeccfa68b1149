"""State models with reducers: how node updates are validated, merged, stored and replayed.

A field's reducer is a callable in its `Annotated` metadata; it combines the current value with
an update. Fields without one are replaced, and two nodes of one step may not both write them.
"""

import functools
import inspect
import json
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from baobab.errors import BaobabError
from baobab.graphs.fingerprint import Migrate, StateSchemaError, changes, fingerprint

Reducer = Callable[[Any, Any], Any]


def append(current: list[Any], update: list[Any]) -> list[Any]:
    """Reducer that extends a list: `messages: Annotated[list[str], append] = []`.

    >>> append([1], [2, 3])
    [1, 2, 3]
    """
    return [*current, *update]


def merge(current: dict[Any, Any], update: dict[Any, Any]) -> dict[Any, Any]:
    """Reducer that merges a dict, later keys winning: `scores: Annotated[dict[str, int], merge] = {}`.

    >>> merge({"a": 1}, {"b": 2})
    {'a': 1, 'b': 2}
    """
    return {**current, **update}


class InvalidUpdateError(BaobabError, ValueError):
    """A node returned an update that does not fit the state, or two nodes wrote one plain field."""


class StateSchema:
    """What the runtime knows of a state model: each field's reducer and the model of an update.

    >>> class S(BaseModel):
    ...     log: Annotated[list[str], append] = []
    >>> schema = StateSchema(S)
    >>> schema.apply(S(), [("a", schema.validate_update("a", {"log": ["x"]}))]).log
    ['x']

    `migrate` converts rows stored under another fingerprint as they load (see `baobab.graphs.fingerprint`).
    """

    def __init__(self, model: type[BaseModel], migrate: Migrate | None = None) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"a graph's state must be a pydantic BaseModel subclass, got {model!r}")
        self.model = model
        self.migrate = migrate
        self._fingerprints: dict[str, dict[str, Any]] = {}
        self.reducers: dict[str, Reducer] = {}
        update_fields: dict[str, Any] = {}
        for name, field in model.model_fields.items():
            reducers = [m for m in field.metadata if callable(m) and not isinstance(m, type)]
            if len(reducers) > 1:
                raise TypeError(f"{model.__name__}.{name} has {len(reducers)} reducers; give it one")
            if reducers:
                self.reducers[name] = reducers[0]
                update_type = _update_type(reducers[0], field.annotation)
            else:
                update_type = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
            update_fields[name] = (update_type, None)
        self.update_model: type[BaseModel] = create_model(
            f"{model.__name__}Update", __config__=ConfigDict(extra="forbid"), **update_fields
        )

    @property
    def fields(self) -> list[str]:
        """The state's field names, in declaration order."""
        return list(self.model.model_fields)

    def validate_update(self, node: str, update: Any) -> BaseModel:
        """Check a node's return value against the state's fields; name the node and field if wrong."""
        if isinstance(update, self.update_model):
            return update
        if not isinstance(update, Mapping):
            raise InvalidUpdateError(
                f"node {node!r} returned {type(update).__name__}; expected a dict of state fields or None"
            )
        try:
            return self.update_model.model_validate(update)
        except ValidationError as exc:
            raise InvalidUpdateError(f"node {node!r} returned an invalid update for "
                                     f"{self.model.__name__}: {exc}") from exc

    def apply(self, state: BaseModel, writes: Sequence[tuple[str, BaseModel]]) -> BaseModel:
        """Merge one step's writes, in the given order, into a new state.

        Each write is `(writer, update)`; a writer may write a plain field only once per step.
        """
        values: dict[str, Any] = {}
        writer_of: dict[str, str] = {}
        for writer, update in writes:
            for name in update.model_fields_set:
                value = getattr(update, name)
                reducer = self.reducers.get(name)
                if reducer is not None:
                    values[name] = reducer(values[name] if name in values else getattr(state, name), value)
                    continue
                if name in writer_of and writer_of[name] != writer:
                    raise InvalidUpdateError(
                        f"nodes {writer_of[name]!r} and {writer!r} both wrote {self.model.__name__}.{name} "
                        f"in one step; give the field a reducer (Annotated[..., append]) or let one node write it"
                    )
                writer_of[name] = writer
                values[name] = value
        return state.model_copy(update=values) if values else state

    def dump_update(self, update: BaseModel) -> str:
        """JSON of the fields the update sets."""
        return update.model_dump_json(exclude_unset=True)

    def load_update(self, text: str, stored: str | None = None, thread: str = "") -> BaseModel:
        """The update back from `dump_update`'s JSON, written under fingerprint `stored` (None: this class's)."""
        old = self._stored(stored, thread)
        if old is None:
            return self.update_model.model_validate_json(text)
        return self._migrated(self.update_model, text, old, thread)

    def load_state(self, text: str, stored: str | None = None, thread: str = "") -> BaseModel:
        """A stored state's JSON as the state class, written under fingerprint `stored` (None: this class's).

        Raises `StateSchemaError` naming the changed fields when the class cannot read it and there is no
        `migrate` hook.
        """
        old = self._stored(stored, thread)
        if old is None:
            return self.model.model_validate_json(text)
        return self._migrated(self.model, text, old, thread)

    @functools.cached_property
    def fingerprint(self) -> str:
        """The state class's fingerprint, stored with each thread it writes (JSON text)."""
        return fingerprint(self.model, self.reducers)

    def same_fingerprint(self, stored: str | None) -> bool:
        """Whether rows written under `stored` are in this class's shape exactly (None: unknown, taken as so)."""
        return stored is None or stored == self.fingerprint or self._parsed(stored)["hash"] == self._parsed(
            self.fingerprint)["hash"]

    def _stored(self, stored: str | None, thread: str) -> dict[str, Any] | None:
        """The fingerprint `stored` when its rows need `migrate`; None when they load as they are."""
        if self.same_fingerprint(stored):
            return None
        assert stored is not None
        old = self._parsed(stored)
        if self.migrate is not None:
            return old
        found = changes(old["fields"], self._parsed(self.fingerprint)["fields"])
        if not found:
            return None
        where = f"thread {thread!r}" if thread else "a thread"
        raise StateSchemaError(
            f"{where} was written by state class {old['state']}, which {self.model.__name__} cannot read: "
            f"{'; '.join(found)}. "
            f"Give Graph({self.model.__name__}, migrate=fn) to convert its states (fn(old_dict, old_fingerprint) "
            "-> new dict), or read it with the class it was written with", found)

    def _parsed(self, text: str) -> dict[str, Any]:
        if text not in self._fingerprints:  # a few distinct ones per schema: parsed once each
            self._fingerprints[text] = json.loads(text)
        return self._fingerprints[text]

    def _migrated(self, model: type[BaseModel], text: str, old: dict[str, Any], thread: str) -> BaseModel:
        assert self.migrate is not None
        try:
            return model.model_validate(self.migrate(json.loads(text), old))
        except ValidationError as exc:
            raise StateSchemaError(f"migrate returned a {'state' if model is self.model else 'update'} of thread "
                                   f"{thread!r} that does not fit {self.model.__name__}: {exc}", [str(exc)]) from exc


def _update_type(reducer: Reducer, field_type: Any) -> Any:
    """The type of an update: the field's, unless the reducer annotates its update as another type."""
    try:
        params = list(inspect.signature(reducer).parameters.values())
        hints = typing.get_type_hints(reducer)
    except (TypeError, ValueError, NameError):  # builtins such as operator.add have no usable signature
        return field_type
    if len(params) >= 2 and params[1].name in hints and hints[params[1].name] != hints.get(params[0].name):
        return hints[params[1].name]
    return field_type
