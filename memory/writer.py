"""What a model writes about notes, as schema-constrained JSON: a new note's keywords, tags and context; which
neighbours to link it to (by id, from the ids shown: the reference A-MEM prompt showed ranks and asked for ids,
so its links never formed) and how those neighbours' context and tags evolve."""

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from baobab.engine import LLM, Message, Request
from baobab.memory.types import LINK_KINDS, Note


class Attributes(BaseModel):
    """A note's description, written by the model."""

    keywords: list[str] = Field(max_length=8)
    tags: list[str] = Field(max_length=5)
    context: str = Field(max_length=400)


class Decision(BaseModel):
    """Links from the new note to neighbours, and new context/tags for the neighbours it changes."""

    links: list[dict[str, Any]]
    evolve: list[dict[str, Any]]


DESCRIBE = ("You file notes in a Zettelkasten. For the note below, give up to 6 keywords, up to 3 tags and a "
            "one-sentence context that says what it is about. Answer in JSON.")
DECIDE = ("You file notes in a Zettelkasten. A new note arrived; below are earlier notes with their ids. Link the "
          "new note to the earlier notes it relates to (kind: supports, contradicts, elaborates or same-topic, with "
          "a short reason), and for linked notes whose context or tags should change in the light of the new note, "
          "give their new context and tags. Answer in JSON; use only the ids shown.")


async def describe(llm: LLM, content: str) -> Attributes:
    """Keywords, tags and context for `content` (JSON that validates: constrained on the local engine)."""
    schema = Attributes.model_json_schema()
    text = await _ask(llm, DESCRIBE, f"Note: {content}", "attributes", schema, 160)
    return Attributes.model_validate_json(text)


async def decide(llm: LLM, note: str, neighbours: Sequence[Note]) -> Decision:
    """Which of `neighbours` to link `note` to, and how they evolve; ids outside `neighbours` cannot be named."""
    ids = [n.id for n in neighbours]
    link = {"type": "object", "properties": {"id": {"enum": ids}, "kind": {"enum": list(LINK_KINDS)},
                                             "reason": {"type": "string", "maxLength": 120}},
            "required": ["id", "kind", "reason"]}
    evolve = {"type": "object", "properties": {"id": {"enum": ids}, "context": {"type": "string", "maxLength": 300},
                                               "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4}},
              "required": ["id", "context", "tags"]}
    schema = {"type": "object", "properties": {"links": {"type": "array", "items": link, "maxItems": len(ids)},
                                               "evolve": {"type": "array", "items": evolve, "maxItems": len(ids)}},
              "required": ["links", "evolve"]}
    shown = "\n".join(f"id {n.id}: {n.content} (context: {n.context}; tags: {', '.join(n.tags)})" for n in neighbours)
    text = await _ask(llm, DECIDE, f"New note: {note}\n\nEarlier notes:\n{shown}", "decision", schema, 320)
    decision = Decision.model_validate_json(text)
    decision.links = [x for x in decision.links if x.get("id") in ids]  # a remote model may ignore the schema
    decision.evolve = [x for x in decision.evolve if x.get("id") in ids]
    return decision


async def _ask(llm: LLM, instructions: str, text: str, name: str, schema: dict[str, Any], max_tokens: int) -> str:
    request = Request(messages=[Message(role="system", content=instructions), Message(role="user", content=text)],
                      max_tokens=max_tokens, temperature=0,
                      response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema}})
    completion = await llm.complete(request)
    answer = completion.choices[0].text
    try:
        json.loads(answer)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{llm.name} wrote no valid JSON for the note's {name} (cut at max_tokens?): "
                         f"{answer[:200]!r}") from exc
    return answer
