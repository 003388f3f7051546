"""First start of the web studio: an admin account and a demo workspace with the examples.

Runs once, when the database has no user yet. The admin's password is random and shown
once (printed on the console that started the studio); change it with
`studio users set-password`. Nothing here runs again on later starts.
"""

from __future__ import annotations

__all__ = ["DEMO_WORKSPACE", "FirstRun", "bootstrap"]

import json
import secrets
from dataclasses import dataclass
from importlib.resources import files

from sqlalchemy import func, select

from auth.tables import User
from graphs.identity import Actor
from studio.context import Studio

DEMO_WORKSPACE = "demo"
ADMIN_EMAIL = "admin@studio.local"
EXAMPLES = ("support_agent.json", "triage_router.json", "dataset_report.json")


@dataclass(frozen=True, slots=True)
class FirstRun:
    email: str
    password: str
    workspace_id: str


def bootstrap(studio: Studio) -> FirstRun | None:
    """Create the admin and the demo workspace on an empty database; None otherwise."""
    with studio.sessions() as session:
        if session.scalar(select(func.count()).select_from(User)):
            return None
    password = secrets.token_urlsafe(12)
    admin = studio.accounts.create_user(ADMIN_EMAIL, password, "Studio admin")
    studio.accounts.create_workspace(
        "Demo workspace", owner_user_id=admin.user_id, workspace_id=DEMO_WORKSPACE
    )
    studio.rbac.assign_role(DEMO_WORKSPACE, admin.user_id, "admin")
    actor = Actor(DEMO_WORKSPACE, admin.user_id)
    for name in EXAMPLES:
        document = json.loads(files("graphs").joinpath("examples", name).read_text())
        studio.manager.library.create(actor, document, message="example")
    studio.audit.record(
        "studio.bootstrapped", actor="system", workspace_id=DEMO_WORKSPACE, target=admin.user_id
    )
    return FirstRun(ADMIN_EMAIL, password, DEMO_WORKSPACE)
