"""A small order graph for the MCP server's tests: price, a human approves a large order (an interrupt), book.

`book` waits while the file named by $MCP_TEST_GATE is missing (after writing the server's pid beside it), so a
test can kill the server mid-run and resume the thread in a new one.
"""

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel

from baobab.graphs import END, START, Graph, RunContext, append

LIMIT = 10.0  # orders above this price need a human's approval


class Order(BaseModel):
    """Prices an order, asks a human to approve it when it costs more than 10, then books it."""

    item: str
    quantity: int = 1
    price: float = 0.0
    approved: bool = False
    log: Annotated[list[str], append] = []
    output: str = ""


def price(state: Order) -> dict[str, Any]:
    return {"price": state.quantity * 2.5, "log": ["price"]}


def approve(state: Order, ctx: RunContext) -> dict[str, Any]:
    verdict = ctx.interrupt({"question": f"approve {state.quantity} {state.item} for {state.price}?"}) \
        if state.price > LIMIT else True
    return {"approved": bool(verdict), "log": ["approve"]}


async def book(state: Order) -> dict[str, Any]:
    gate = os.environ.get("MCP_TEST_GATE")
    if gate:
        Path(gate + ".pid").write_text(str(os.getpid()))
        while not Path(gate).exists():
            await asyncio.sleep(0.05)
    done = f"booked {state.quantity} {state.item}" if state.approved else f"refused {state.item}"
    return {"output": done, "log": ["book"]}


graph = (Graph(Order, name="orders").node("price", price).node("approve", approve).node("book", book)
         .edge(START, "price").edge("price", "approve").edge("approve", "book").edge("book", END))
