"""Every action and every role, declared as data (after Datasette's `default_actions.py`).

An action is ``kind:verb`` (``kind`` is the object type it applies to, which is also Casbin's
``obj``). A role is a named set of actions; `auth.rbac` turns these sets into Casbin policy
templates, so this module is the one place to read — and to change — who may do what.

Roles: ``viewer`` ⊂ ``runner`` ⊂ ``editor``; ``approver`` is a viewer who also decides
approvals; ``admin`` may do everything. A workspace's owner is an ``admin`` (there is no
separate owner role). `markdown_table()` renders the table README.md shows.
"""

from __future__ import annotations

__all__ = [
    "ACTIONS",
    "ROLES",
    "ROLE_NAMES",
    "Action",
    "Role",
    "markdown_table",
    "role_actions",
]

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    description: str

    @property
    def kind(self) -> str:
        """The object type the action applies to (``graph`` for ``graph:edit``)."""
        return self.name.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    description: str
    includes: tuple[str, ...] = ()
    grants: tuple[str, ...] = ()


_ACTIONS = (
    Action("graph:read", "See graphs, their versions and their documents."),
    Action("graph:edit", "Create, change and delete graphs; saving makes a new version."),
    Action("graph:publish", "Publish a graph version, so that runs start on it."),
    Action("graph:import", "Import a graph document into the workspace."),
    Action("graph:export", "Export a graph document (secret values are never included)."),
    Action("run:read", "See runs, their steps, events, outputs and costs."),
    Action(
        "run:start",
        "Start runs; a run's starter may also confirm `confirm`-tier calls of their own run.",
    ),
    Action("run:cancel", "Cancel a queued, running or waiting run."),
    Action("approval:read", "See the approval inbox and past decisions."),
    Action("approval:decide:confirm", "Decide `confirm`-tier calls of anyone's runs."),
    Action(
        "approval:decide:admin",
        "Decide `admin`-tier calls of runs someone else started (never one's own).",
    ),
    Action("secret:use", "Run graphs that use the workspace's secrets (by name; values hidden)."),
    Action("secret:manage", "Create, update, rotate and delete the workspace's secrets."),
    Action("member:manage", "Add and remove members, change their roles, revoke their tokens."),
    Action(
        "token:manage",
        "Create and revoke one's own API tokens (a token never does more than its owner's role).",
    ),
    Action("policy:manage", "Change workspace policy, e.g. raise a tool's approval tier."),
    Action("audit:read", "Read and verify the workspace's audit log."),
    Action("analytics:read", "See cost, token and latency dashboards for the whole workspace."),
    Action(
        "budget:manage",
        "Set the workspace's budgets (per workspace, user, graph, run) and custom model prices.",
    ),
)
ACTIONS: dict[str, Action] = {action.name: action for action in _ACTIONS}

_ROLES = (
    Role(
        "viewer",
        "Reads graphs, runs and the approval inbox.",
        grants=("graph:read", "run:read", "approval:read"),
    ),
    Role(
        "runner",
        "A viewer who starts and cancels runs and confirms their own runs' `confirm` calls.",
        includes=("viewer",),
        grants=("run:start", "run:cancel", "secret:use", "token:manage"),
    ),
    Role(
        "editor",
        "A runner who builds graphs: edit, publish, import, export; sees the dashboards.",
        includes=("runner",),
        grants=("graph:edit", "graph:publish", "graph:import", "graph:export", "analytics:read"),
    ),
    Role(
        "approver",
        "A viewer who decides approvals, `confirm` and `admin` tier (not on runs they started).",
        includes=("viewer",),
        grants=("approval:decide:confirm", "approval:decide:admin"),
    ),
    Role(
        "admin",
        "Everything, including members, secrets, policy and the audit log. Owners are admins.",
        grants=tuple(ACTIONS),
    ),
)
ROLE_NAMES: tuple[str, ...] = tuple(role.name for role in _ROLES)
ROLES: dict[str, Role] = {role.name: role for role in _ROLES}


def _resolve(name: str, seen: tuple[str, ...] = ()) -> frozenset[str]:
    if name in seen:
        raise ValueError(f"role {name!r} includes itself (via {' -> '.join(seen)})")
    role = ROLES[name]
    unknown = set(role.grants) - ACTIONS.keys()
    if unknown:
        raise ValueError(f"role {name!r} grants unknown actions {sorted(unknown)}")
    actions = set(role.grants)
    for included in role.includes:
        actions |= _resolve(included, (*seen, name))
    return frozenset(actions)


_ROLE_ACTIONS: dict[str, frozenset[str]] = {name: _resolve(name) for name in ROLE_NAMES}


def role_actions(role: str) -> frozenset[str]:
    """Every action `role` allows (its own grants and those of the roles it includes)."""
    try:
        return _ROLE_ACTIONS[role]
    except KeyError:
        raise KeyError(f"unknown role {role!r}; roles are {', '.join(ROLE_NAMES)}") from None


def markdown_table() -> str:
    """The actions-by-roles table and the list of roles, as Markdown (pasted into README)."""
    head = ["action", "what it allows", *ROLE_NAMES]
    lines = [
        "| " + " | ".join(head) + " |",
        "|---|---|" + ":-:|" * len(ROLE_NAMES),
    ]
    for action in _ACTIONS:
        marks = ["✓" if action.name in _ROLE_ACTIONS[r] else "" for r in ROLE_NAMES]
        lines.append(f"| `{action.name}` | {action.description} | " + " | ".join(marks) + " |")
    lines.append("")
    lines.extend(f"- **{role.name}**: {role.description}" for role in _ROLES)
    return "\n".join(lines) + "\n"
