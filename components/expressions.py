"""Safe expressions for edge conditions and transforms, evaluated by `simpleeval`.

Expressions read state fields by name and may use a short list of pure functions. There is
no `eval`, no attribute access to private names, and string/number sizes are bounded.
"""

from __future__ import annotations

__all__ = ["check_expression", "evaluate"]

from collections.abc import Mapping
from typing import Any

import simpleeval

from components.errors import UserError

MAX_EXPRESSION_LENGTH = 2_000

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
    return simpleeval.EvalWithCompoundTypes(names=dict(names), functions=_FUNCTIONS)


def check_expression(expression: str) -> str | None:
    """None if the expression parses; otherwise a message saying what is wrong."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        return f"expression is longer than {MAX_EXPRESSION_LENGTH} characters"
    try:
        _evaluator({}).parse(expression)
    except SyntaxError as exc:
        return f"expression {expression!r} does not parse: {exc.msg}"
    return None


def evaluate(expression: str, names: Mapping[str, Any]) -> Any:
    """Evaluate over `names` (the state); any failure is a `UserError` naming the expression."""
    problem = check_expression(expression)
    if problem:
        raise UserError(problem)
    try:
        return _evaluator(names).eval(expression)
    except simpleeval.InvalidExpression as exc:
        raise UserError(f"expression {expression!r} is not allowed: {exc}") from None
    except (ArithmeticError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise UserError(f"expression {expression!r} failed: {exc}") from None
