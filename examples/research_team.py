"""A team of agents in Python: a tool of your own, structured output, and a pipeline graph that
checkpoints like any other (runs are stored, resumable and forkable).

    baobab run examples/research_team.py:graph --input '{"task": "How many legs does a spider have?"}'
    python examples/research_team.py "How many legs does an ant have?"

Both run on the embedded model; pass `model="openai/gpt-4o-mini"` (or any model string) to the agents
for a remote one.
"""

import sys

from pydantic import BaseModel, Field

from baobab.agents import Agent, Example, ExampleCall, pipeline
from baobab.tools import tool


@tool
def legs(animal: str) -> int:
    """How many legs an animal has (0 if unknown).

    Args:
        animal: the animal's name, e.g. "spider"
    """
    return {"spider": 8, "ant": 6, "insect": 6, "dog": 4, "cat": 4, "bird": 2, "human": 2}.get(
        animal.lower().strip().removesuffix("s"), 0)


class Answer(BaseModel):
    animal: str = Field(max_length=24)  # bounded strings keep a small model's JSON from running on
    legs: int


zoologist = Agent("zoologist", role="a zoologist", instructions="Look facts up with your tools, then answer.",
                  tools=[legs], max_steps=2, max_tokens=64,
                  examples=[Example(task="How many legs does a dog have?", answer="4",
                                    calls=[ExampleCall(tool="legs", arguments={"animal": "dog"}, result="4")])])
reporter = Agent("reporter", role="a reporter", instructions="State the animal and its number of legs.",
                 output=Answer, max_tokens=64,
                 examples=[Example(task="How many legs does a dog have?\n\nWork so far:\n- zoologist: 4\n\nNow do "
                                        "your part.", answer='{"animal": "dog", "legs": 4}')])
graph = pipeline([zoologist, reporter], name="research_team")

if __name__ == "__main__":
    question = sys.argv[1] if len(sys.argv) > 1 else "How many legs does a spider have?"
    result = graph.compile().run({"task": question})
    for said in result.state.messages:  # type: ignore[attr-defined]
        print(f"{said.agent}: {said.content}")
