"""Decode and verify forwards at fixed shapes, replayed as CUDA graphs on a GPU.

A decode step of a small model on a GPU is hundreds of kernel launches and little arithmetic; a CUDA graph
replays them all with one launch. A graph needs fixed shapes, so a step is padded up to a bucket of rows,
tokens per row and attended window (powers of two), and one graph per bucket is captured on first use.
Padding rows and padding tokens write their keys and values to a spare KV slot that no sequence owns.

>>> forward = FixedForward(model, graphs=True)  # model on a GPU, with spare_slots=1  # doctest: +SKIP
>>> logits = forward([[42, 7]], [Row(slot=0, start=10)])  # rows x tokens x vocab  # doctest: +SKIP
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from baobab.engine.model import Llama, Row

SMALLEST_WINDOW = 256  # attended windows below this all cost about the same


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, Tensor]
    logits: Tensor


class FixedForward:
    """`forward(tokens, rows)`: logits (rows x tokens x vocab) of a step whose rows all have as many tokens.

    With `graphs=False` the padded forward runs eagerly (the same arithmetic, on any device).
    """

    def __init__(self, model: Llama, *, graphs: bool) -> None:
        assert model.cache.k.shape[1] > model.cache.slots, "needs spare_slots=1"
        self.model, self.graphs = model, graphs
        self.slots = self.spare = model.cache.slots
        self.max_len = model.cache.max_len
        self.device = model.cache.k.device
        self._captured: dict[tuple[int, int, int], _Captured] = {}
        self._pool = torch.cuda.graph_pool_handle() if graphs else None

    def __call__(self, tokens: list[list[int]], rows: list[Row]) -> Tensor:
        length = len(tokens[0])
        shape = self.shape(len(rows), length, max(row.start for row in rows) + length)
        inputs = self._inputs(tokens, rows, *shape)
        if not self.graphs:
            return self.model.forward_fixed(**inputs)[:len(rows), :length]
        captured = self._captured.get(shape)
        if captured is None:
            captured = self._captured[shape] = self._capture(inputs)
        else:
            for name, value in inputs.items():
                captured.inputs[name].copy_(value, non_blocking=True)
            captured.graph.replay()
        return captured.logits[:len(rows), :length]

    def shape(self, rows: int, length: int, needed: int) -> tuple[int, int, int]:
        """The padded (rows, tokens per row, attended window) of a step whose longest row needs `needed` positions."""
        return (_bucket(rows, self.slots), _bucket(length, self.max_len),
                min(self.max_len, max(SMALLEST_WINDOW, _bucket(needed, self.max_len))))

    def shapes(self, longest: int) -> list[tuple[int, int, int]]:
        """Every shape a step of up to `longest` tokens per row can take, smallest first."""
        needs = [*(1 << i for i in range(SMALLEST_WINDOW.bit_length() - 1, self.max_len.bit_length())), self.max_len]
        return sorted({self.shape(rows, length, need) for rows in range(1, self.slots + 1)
                       for length in range(1, longest + 1) for need in needs if need >= length})

    def _inputs(self, tokens: list[list[int]], rows: list[Row], batch: int, length: int,
                window: int) -> dict[str, Tensor]:
        """The padded inputs, built on the CPU and moved in one copy each."""
        ids = torch.zeros(batch, length, dtype=torch.long)
        slots = torch.full((batch,), self.spare, dtype=torch.long)
        positions = torch.zeros(batch, length, dtype=torch.long)
        write_slots = torch.full((batch, length), self.spare, dtype=torch.long)
        write_at = torch.arange(length).repeat(batch, 1)  # padding: distinct places in the spare slot
        sees = torch.zeros(batch, 1, length, window, dtype=torch.bool)
        sees[:, 0, :, 0] = True  # a padding token must see something, or its softmax is NaN
        for b, (row, row_tokens) in enumerate(zip(rows, tokens, strict=True)):
            n = len(row_tokens)
            placed, mask = row.positions_and_mask(n, torch.device("cpu"))
            ids[b, :n] = torch.tensor(row_tokens)
            slots[b] = row.slot
            positions[b, :n] = torch.tensor(placed)
            write_slots[b, :n] = row.slot
            write_at[b, :n] = torch.arange(row.start, row.start + n)
            if mask is None:
                sees[b, 0, 0, :row.start + 1] = True
            else:
                sees[b, 0, :n, :row.start + n] = mask
        named = {"tokens": ids, "slots": slots, "positions": positions, "write_slots": write_slots,
                 "write_at": write_at, "sees": sees}
        return {name: value.to(self.device, non_blocking=True) for name, value in named.items()}

    def _capture(self, inputs: dict[str, Tensor]) -> _Captured:
        stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up runs write the same keys and values the step would
            for _ in range(2):
                self.model.forward_fixed(**inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits = self.model.forward_fixed(**inputs)
        graph.replay()
        return _Captured(graph, inputs, logits)


def _bucket(n: int, cap: int) -> int:
    """The smallest power of two at least `n`, but never above `cap` when `n` fits under it."""
    size = 1 << max(0, n - 1).bit_length()
    return min(size, cap) if n <= cap else size
