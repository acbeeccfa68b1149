"""State models with reducers: how node updates are validated, merged, stored and replayed.

A field's reducer is a callable in its `Annotated` metadata; it combines the current value with
an update. Fields without one are replaced, and two nodes of one step may not both write them.
"""

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from baobab.errors import BaobabError

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
    """

    def __init__(self, model: type[BaseModel]) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"a graph's state must be a pydantic BaseModel subclass, got {model!r}")
        self.model = model
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

    def load_update(self, text: str) -> BaseModel:
        """The update back from `dump_update`'s JSON."""
        return self.update_model.model_validate_json(text)


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
