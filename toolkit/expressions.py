"""Helpers over IR expressions: the names they use, Python source, solving.

The validator resolves every name before an expression reaches the IR, so
these functions never fail on unknown names. `python()` renders an expression
as Python source given the local variable of each referenced field; `solve()`
inverts a size expression for the one field the encoder computes
(`bytes[n * 4]`: n = len(value) // 4, with a divisibility check).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from . import models as ir

# Python precedence, loosest first: parenthesize a child that binds looser.
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "not": 3,
    "in": 4,
    "==": 4,
    "!=": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "|": 5,
    "^": 6,
    "&": 7,
    "<<": 8,
    ">>": 8,
    "+": 9,
    "-": 9,
    "*": 10,
    "/": 10,
    "%": 10,
    "unary": 11,
}
COMPARISONS = frozenset(("==", "!=", "<", "<=", ">", ">="))
BOOLEAN_OPS = frozenset(("and", "or"))


def refs(expr: ir.Expr) -> Iterator[ir.Ref]:
    """Every field reference in `expr`, in source order."""
    if isinstance(expr, ir.Ref):
        yield expr
    elif isinstance(expr, ir.Length):
        yield expr.operand
    elif isinstance(expr, ir.Unary):
        yield from refs(expr.operand)
    elif isinstance(expr, ir.Binary):
        yield from refs(expr.left)
        yield from refs(expr.right)
    elif isinstance(expr, ir.InSet):
        yield from refs(expr.operand)
        for value in expr.values:
            yield from refs(value)


def names(expr: ir.Expr) -> set[str]:
    """The first segment of every reference (`hdr.flags` -> `hdr`)."""
    return {ref.name for ref in refs(expr)}


def python(expr: ir.Expr, var: Callable[[ir.Ref], str]) -> str:
    """Python source for `expr`; `var(ref)` gives the source of a reference."""
    return _render(expr, var, 0)


def _render(expr: ir.Expr, var: Callable[[ir.Ref], str], outer: int) -> str:
    if isinstance(expr, ir.Const):
        text = str(expr.value)
        return f"({text})" if expr.value < 0 and outer >= _PRECEDENCE["unary"] else text
    if isinstance(expr, ir.Member):
        return str(expr.value)
    if isinstance(expr, ir.Ref):
        return var(expr)
    if isinstance(expr, ir.Length):
        return f"len({var(expr.operand)})"
    if isinstance(expr, ir.Unary):
        if expr.op == "not" and isinstance(expr.operand, ir.InSet):
            inner = expr.operand
            own = _PRECEDENCE["in"]
            values = ", ".join(_render(v, var, 0) for v in inner.values)
            text = f"{_render(inner.operand, var, own + 1)} not in {{{values}}}"
            return f"({text})" if own <= outer else text
        if expr.op == "not":
            own = _PRECEDENCE["not"]
            text = f"not {_render(expr.operand, var, own)}"
        else:
            own = _PRECEDENCE["unary"]
            text = f"{expr.op}{_render(expr.operand, var, own)}"
        return f"({text})" if own < outer else text
    if isinstance(expr, ir.InSet):
        own = _PRECEDENCE["in"]
        values = ", ".join(_render(v, var, 0) for v in expr.values)
        text = f"{_render(expr.operand, var, own + 1)} in {{{values}}}"
        return f"({text})" if own <= outer else text
    assert isinstance(expr, ir.Binary)
    own = _PRECEDENCE[expr.op]
    op = "//" if expr.op == "/" else expr.op
    # Comparisons do not chain here: `a < b < c` means (a < b) < c.
    left_outer = own + 1 if expr.op in COMPARISONS else own
    text = f"{_render(expr.left, var, left_outer)} {op} {_render(expr.right, var, own + 1)}"
    return f"({text})" if own < outer else text


def source(expr: ir.Expr) -> str:
    """The expression as the spec wrote it, for error messages."""
    return python(expr, lambda ref: ".".join(ref.path)).replace("//", "/")


def evaluate(expr: ir.Expr, values: dict[str, int]) -> int:
    """The value of `expr` given field values (for tests and the validator)."""
    if isinstance(expr, ir.Const):
        return expr.value
    if isinstance(expr, ir.Member):
        return expr.value
    if isinstance(expr, ir.Ref):
        return values[".".join(expr.path)]
    if isinstance(expr, ir.Length):
        return values["len:" + ".".join(expr.operand.path)]
    if isinstance(expr, ir.Unary):
        operand = evaluate(expr.operand, values)
        if expr.op == "not":
            return int(not operand)
        return -operand if expr.op == "-" else ~operand
    if isinstance(expr, ir.InSet):
        operand = evaluate(expr.operand, values)
        return int(operand in {evaluate(v, values) for v in expr.values})
    assert isinstance(expr, ir.Binary)
    left = evaluate(expr.left, values)
    if expr.op == "and":
        return evaluate(expr.right, values) if left else left
    if expr.op == "or":
        return left if left else evaluate(expr.right, values)
    right = evaluate(expr.right, values)
    operations: dict[str, Callable[[int, int], int]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "/": lambda a, b: a // b,
        "%": lambda a, b: a % b,
        "<<": lambda a, b: a << b,
        ">>": lambda a, b: a >> b,
        "&": lambda a, b: a & b,
        "|": lambda a, b: a | b,
        "^": lambda a, b: a ^ b,
        "==": lambda a, b: int(a == b),
        "!=": lambda a, b: int(a != b),
        "<": lambda a, b: int(a < b),
        "<=": lambda a, b: int(a <= b),
        ">": lambda a, b: int(a > b),
        ">=": lambda a, b: int(a >= b),
    }
    return operations[expr.op](left, right)


def count_refs(expr: ir.Expr, name: str) -> int:
    return sum(1 for ref in refs(expr) if ref.path == (name,))


class Unsolvable(Exception):
    """The expression cannot be inverted for the field (not linear in it)."""


def solve(expr: ir.Expr, name: str, target: ir.Expr) -> tuple[ir.Expr, ir.Expr | None]:
    """Invert `expr == target` for the field `name`, which `expr` uses once.

    Returns (value of the field, remainder): when a remainder expression is
    given, the value is exact only if it is 0 (`bytes[n * 4]` with 6 bytes is an
    encoding error, not n = 1). Raises Unsolvable when the path from the root to
    the field has anything but + - and one * by a positive constant.
    """
    if isinstance(expr, ir.Ref) and expr.path == (name,):
        return target, None
    if not isinstance(expr, ir.Binary) or expr.op not in ("+", "-", "*"):
        raise Unsolvable
    in_left = count_refs(expr.left, name) == 1
    in_right = count_refs(expr.right, name) == 1
    if in_left == in_right:
        raise Unsolvable
    inner, other = (expr.left, expr.right) if in_left else (expr.right, expr.left)
    if expr.op == "+":
        return solve(inner, name, ir.Binary("-", target, other))
    if expr.op == "-":
        if in_left:  # inner - other = t  ->  inner = t + other
            return solve(inner, name, ir.Binary("+", target, other))
        return solve(inner, name, ir.Binary("-", other, target))  # other - inner = t
    # inner * other = t -> inner = t / other, exact only when divisible
    if not isinstance(other, ir.Const) or other.value <= 0:
        raise Unsolvable
    value, remainder = solve(inner, name, ir.Binary("/", target, other))
    if remainder is not None:
        raise Unsolvable  # nested multiplications: keep it simple
    return value, ir.Binary("%", target, other)


def is_plain_ref(expr: ir.Expr | None) -> bool:
    return isinstance(expr, ir.Ref) and len(expr.path) == 1


__all__ = [
    "refs",
    "names",
    "python",
    "source",
    "evaluate",
    "solve",
    "Unsolvable",
    "is_plain_ref",
]
