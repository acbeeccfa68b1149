"""A small workflow: split a text into sentences, score each in parallel (map), then report (reduce).

    baobab run examples/quickstart.py:graph --input '{"text": "Baobabs live long. They store water."}'
"""

from typing import Annotated

from pydantic import BaseModel

from baobab.graphs import END, START, Graph, Send, append


class Review(BaseModel):
    text: str
    sentences: list[str] = []
    scores: Annotated[list[tuple[int, int]], append] = []  # (sentence index, word count), from parallel tasks
    report: str = ""


class Sentence(BaseModel):
    index: int
    text: str


def split(state: Review) -> dict[str, list[str]]:
    """Cut the text into sentences."""
    return {"sentences": [s.strip() for s in state.text.replace("!", ".").split(".") if s.strip()]}


def fan_out(state: Review) -> list[Send]:
    """One `score` task per sentence, each with its own input."""
    return [Send("score", Sentence(index=i, text=s)) for i, s in enumerate(state.sentences)]


async def score(sentence: Sentence) -> dict[str, list[tuple[int, int]]]:
    """Count a sentence's words (a stand-in for an LLM call)."""
    return {"scores": [(sentence.index, len(sentence.text.split()))]}


def report(state: Review) -> dict[str, str]:
    """Summarise the scores; they arrive in task order whatever order the tasks finished in."""
    longest = max(state.scores, key=lambda s: s[1])
    words = sum(n for _, n in state.scores)
    return {"report": f"{len(state.sentences)} sentences, {words} words; longest: "
                      f"{state.sentences[longest[0]]!r} ({longest[1]} words)"}


graph = (
    Graph(Review, name="quickstart")
    .node("split", split)
    .node("score", score)
    .node("report", report)
    .edge(START, "split")
    .route("split", fan_out, ["score"])
    .edge("score", "report")
    .edge("report", END)
)
