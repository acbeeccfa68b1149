"""The `calculator` tool: arithmetic evaluated from the `ast` of an expression, never with eval."""

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from baobab.tools.tool import Tool, ToolError, tool

MAX_LENGTH = 1000
MAX_BITS = 100_000  # the largest integer result (about 30,000 digits)
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "log": math.log, "log2": math.log2, "log10": math.log10, "exp": math.exp,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "floor": math.floor, "ceil": math.ceil, "abs": abs, "round": round, "min": min, "max": max,
}
BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; ToolError for anything else.

    >>> evaluate("2 * (3 + 4) ** 2 - sqrt(16)")
    94.0
    >>> evaluate("__import__('os')")
    Traceback (most recent call last):
    ...
    baobab.tools.tool.ToolError: '__import__' is not a known function (known: sqrt, log, log2, ...)
    """
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not an arithmetic expression: {exc.msg}") from None
    value = _eval(tree.body)
    if not isinstance(value, int | float):
        raise ToolError("the result is not a real number")
    return value


def _eval(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _eval(node.left), _eval(node.right)
        _check_size(node.op, left, right)
        return BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in FUNCTIONS:
            known = ", ".join(list(FUNCTIONS)[:3])
            raise ToolError(f"{node.func.id!r} is not a known function (known: {known}, ...)")
        return FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args))
    raise ToolError(f"{ast.unparse(node)!r} is not allowed: use numbers, + - * / // % **, parentheses, "
                    f"{', '.join(CONSTANTS)} and {', '.join(FUNCTIONS)}")


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse integer powers and products whose result would be too large to compute quickly."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if isinstance(op, ast.Pow) and abs(left) > 1 and right * left.bit_length() > MAX_BITS:
        raise ToolError(f"{left} ** {right} is too large")
    if isinstance(op, ast.Mult) and left.bit_length() + right.bit_length() > MAX_BITS:
        raise ToolError("the product is too large")


def calculator() -> Tool:
    """A tool evaluating arithmetic expressions safely.

    >>> calculator().run_sync({"expression": "17 * 23"}).content
    '391'
    """

    @tool(name="calculator")
    def calculate(expression: str) -> str:
        """Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, pi, e and functions such as
        sqrt, log, exp, sin, cos, tan, floor, ceil, abs, round, min and max.

        Args:
            expression: for example "2 * (3 + 4) ** 2 - sqrt(16)".
        """
        return repr(evaluate(expression))

    return calculate
