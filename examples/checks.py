"""The checker of examples/search.yaml: a verifier scores a finished run, the search keeps the best one."""

import re

from baobab.agents import TeamState


def apples_left(state: TeamState) -> float:
    """1.0 if the run's answer is boxes * apples - eaten, read from its task; else 0.0."""
    boxes, apples, eaten = (int(n) for n in re.findall(r"\d+", state.task)[:3])
    answer = re.findall(r"-?\d+", str(state.output or ""))
    return float(bool(answer) and int(answer[-1]) == boxes * apples - eaten)
