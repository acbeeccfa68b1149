"""What a model writes about notes, as schema-constrained JSON: a new note's keywords, tags and context; which
neighbours to link it to (by id, from the ids shown: the reference A-MEM prompt showed ranks and asked for ids,
so its links never formed) and how those neighbours' context and tags evolve.

Every list and string in the schemas is bounded: a small model decoding greedily loops ("fails fails fails ...")
until max_tokens cuts its JSON, and the local engine's constrained decoding ends a string or a list at its bound.
What comes back is cleaned of repeats (`repeats`), and an evolution is checked against the note it changes
(`refine`): it may add or refine, never empty a field or repeat text."""

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeGuard

from pydantic import BaseModel, Field, StringConstraints, ValidationInfo, field_validator

from baobab.engine import LLM, Message, Request
from baobab.memory.repeats import clip, distinct, grounding, key, without_repeats
from baobab.memory.types import LINK_KINDS, Note

KEYWORDS, TAGS, TAGS_KEPT = 6, 3, 6  # a note's keywords and tags as written; tags evolution may grow it to
ITEM_CHARS, CONTEXT_CHARS, REASON_CHARS = 24, 160, 40
LINKED, EVOLVED = 3, 1  # links and evolutions one decision may make: each costs a small model ~1 s on a laptop CPU
GROUNDED = 0.5  # the share of an evolved tag's or context's words the two notes must hold (`repeats.grounding`)

Item = Annotated[str, StringConstraints(max_length=ITEM_CHARS)]  # bounds the JSON schema the model is held to


class Attributes(BaseModel):
    """A note's description, written by the model (repeats removed, lengths bounded, whatever the model wrote).

    >>> Attributes(keywords=["disk", "Disk", "docker"], tags=[], context="Full disk. Full disk.").keywords
    ['disk', 'docker']
    """

    keywords: list[Item] = Field(max_length=KEYWORDS)
    tags: list[Item] = Field(max_length=TAGS)
    context: str = Field(max_length=CONTEXT_CHARS)

    @field_validator("keywords", "tags", mode="before")
    @classmethod
    def _distinct(cls, value: Any, info: ValidationInfo) -> Any:
        most = KEYWORDS if info.field_name == "keywords" else TAGS
        return distinct(value, most, ITEM_CHARS) if _strings(value) else value

    @field_validator("context", mode="before")
    @classmethod
    def _once(cls, value: Any) -> Any:
        return clip(without_repeats(value), CONTEXT_CHARS) if isinstance(value, str) else value


class EvolutionDecision(BaseModel):
    """Links from the new note to neighbours, and new context/tags for the neighbours it changes."""

    links: list[dict[str, Any]]
    evolve: list[dict[str, Any]]


DESCRIBE = (f"You file notes in a Zettelkasten. For the note below, give up to {KEYWORDS} keywords (single words "
            f"or short phrases), up to {TAGS} short tags and a one-sentence context that says what it is about. "
            "Answer in JSON.")
DECIDE = ("You file notes in a Zettelkasten. A new note arrived; below are earlier notes with their ids. Link the "
          "new note to the earlier notes it relates to (kind: supports, contradicts, elaborates or same-topic, with "
          "a short reason), and for linked notes whose context or tags should change in the light of the new note, "
          "give their new context and tags. Answer in JSON; use only the ids shown.")


async def describe(llm: LLM, content: str) -> Attributes:
    """Keywords, tags and context for `content` (JSON that validates: constrained on the local engine).

    Raises ValueError when the model writes no valid JSON (cut at max_tokens, or a remote model ignoring the
    schema): `Memory.add` then fills the note without the model and records that on it.

    >>> await describe(ScriptedLLM(['{"keywords": ["disk"], "tags": [], "context": "x"}']), "disk")  # doctest: +SKIP
    Attributes(keywords=['disk'], tags=[], context='x')
    """
    schema = Attributes.model_json_schema()
    text = await _ask(llm, DESCRIBE, f"Note: {content}", "attributes", schema, 256)
    attributes = Attributes.model_validate_json(text)
    attributes.keywords = [k for k in attributes.keywords if grounding(k, content) > 0]  # a keyword is the note's
    return attributes


