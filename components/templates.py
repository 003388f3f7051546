"""Safe prompt templates: ``{{ field }}`` and ``{{ field.key.0 }}`` look-ups, nothing else.

No attribute access, no calls, no format specs: a template can only read values out of the
state's dicts and lists, so a user-written prompt can never reach Python objects.
"""

from __future__ import annotations

__all__ = ["lookup", "render", "template_fields"]

import json
import re
from collections.abc import Mapping
from typing import Any

from components.errors import UserError

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")


def template_fields(template: str) -> set[str]:
    """The top-level state fields a template reads."""
    return {m.group(1).split(".", 1)[0] for m in _PLACEHOLDER.finditer(template)}


def lookup(values: Mapping[str, Any], path: str) -> Any:
    """Follow a dotted path through dicts (by key) and lists (by index)."""
    current: Any = values
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise UserError(f"template field {path!r} is not in the state")
    return current


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "content") and isinstance(value.content, str):
        return value.content
    return json.dumps(value, default=str, ensure_ascii=False)


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill every ``{{ path }}`` from `values`; a missing field is a `UserError`."""
    return _PLACEHOLDER.sub(lambda m: _text(lookup(values, m.group(1))), template)
