"""What the admin pages share: their navigation entries and the "no access" answer.

Each admin page loads its data through a `studio.workspace_admin` service function first;
when that refuses (wrong role, or not a member: the service decides), the page shows
`no_access()` and renders no form at all.
"""

from __future__ import annotations

__all__ = ["add_nav", "no_access"]

from nicegui import ui

from studio.pages.frame import NAV


def add_nav(label: str, path: str, action: str) -> None:
    """Show `label` in the header to roles with `action` (once, however often registered)."""
    entry = (label, path, action)
    if entry not in NAV:
        NAV.append(entry)


def no_access() -> None:
    ui.label("This page is not available to you in this workspace.").classes("p-8 text-lg").mark(
        "no-access"
    )
