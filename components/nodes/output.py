"""The "output" node: publishes the run's result.

Contract with the compiler and the run manager: the node writes one dict into the reserved
state key ``studio_output`` (`OUTPUT_KEY`). The compiler always declares that key (type
object, replace reducer) and the runtime reads the run's output from it when the run ends.
The dict holds a copy of each listed state field under its own name and, when a template is
set, the rendered text under `Config.target` (default ``"result"``).

A later output node replaces the earlier one's dict, so the last output node reached wins.
Two output nodes must not run in the same step (parallel branches): LangGraph refuses two
writes to a replace field in one step.
"""

from __future__ import annotations

__all__ = ["OUTPUT_KEY", "SPEC", "Config", "build", "register"]

import copy
from typing import Any

from langgraph.runtime import Runtime
from pydantic import Field

from components.base import (
    BuildContext,
    BuiltNode,
    NodeSpec,
    RunContext,
    StrictModel,
    TemplateStr,
)
from components.errors import UserError
from components.registry import Registry
from components.templates import render, template_fields

OUTPUT_KEY = "studio_output"


class Config(StrictModel):
    fields: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="State fields to publish as the run's output, each under its own name "
        "(for example: answer, sources).",
    )
    template: TemplateStr | None = Field(
        default=None,
        description="Optional text to publish, with {{ field }} or {{ field.key }} "
        "placeholders filled from the state (for example: 'Answer: {{ answer }}').",
    )
    target: str = Field(
        default="result",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",
        description="Name under which the template's text appears in the output.",
    )


def _check(node_id: str, config: Config, state_fields: set[str]) -> None:
    where = f"output node {node_id!r}"
    if not config.fields and config.template is None:
        raise UserError(f"{where} publishes nothing: list state fields or write a template")
    for name in config.fields:
        if name in ("messages", OUTPUT_KEY):
            raise UserError(
                f"{where} cannot publish {name!r}; publish a field that holds the answer"
            )
        if name not in state_fields:
            raise UserError(f"{where} publishes {name!r}, which is not a state field; declare it")
    if config.template is not None:
        if config.target in config.fields:
            raise UserError(
                f"{where}: the template's target {config.target!r} is also a published field; "
                "choose another target name"
            )
        unknown = sorted(template_fields(config.template) - state_fields - {"messages"})
        if unknown:
            raise UserError(
                f"{where}: the template reads {', '.join(map(repr, unknown))}, which are not "
                "state fields; declare them or fix the template"
            )


def build(node_id: str, config: Config, ctx: BuildContext) -> BuiltNode:
    """Check the fields at build time; at run time copy them (and the text) into the output."""
    _check(node_id, config, set(ctx.state_fields))
    names = tuple(config.fields)
    template, target = config.template, config.target

    def publish(state: dict[str, Any], runtime: Runtime[RunContext]) -> dict[str, Any]:
        output = {name: copy.deepcopy(state.get(name)) for name in names}
        if template is not None:
            try:
                output[target] = render(template, state)
            except UserError as exc:
                raise UserError(
                    f"output node {node_id!r}: {exc}; make sure an earlier node sets it"
                ) from None
        return {OUTPUT_KEY: output}

    return BuiltNode(fn=publish)


SPEC = NodeSpec(
    type_name="output",
    title="Output",
    group="Flow",
    description="Publishes the run's result: chosen state fields and an optional text "
    "written from a template.",
    config_model=Config,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_node(SPEC)
