"""Safe expressions for edge conditions and transforms, evaluated by `simpleeval`.

Expressions read state fields by name and may use a short list of pure functions. There is
no `eval`, no attribute access at all (so no method calls that could change the state), and
string, number and expression sizes are bounded so one expression cannot stall a worker.
"""

from __future__ import annotations

__all__ = ["PARSE_LOCK", "check_expression", "evaluate", "parse"]

import ast
import functools
import operator
import threading
from collections.abc import Mapping
from typing import Any

import simpleeval

from components.errors import UserError

MAX_EXPRESSION_LENGTH = 2_000
MAX_NODES = 300
MAX_INT_BITS = 4_096

# CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, so two
# threads running `ast.parse` at once can fail with "SystemError: AST constructor recursion
# depth mismatch" (python/cpython#106905). The studio's code that parses takes this lock
# first: these expressions, Casbin's matcher (parsed on every enforce, `auth.rbac`) and building
# a LangGraph graph (`graphs.compiler`: `inspect.signature` of builtin reducers and node
# functions' source are parsed). Reentrant: compiling a graph evaluates and checks expressions.
PARSE_LOCK = threading.RLock()


@functools.lru_cache(maxsize=4096)
def parse(expression: str) -> ast.Expression:
    """`ast.parse(expression, mode="eval")`, one parse at a time (see PARSE_LOCK) and cached:
    an edge condition is evaluated at every step that reaches it. The tree is shared: read it,
    never change it."""
    with PARSE_LOCK:
        return ast.parse(expression, mode="eval")


def _bounded(result: Any) -> Any:
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise simpleeval.InvalidExpression(f"number larger than {MAX_INT_BITS} bits")
    return result


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _power(base: Any, exponent: Any) -> Any:
    ints = isinstance(base, int) and isinstance(exponent, int)
    if ints and exponent > 0 and _bits(base) * exponent > MAX_INT_BITS * 2:
        raise simpleeval.InvalidExpression(f"power larger than {MAX_INT_BITS} bits")
    return _bounded(simpleeval.safe_power(base, exponent))


def _multiply(left: Any, right: Any) -> Any:
    if _bits(left) + _bits(right) > MAX_INT_BITS * 2:
        raise simpleeval.InvalidExpression(f"product larger than {MAX_INT_BITS} bits")
    return _bounded(simpleeval.safe_mult(left, right))


def _shift(value: Any, by: Any) -> Any:
    if isinstance(by, int) and by > MAX_INT_BITS:
        raise simpleeval.InvalidExpression(f"shift larger than {MAX_INT_BITS} bits")
    return _bounded(operator.lshift(value, by))


_OPERATORS = {
    **simpleeval.DEFAULT_OPERATORS,
    ast.Pow: _power,
    ast.Mult: _multiply,
    ast.LShift: _shift,
    ast.Add: lambda a, b: _bounded(simpleeval.safe_add(a, b)),
}
_FORBIDDEN = (ast.Attribute, ast.Lambda, ast.NamedExpr, ast.Starred, ast.Await, ast.Yield)

_FUNCTIONS: dict[str, Any] = {
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "sum": sum,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "contains": lambda haystack, needle: needle in haystack,
    "get": lambda mapping, key, default=None: (
        mapping.get(key, default) if isinstance(mapping, Mapping) else default
    ),
}


def _evaluator(names: Mapping[str, Any]) -> simpleeval.EvalWithCompoundTypes:
    return simpleeval.EvalWithCompoundTypes(
        names=dict(names), functions=_FUNCTIONS, operators=_OPERATORS
    )


def check_expression(expression: str) -> str | None:
    """None if the expression is allowed; otherwise a message saying what is wrong."""
    if not expression.strip():
        return "expression is empty"
    if len(expression) > MAX_EXPRESSION_LENGTH:
        return f"expression is longer than {MAX_EXPRESSION_LENGTH} characters"
    try:
        tree = parse(expression.strip())
    except SyntaxError as exc:
        return f"expression {expression!r} does not parse: {exc.msg}"
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        return f"expression {expression!r} is too complex (over {MAX_NODES} parts)"
    for node in nodes:
        if isinstance(node, _FORBIDDEN):
            what = "attribute access" if isinstance(node, ast.Attribute) else type(node).__name__
            return (
                f"expression {expression!r} uses {what}, which is not allowed; "
                "read fields as x['key'] and use the listed functions"
            )
    return None


def evaluate(expression: str, names: Mapping[str, Any]) -> Any:
    """Evaluate over `names` (the state); any failure is a `UserError` naming the expression."""
    problem = check_expression(expression)
    if problem:
        raise UserError(problem)
    try:
        return _evaluator(names).eval(expression, previously_parsed=parse(expression.strip()).body)
    except simpleeval.InvalidExpression as exc:
        raise UserError(f"expression {expression!r} is not allowed: {exc}") from None
    except (ArithmeticError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise UserError(f"expression {expression!r} failed: {exc}") from None
