"""A node's config form, generated from its component's JSON schema.

One widget per field, chosen by type: text (a text area for templates), number, switch,
select for fixed choices, tool / secret / graph pickers for marked fields, and a JSON box
for nested objects. Field descriptions are the help text. Every change calls `on_change`
with the whole new config; values are validated by the graph validation, not here.
"""

from __future__ import annotations

__all__ = ["config_form"]

import json
from collections.abc import Callable, Mapping
from typing import Any

from nicegui import ui

from components.base import field_kind

OnChange = Callable[[dict[str, Any]], Any]


def config_form(
    schema: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    choices: Mapping[str, list[str]],
    on_change: OnChange,
    readonly: bool,
) -> None:
    """Render the form; `choices` maps a field kind (tool, secret, graph) to its options."""
    values = dict(config)

    def setter(name: str) -> Callable[[Any], None]:
        def set_value(value: Any) -> None:
            if value is None or value == "":
                values.pop(name, None)
            else:
                values[name] = value
            on_change(dict(values))

        return set_value

    for name, prop in (schema.get("properties") or {}).items():
        current = values.get(name, prop.get("default"))
        with ui.column().classes("w-full gap-0").props(f'data-field="{name}"'):
            _widget(name, prop, current, choices, setter(name), readonly)
            if prop.get("description"):
                ui.label(str(prop["description"])).classes("text-xs text-gray-500")


def _widget(
    name: str,
    prop: Mapping[str, Any],
    current: Any,
    choices: Mapping[str, list[str]],
    set_value: Callable[[Any], None],
    readonly: bool,
) -> None:
    title = str(prop.get("title") or name)
    kind = field_kind(dict(prop))
    types = _types(prop)
    element: Any
    if kind in ("tool", "secret", "graph") and not types & {"object"}:
        options = sorted(set(choices.get(kind, [])) | set(_as_list(current)))
        multiple = "array" in types
        element = ui.select(
            options,
            label=title,
            value=_as_list(current) if multiple else current,
            multiple=multiple,
            clearable=True,
            on_change=lambda e: set_value(e.value),
        )
    elif enum := _enum(prop):
        element = ui.select(
            enum, label=title, value=current, on_change=lambda e: set_value(e.value)
        )
    elif types & {"integer", "number"} and not types & {"string", "object", "array"}:
        element = ui.number(
            title,
            value=current,
            min=prop.get("minimum"),
            max=prop.get("maximum"),
            on_change=lambda e: set_value(
                int(e.value) if "integer" in types and e.value is not None else e.value
            ),
        )
    elif types == {"boolean"}:
        element = ui.switch(title, value=bool(current), on_change=lambda e: set_value(e.value))
    elif types & {"object", "array"}:
        element = _json_box(title, current, set_value)
    else:
        area = kind == "template" or int(prop.get("maxLength") or 0) > 200
        make = ui.textarea if area else ui.input
        element = make(
            title,
            value="" if current is None else str(current),
            on_change=lambda e: set_value(e.value),
        ).props("debounce=400 autogrow" if area else "debounce=400")
    element.classes("w-full").props("outlined dense")
    if readonly:
        element.props("readonly disable")


def _json_box(title: str, current: Any, set_value: Callable[[Any], None]) -> Any:
    text = json.dumps(current, indent=2, ensure_ascii=False) if current is not None else ""
    box = ui.textarea(title, value=text).props("autogrow debounce=600 input-class=font-mono")

    def parsed(event: Any) -> None:
        raw = str(event.value or "").strip()
        try:
            value = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            box.props.update({"error": True, "error-message": f"not valid JSON: {exc.msg}"})
            return
        box.props.update({"error": False, "error-message": ""})
        set_value(value)

    box.on_value_change(parsed)
    return box


def _types(prop: Mapping[str, Any]) -> set[str]:
    found = {str(prop["type"])} if "type" in prop else set()
    for option in prop.get("anyOf") or []:
        if isinstance(option, Mapping) and "type" in option:
            found.add(str(option["type"]))
    return found - {"null"}


def _enum(prop: Mapping[str, Any]) -> list[Any] | None:
    if "enum" in prop:
        return list(prop["enum"])
    for option in prop.get("anyOf") or []:
        if isinstance(option, Mapping) and "enum" in option:
            return list(option["enum"])
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
