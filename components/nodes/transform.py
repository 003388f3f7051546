"""The "transform" node: computes state fields with safe expressions.

Each entry of `Config.assign` maps a state field to an expression (see
`components.expressions`: simpleeval, no `eval`). Every expression sees the state as it was
before this node, so the order of the entries does not matter, and each one works on its own
copy of the fields it reads: an expression can neither change the state in place nor hand
another field a shared object. The result must fit the field's declared type.

``messages`` and the runtime's own ``studio_*`` keys (the run output, the untrusted-content
flag that gates side effects) are never assignable: a transform cannot clear a taint.
"""

from __future__ import annotations

__all__ = ["SPEC", "Config", "build", "register"]

import ast
import copy
from collections.abc import Mapping
from typing import Any

from langgraph.runtime import Runtime
from pydantic import Field

from components.base import (
    BuildContext,
    BuiltNode,
    ExpressionStr,
    NodeSpec,
    RunContext,
    StrictModel,
)
from components.errors import UserError
from components.expressions import check_expression, evaluate, parse
from components.registry import Registry

_RESERVED_PREFIX = "studio_"  # runtime keys such as studio_output and studio_tainted
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "list": (list,),
}


class Config(StrictModel):
    assign: dict[str, ExpressionStr] = Field(
        default_factory=dict,
        max_length=100,
        description="For each state field, the expression that computes its new value, "
        "for example total = 'price * quantity' or greeting = 'upper(name)'. "
        "All expressions read the state as it was before this node.",
    )


def _fits(value: Any, field_type: str) -> bool:
    expected = _TYPES.get(field_type)
    if value is None or expected is None:
        return True
    if isinstance(value, bool) and bool not in expected:
        return False
    return isinstance(value, expected)


def _reserved(name: str) -> bool:
    return name == "messages" or name.startswith(_RESERVED_PREFIX)


def _names_read(expression: str) -> frozenset[str]:
    """The names an expression mentions (only those fields are copied for it)."""
    return frozenset(n.id for n in ast.walk(parse(expression.strip())) if isinstance(n, ast.Name))


def _check(node_id: str, config: Config, state_fields: Mapping[str, str]) -> None:
    for target, expression in config.assign.items():
        where = f"transform node {node_id!r}, field {target!r}"
        if _reserved(target) or state_fields.get(target) == "messages":
            raise UserError(
                f"{where}: messages and the runtime's studio_* fields cannot be assigned; "
                "choose another field"
            )
        if target not in state_fields:
            raise UserError(f"{where}: not a state field; declare it in the graph's state")
        problem = check_expression(expression)
        if problem:
            raise UserError(f"{where}: {problem}")


def _compute(
    node_id: str, target: str, expression: str, names: frozenset[str], state: dict[str, Any]
) -> Any:
    snapshot = {name: copy.deepcopy(state[name]) for name in names if name in state}
    try:
        return evaluate(expression, snapshot)
    except UserError as exc:
        raise UserError(
            f"transform node {node_id!r} could not compute field {target!r}: "
            f"{str(exc).rstrip('.')}. "
            "Fix the expression in the node's settings."
        ) from None


def build(node_id: str, config: Config, ctx: BuildContext) -> BuiltNode:
    """Check targets and expressions now; evaluate them over the state when the node runs."""
    _check(node_id, config, ctx.state_fields)
    plan = [
        (target, expression, _names_read(expression), ctx.state_fields[target])
        for target, expression in config.assign.items()
    ]

    def transform(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        update: dict[str, Any] = {}
        for target, expression, names, field_type in plan:
            value = _compute(node_id, target, expression, names, state)
            if not _fits(value, field_type):
                raise UserError(
                    f"transform node {node_id!r}: field {target!r} is declared as "
                    f"{field_type}, but {expression!r} gave a {type(value).__name__}; "
                    "convert the value in the expression (str(), int(), float(), bool())"
                )
            update[target] = value
        return update

    return BuiltNode(fn=transform)


SPEC = NodeSpec(
    type_name="transform",
    title="Transform",
    group="Data",
    description="Sets state fields from safe expressions over the state "
    "(arithmetic, comparisons, text and list functions).",
    config_model=Config,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_node(SPEC)