async def decide(llm: LLM, note: str, neighbours: Sequence[Note]) -> EvolutionDecision:
    """Which of `neighbours` to link `note` to, and how they evolve; ids outside `neighbours` cannot be named.

    Raises ValueError when the model writes no valid JSON. An evolution is a proposal: apply it with `refine`.

    >>> (await decide(llm, "the disk filled again", memory.notes([1, 2]))).links  # doctest: +SKIP
    [{'id': 1, 'kind': 'elaborates', 'reason': 'same disk'}]
    """
    ids = [n.id for n in neighbours]
    item = {"type": "string", "maxLength": ITEM_CHARS}
    link = {"type": "object", "properties": {"id": {"enum": ids}, "kind": {"enum": list(LINK_KINDS)},
                                             "reason": {"type": "string", "maxLength": REASON_CHARS}},
            "required": ["id", "kind", "reason"]}
    evolve = {"type": "object", "properties": {"id": {"enum": ids},
                                               "context": {"type": "string", "maxLength": CONTEXT_CHARS},
                                               "tags": {"type": "array", "items": item, "maxItems": TAGS}},
              "required": ["id", "context", "tags"]}
    schema = {"type": "object", "properties": {"links": {"type": "array", "items": link,
                                                         "maxItems": min(len(ids), LINKED)},
                                               "evolve": {"type": "array", "items": evolve,
                                                          "maxItems": min(len(ids), EVOLVED)}},
              "required": ["links", "evolve"]}
    shown = "\n".join(f"id {n.id}: {n.content} (context: {n.context}; tags: {', '.join(n.tags)})" for n in neighbours)
    text = await _ask(llm, DECIDE, f"New note: {note}\n\nEarlier notes:\n{shown}", "decision", schema, 384)
    decision = EvolutionDecision.model_validate_json(text)
    decision.links = [x for x in decision.links if x.get("id") in ids]  # a remote model may ignore the schema
    firsts: dict[int, dict[str, Any]] = {}
    for change in decision.evolve:  # one change a note: a second would make a version of the first
        if change.get("id") in ids:
            firsts.setdefault(change["id"], change)
    decision.evolve = list(firsts.values())
    return decision


def refine(note: Note, change: Mapping[str, Any], new: str) -> tuple[dict[str, Any], list[str]]:
    """The fields a proposed evolution (`context`, `tags`) may change on `note` in the light of the new note's
    text `new`, and what of it was refused.

    It may only add or refine: repeated text is removed first; a context of fewer than three words, one that
    says what the note says already, or one whose words the two notes mostly lack (a label copied from the
    prompt, words from nowhere) keeps the note's; proposed tags that the notes hold join the note's (none is
    dropped, none twice).

    >>> old = Note(id=1, content="deploy failed", tags=["ops"], context="A failed deploy.")
    >>> refine(old, {"context": "A failed deploy. A failed deploy.", "tags": []}, "the disk was full")
    ({}, ['context: the same as before once repeats are removed', 'tags: none proposed, kept'])
    >>> refine(old, {"context": "A deploy that failed on a full disk.", "tags": ["disk", "OPS"]}, "disk full")[0]
    {'context': 'A deploy that failed on a full disk.', 'tags': ['ops', 'disk']}
    >>> refine(old, {"context": "tags: lemonade", "tags": ["tags: lemon"]}, "disk full")
    ({}, ['context: fewer than 3 words, kept', 'tags: none the notes hold, kept'])
    """
    fields: dict[str, Any] = {}
    refused: list[str] = []
    source = " ".join([note.content, note.context, *note.keywords, *note.tags, new])
    proposed = change.get("context")
    context = clip(without_repeats(proposed), CONTEXT_CHARS) if isinstance(proposed, str) else ""
    if len(key(context).split()) < 3:
        refused.append("context: fewer than 3 words, kept")
    elif key(context) == key(note.context):
        refused.append("context: the same as before once repeats are removed")
    elif grounding(context, source) < GROUNDED:
        refused.append("context: words the notes lack, kept")
    else:
        fields["context"] = context
    tags = change.get("tags")
    held = {key(t) for t in note.tags}
    proposed_tags = distinct(tags if _strings(tags) else [], TAGS, ITEM_CHARS)
    added = [t for t in proposed_tags if key(t) not in held and grounding(t, source) >= GROUNDED]
    if not added:
        if not proposed_tags:
            refused.append("tags: none proposed, kept")
        elif any(key(t) not in held for t in proposed_tags):
            refused.append("tags: none the notes hold, kept")
    elif len(note.tags) >= TAGS_KEPT:
        refused.append(f"tags: the note has {TAGS_KEPT} already")
    else:
        fields["tags"] = [*note.tags, *added][:TAGS_KEPT]
    return fields, refused


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


async def _ask(llm: LLM, instructions: str, text: str, name: str, schema: dict[str, Any], max_tokens: int) -> str:
    request = Request(messages=[Message(role="system", content=instructions), Message(role="user", content=text)],
                      max_tokens=max_tokens, temperature=0,
                      response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema}})
    completion = await llm.complete(request)
    answer = completion.choices[0].text
    try:
        json.loads(answer)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{llm.name} wrote no valid JSON for the note's {name} (finish: "
                         f"{completion.choices[0].finish_reason}): {answer[:120]!r}") from exc
    return answer
