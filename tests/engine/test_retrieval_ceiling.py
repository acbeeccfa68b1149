"""The speculative benchmark's retrieval ceiling: what retrieval drafting could give at most on a workload."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # engine_speculative.py, environment.py
from engine_speculative import retrieval_ceiling


def test_an_output_seen_before_is_retrievable_and_a_new_one_is_not() -> None:
    workload = [{"workload": "agentic", "group": "first"}, {"workload": "agentic", "group": "again"},
                {"workload": "swe-agent", "group": "turn"}]
    output = [10, 11, 12, 13, 14, 15, 16, 17]
    plain = [{"prompt": [1, 2, 3], "outputs": [output], "decode_s": 1.0},  # nothing to retrieve it from
             {"prompt": [1, 2, 3], "outputs": [output], "decode_s": 1.0},  # its own earlier output, in the history
             {"prompt": [5, 6, 20, 21, 22, 5, 6], "outputs": [[20, 21, 22, 9]], "decode_s": 3.0}]  # copies its prompt
    ceiling = retrieval_ceiling(workload, plain)
    assert ceiling["agentic/first"] == 1.0
    assert ceiling["agentic/again"] == 7.0  # seven decode steps down to one
    assert ceiling["agentic"] == round(2.0 / (1.0 + 1.0 / 7), 2)
    assert ceiling["swe-agent"] == 3.0  # 21 and 22 follow 20 in the prompt; 9 does not follow 22 there
