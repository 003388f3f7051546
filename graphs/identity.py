"""Who is acting: every service function takes an `Actor` and scopes by its workspace."""

from __future__ import annotations

__all__ = ["Actor"]

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    workspace_id: str
    user_id: str
