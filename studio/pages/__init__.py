"""The studio's pages, one module each; `register_pages` adds them to NiceGUI."""

from __future__ import annotations

__all__ = ["register_pages"]

from typing import TYPE_CHECKING

from studio.pages import (
    admin_audit,
    admin_members,
    admin_policy,
    admin_secrets,
    admin_tokens,
    analytics,
    editor,
    inbox,
    library,
    login,
    run_detail,
    runs,
)

if TYPE_CHECKING:
    from studio.app import WebStudio


def register_pages(web: WebStudio) -> None:
    login.register(web)
    library.register(web)
    editor.register(web)
    runs.register(web)
    run_detail.register(web)
    inbox.register(web)
    analytics.register(web)
    admin_members.register(web)
    admin_tokens.register(web)
    admin_secrets.register(web)
    admin_policy.register(web)
    admin_audit.register(web)
