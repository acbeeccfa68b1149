"""Decode and verify forwards at fixed shapes, replayed as CUDA graphs on a GPU.

A decode step of a small model on a GPU is hundreds of kernel launches and little arithmetic; a CUDA graph
replays them all with one launch. A graph needs fixed shapes, so a step is padded up to a bucket of rows,
tokens per row and attended window (powers of two), and one graph per bucket is captured on first use.
Padding rows and padding tokens write their keys and values to a spare KV slot that no sequence owns.

>>> forward = FixedForward(model, graphs=True)  # model on a GPU, with spare_slots=1  # doctest: +SKIP
>>> logits = forward([[42, 7]], [Row(slot=0, start=10)])  # rows x tokens x vocab  # doctest: +SKIP
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from baobab.engine.model import Llama, Row

SMALLEST_WINDOW = 256  # attended windows below this all cost about the same


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    logits: Tensor


class _Inputs:
    """Every input of one padded shape packed in one byte buffer, filled on the host through numpy views and
    moved to the device in one copy (six tensors, built and copied one by one, took 0.43 ms of a 3.5 ms step on
    an H100)."""

    NAMES = ("tokens", "positions", "write_slots", "write_at")  # batch x length each, int64; then slots, sees

    def __init__(self, batch: int, length: int, window: int, spare: int, device: torch.device) -> None:
        ints = 4 * batch * length + batch
        self.host = torch.zeros(8 * ints + batch * length * window, dtype=torch.uint8)
        self.device = self.host if device.type == "cpu" else torch.empty_like(self.host, device=device)
        numbers = self.host[:8 * ints].view(torch.int64).numpy()
        self.sees = self.host[8 * ints:].view(torch.bool).view(batch, length, window).numpy()
        self.grids = numbers[:-batch].reshape(4, batch, length)  # tokens, positions, write_slots, write_at
        self.slots = numbers[-batch:]
        self.slots[:], self.grids[2] = spare, spare  # padding writes to the spare slot,
        self.grids[3] = np.arange(length)  # at distinct places in it
        self.sees[:, :, 0] = True  # and must see something, or its softmax is NaN
        self.empty = self.host.clone()  # padding throughout: what every step starts from
        on_device, ints_on_device = self.device[8 * ints:].view(torch.bool), self.device[:8 * ints].view(torch.int64)
        grids = ints_on_device[:-batch].view(4, batch, length)
        self.tensors = {name: grids[i] for i, name in enumerate(self.NAMES)} | {
            "slots": ints_on_device[-batch:], "sees": on_device.view(batch, 1, length, window)}

    def fill(self, tokens: list[list[int]], rows: list[Row]) -> dict[str, Tensor]:
        """The inputs of a step of these rows, on the device."""
        self.host.copy_(self.empty)
        ids, positions, write_slots, write_at = self.grids
        for b, (row, row_tokens) in enumerate(zip(rows, tokens, strict=True)):
            n = len(row_tokens)
            ids[b, :n] = row_tokens
            self.slots[b] = row.slot
            positions[b, :n] = np.arange(row.start, row.start + n)
            write_slots[b, :n] = row.slot
            write_at[b, :n] = np.arange(row.start, row.start + n)
            self.sees[b, :n, :row.start] = True
            self.sees[b, :n, row.start:row.start + n] = np.tri(n, dtype=bool)
        if self.device is not self.host:
            self.device.copy_(self.host, non_blocking=True)  # pageable memory: staged before this returns
        return self.tensors


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
        self._inputs: dict[tuple[int, int, int], _Inputs] = {}
        self._captured: dict[tuple[int, int, int], _Captured] = {}
        self._pool = torch.cuda.graph_pool_handle() if graphs else None

    def __call__(self, tokens: list[list[int]], rows: list[Row]) -> Tensor:
        length = len(tokens[0])
        shape = self.shape(len(rows), length, max(row.start for row in rows) + length)
        if shape not in self._inputs:
            self._inputs[shape] = _Inputs(*shape, self.spare, self.device)
        inputs = self._inputs[shape].fill(tokens, rows)
        if not self.graphs:
            return self.model.forward_fixed(**inputs)[:len(rows), :length]
        captured = self._captured.get(shape)
        if captured is None:
            captured = self._captured[shape] = self._capture(inputs)
        else:
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
        return _Captured(graph, logits)


def _bucket(n: int, cap: int) -> int:
    """The smallest power of two at least `n`, but never above `cap` when `n` fits under it."""
    size = 1 << max(0, n - 1).bit_length()
    return min(size, cap) if n <= cap else size
