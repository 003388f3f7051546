"""`studio` administration: users, workspaces, members, API tokens, secrets, the audit log.

These are operator commands: whoever runs them holds the database and its vault key file,
and the audit log records them as the OS user (`STUDIO_USER` overrides it). With
``STUDIO_TOKEN`` set they act as that API token's principal instead: the token's own
workspace only (any other is "not found"), and only what both the token's scopes and its
owner's current role allow (`member:manage`, `token:manage`, `secret:manage`,
`audit:read`). Commands that span every workspace (users, workspaces, key rotation) are
refused to tokens.

Secret values and passwords are read from stdin (a terminal is prompted without echo),
never from the command line, and never printed. A token's value is printed once, when it
is created.

This module also holds what the graph commands of `studio.cli` share with it: opening the
studio for a command, the acting identity, and printing.
"""

from __future__ import annotations

__all__ = [
    "INVALID_TOKEN",
    "TOKEN_ENV",
    "acting_actor",
    "add_admin_commands",
    "emit",
    "open_cli_studio",
    "plain",
]

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from auth.actions import ACTIONS, ROLE_NAMES, role_actions
from auth.audit import AUDIT_ACTIONS, MAX_PAGE
from auth.vault import KEY_ENV, MAX_SECRET_BYTES, SECRET_NAME
from components.errors import Forbidden, NotFound, UserError
from graphs.headless import LOCAL_WORKSPACE, local_actor
from graphs.identity import Actor
from studio.context import Studio, open_studio
from studio.settings import Settings
from studio.workspace_admin import change_member
from studio.workspace_admin import token_status as _token_status

TOKEN_ENV = "STUDIO_TOKEN"  # noqa: S105 (the variable's name, not a token)
INVALID_TOKEN = "the API token is not valid"  # noqa: S105 (a message)
MAX_EXPIRES_DAYS = 3650
_ANCHOR = re.compile(r"(\d{1,18}):([0-9a-f]{64})")


# --- shared with studio.cli ----------------------------------------------------------------


def plain(value: Any) -> Any:
    """Dataclasses, dicts, lists and datetimes as JSON-ready values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        items = sorted(value) if isinstance(value, frozenset | set) else value
        return [plain(v) for v in items]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def emit(args: argparse.Namespace, value: Any, text: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(plain(value), indent=2, default=str, ensure_ascii=False))
    else:
        print(text(value))


@contextmanager
def open_cli_studio(args: argparse.Namespace, *, resume: bool = False) -> Iterator[Studio]:
    """The full studio (RBAC, vault, audit, redaction) on `--db` or the settings' database."""
    settings = Settings()
    db = Path(args.db) if args.db else settings.db_path
    with open_studio(settings, db_path=db, resume=resume) as studio:
        yield studio


def _env_token() -> str | None:
    value = os.environ.get(TOKEN_ENV, "").strip()
    return value or None


def _token_principal(studio: Studio, token: str) -> Actor:
    try:
        return studio.token_actor(token)
    except NotFound:
        raise UserError(INVALID_TOKEN) from None


def acting_actor(studio: Studio, as_user: str | None = None) -> Actor:
    """The API token's principal when ``STUDIO_TOKEN`` is set, else the local operator."""
    token = _env_token()
    if token is None:
        return local_actor(as_user)
    if as_user:
        raise UserError(f"--as cannot be used with {TOKEN_ENV}: the token decides who acts")
    return _token_principal(studio, token)


# --- who may administer what -----------------------------------------------------------------


def _operator() -> str:
    return local_actor().user_id


def _operator_only(command: str) -> None:
    if _env_token() is not None:
        raise Forbidden(
            f"`studio {command}` is an operator command for the whole studio; an API token "
            f"cannot run it (unset {TOKEN_ENV})"
        )


def _token_may(studio: Studio, principal: Actor, action: str) -> bool:
    return studio.rbac.authorize_token(
        principal.workspace_id, principal.user_id, principal.scopes or frozenset(), action
    ).allowed


def _admin_in(
    studio: Studio, workspace_id: str, action: str, *, allow_local: bool = False
) -> tuple[Actor, bool]:
    """(who acts in `workspace_id`, whether through an API token) — or NotFound/Forbidden."""
    token = _env_token()
    if token is None:
        if not (allow_local and workspace_id == LOCAL_WORKSPACE):
            studio.accounts.get_workspace(workspace_id)
        return Actor(workspace_id, _operator()), False
    principal = _token_principal(studio, token)
    if principal.workspace_id != workspace_id:
        raise NotFound(f"workspace {workspace_id!r} not found")
    _require_token(studio, principal, action)
    return principal, True


def _require_token(studio: Studio, principal: Actor, action: str) -> None:
    """The token's scopes and its owner's current role must both allow `action`."""
    decision = studio.rbac.authorize_token(
        principal.workspace_id, principal.user_id, principal.scopes or frozenset(), action
    )
    if not decision.allowed:
        raise Forbidden(f"this API token may not {action!r}: {decision.reason}")


def _user_id(studio: Studio, email: str) -> str:
    user = studio.accounts.get_user_by_email(email)
    if user.disabled_at is not None:
        raise UserError(f"user {user.email!r} is disabled")
    return user.user_id


def _email_of(studio: Studio, user_id: str) -> str:
    try:
        return studio.accounts.get_user(user_id).email
    except NotFound:
        return user_id


def _read_secret(what: str) -> str:
    """A value from stdin (a terminal is prompted without echo); one trailing newline off."""
    stream = sys.stdin
    if stream is None:
        raise UserError(f"no stdin to read the {what} from")
    if stream.isatty():
        value = getpass.getpass(f"{what}: ")
    else:
        value = stream.read(MAX_SECRET_BYTES + 2)
        if stream.read(1):
            raise UserError(f"the {what} on stdin is larger than {MAX_SECRET_BYTES} bytes")
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise UserError(f'no {what} on stdin; pipe it in, for example: printf %s "$X" | studio …')
    return value


# --- users and workspaces ------------------------------------------------------------------


def cmd_users_create(args: argparse.Namespace) -> int:
    _operator_only("users create")
    password = _read_secret("password") if args.password_stdin else None
    with open_cli_studio(args) as studio:
        user = studio.accounts.create_user(args.email, password, args.name or "")
        studio.audit.record(
            "user.created",
            actor=_operator(),
            workspace_id=None,
            target=user.user_id,
            details={"email": user.email, "password": user.has_password},
        )
    how = "password" if user.has_password else "no password: signs in through OIDC only"
    emit(args, user, lambda u: f"user {u.email} created (id {u.user_id}; {how})")
    return 0


def cmd_users_set_password(args: argparse.Namespace) -> int:
    _operator_only("users set-password")
    password = _read_secret("password")
    with open_cli_studio(args) as studio:
        user = studio.accounts.get_user_by_email(args.email)
        user = studio.accounts.set_password(user.user_id, password)
        studio.web_sessions.end_user_sessions(user.user_id)
        studio.audit.record(
            "user.password_set", actor=_operator(), workspace_id=None, target=user.user_id
        )
    emit(args, user, lambda u: f"password of {u.email} changed; their sessions ended")
    return 0


def cmd_users_disable(args: argparse.Namespace) -> int:
    _operator_only("users disable")
    with open_cli_studio(args) as studio:
        user = studio.accounts.get_user_by_email(args.email)
        studio.disable_user(user.user_id, by=_operator())  # roles and tokens go too
        user = studio.accounts.get_user(user.user_id)
    emit(
        args,
        user,
        lambda u: (
            f"user {u.email} disabled: their sessions ended and their API tokens stop working"
        ),
    )
    return 0


def cmd_workspaces_create(args: argparse.Namespace) -> int:
    _operator_only("workspaces create")
    if args.id == LOCAL_WORKSPACE:
        raise UserError(f"workspace id {LOCAL_WORKSPACE!r} is reserved for the local operator")
    with open_cli_studio(args) as studio:
        owner = _user_id(studio, args.owner)
        ws = studio.accounts.create_workspace(args.name, owner_user_id=owner, workspace_id=args.id)
        studio.rbac.assign_role(ws.workspace_id, owner, "admin")
        operator = _operator()
        studio.audit.record(
            "workspace.created",
            actor=operator,
            workspace_id=ws.workspace_id,
            target=ws.workspace_id,
            details={"name": ws.name, "owner": owner},
        )
        studio.audit.record(
            "member.added",
            actor=operator,
            workspace_id=ws.workspace_id,
            target=owner,
            details={"email": args.owner.strip().lower(), "role": "admin"},
        )
    emit(
        args,
        ws,
        lambda w: f"workspace {w.workspace_id} ({w.name!r}) created; {args.owner} is its admin",
    )
    return 0


# --- members -------------------------------------------------------------------------------


def cmd_members_add(args: argparse.Namespace) -> int:
    if args.role not in ROLE_NAMES:
        raise UserError(f"unknown role {args.role!r}; choose one of {', '.join(ROLE_NAMES)}")
    with open_cli_studio(args) as studio:
        actor, _ = _admin_in(studio, args.workspace, "member:manage")
        user_id = _user_id(studio, args.email)
        email = args.email.strip().lower()
        held = change_member(studio, args.workspace, user_id, email, args.role)
        result = {"workspace_id": args.workspace, "email": email, "role": args.role}
        if held == {args.role}:
            emit(args, result, lambda _: f"{email} already has role {args.role}")
            return 0
        details: dict[str, Any] = {"email": email, "role": args.role}
        if held:
            details["previous"] = sorted(held)
        studio.audit.record(
            "member.role_changed" if held else "member.added",
            actor=actor.user_id,
            workspace_id=args.workspace,
            target=user_id,
            details=details,
        )
    was = f" (was {', '.join(sorted(held))})" if held else ""
    emit(args, result, lambda _: f"{email} is {args.role} in workspace {args.workspace}{was}")
    return 0


def cmd_members_remove(args: argparse.Namespace) -> int:
    with open_cli_studio(args) as studio:
        actor, _ = _admin_in(studio, args.workspace, "member:manage")
        user = studio.accounts.get_user_by_email(args.email)
        held = change_member(studio, args.workspace, user.user_id, user.email, None)
        if not held:
            raise NotFound(f"{user.email} is not a member of workspace {args.workspace!r}")
        revoked = studio.tokens.revoke_owner_tokens(user.user_id, workspace_id=args.workspace)
        studio.audit.record(
            "member.removed",
            actor=actor.user_id,
            workspace_id=args.workspace,
            target=user.user_id,
            details={"email": user.email, "roles": sorted(held), "tokens_revoked": revoked},
        )
    result = {"workspace_id": args.workspace, "email": user.email, "tokens_revoked": revoked}
    emit(
        args,
        result,
        lambda _: (
            f"{user.email} removed from workspace {args.workspace} ({revoked} API token(s) revoked)"
        ),
    )
    return 0


def cmd_members_list(args: argparse.Namespace) -> int:
    with open_cli_studio(args) as studio:
        _admin_in(studio, args.workspace, "member:manage")
        rows: list[dict[str, Any]] = []
        for user_id, roles in studio.rbac.members(args.workspace).items():
            try:
                user = studio.accounts.get_user(user_id)
                email, name, disabled = user.email, user.display_name, user.disabled_at
            except NotFound:
                email, name, disabled = "", "", None
            rows.append(
                {
                    "user_id": user_id,
                    "email": email,
                    "display_name": name,
                    "roles": sorted(roles),
                    "disabled": disabled is not None,
                }
            )
    rows.sort(key=lambda r: str(r["email"] or r["user_id"]))

    def text(items: list[dict[str, Any]]) -> str:
        lines = [
            f"{r['email'] or r['user_id']}  {','.join(r['roles'])}"
            + ("  (disabled)" if r["disabled"] else "")
            for r in items
        ]
        return "\n".join(lines) or "no members"

    emit(args, rows, text)
    return 0


# --- API tokens ----------------------------------------------------------------------------


def _token_actions(text: str) -> list[str]:
    actions = sorted({a.strip() for a in text.split(",") if a.strip()})
    if not actions:
        raise UserError("--actions needs at least one action, for example run:read,run:start")
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise UserError(
            f"unknown action(s) {', '.join(map(repr, unknown))}; actions are: " + ", ".join(ACTIONS)
        )
    return actions


def cmd_tokens_create(args: argparse.Namespace) -> int:
    actions = _token_actions(args.actions)
    expires_in = None
    if args.expires_days is not None:
        if not 0 < args.expires_days <= MAX_EXPIRES_DAYS:
            raise UserError(f"--expires-days must be 1 to {MAX_EXPIRES_DAYS}")
        expires_in = timedelta(days=args.expires_days)
    with open_cli_studio(args) as studio:
        actor, via_token = _admin_in(studio, args.workspace, "token:manage")
        owner = _user_id(studio, args.user)
        if via_token:
            if owner != actor.user_id:
                raise Forbidden("an API token may create tokens only for its own user")
            beyond = sorted(set(actions) - (actor.scopes or frozenset()))
            if beyond:
                raise Forbidden(
                    f"this API token cannot create a token with actions it does not carry: "
                    f"{', '.join(beyond)}"
                )
        roles = studio.rbac.roles_of(args.workspace, owner)
        if not roles:
            raise UserError(
                f"{args.user} is not a member of workspace {args.workspace!r}; add them with "
                "`studio members add` first"
            )
        allowed = frozenset().union(*(role_actions(r) for r in roles))
        value, view = studio.tokens.create_token(
            Actor(args.workspace, owner), name=args.name, actions=actions, expires_in=expires_in
        )
        studio.audit.record(
            "token.created",
            actor=actor.user_id,
            workspace_id=args.workspace,
            target=view.token_id,
            details={
                "name": view.name,
                "owner": owner,
                "actions": list(view.actions),
                "expires_at": view.expires_at.isoformat() if view.expires_at else None,
            },
        )
    beyond_role = sorted(set(actions) - allowed)
    if beyond_role and not args.json:
        print(
            f"note: role(s) {', '.join(sorted(roles))} of {args.user} do not allow "
            f"{', '.join(beyond_role)}; the token cannot do those while the role stays",
            file=sys.stderr,
        )

    def text(_: Any) -> str:
        until = view.expires_at.isoformat() if view.expires_at else "never"
        return (
            f"token {view.token_id} ({view.name!r}) for {args.user} in workspace "
            f"{args.workspace}; actions {', '.join(view.actions)}; expires {until}\n"
            f"{value}\n"
            "This value is shown only now (the studio keeps its hash): store it, for "
            f"example in {TOKEN_ENV}."
        )

    emit(args, {"token": value, **plain(view)}, text)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    with open_cli_studio(args) as studio:
        actor, via_token = _admin_in(studio, args.workspace, "token:manage")
        every = not via_token or _token_may(studio, actor, "member:manage")
        views = studio.tokens.list_tokens(actor, all_owners=every)
        rows = [
            {**plain(v), "owner": _email_of(studio, v.user_id), "status": _token_status(v)}
            for v in views
        ]

    def text(items: list[dict[str, Any]]) -> str:
        lines = [
            f"{r['token_id']}  sk_{r['prefix']}_…  {r['status']}  {r['name']!r}  {r['owner']}  "
            f"{','.join(r['actions'])}  expires {r['expires_at'] or 'never'}"
            for r in items
        ]
        return "\n".join(lines) or "no tokens"

    emit(args, rows, text)
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    with open_cli_studio(args) as studio:
        actor, via_token = _admin_in(studio, args.workspace, "token:manage")
        any_owner = not via_token or _token_may(studio, actor, "member:manage")
        before = next(
            (
                t
                for t in studio.tokens.list_tokens(actor, all_owners=True)
                if t.token_id == args.token_id
            ),
            None,
        )
        view = studio.tokens.revoke_token(actor, args.token_id, any_owner=any_owner)
        already = before is not None and before.revoked_at is not None
        if not already:
            studio.audit.record(
                "token.revoked",
                actor=actor.user_id,
                workspace_id=args.workspace,
                target=view.token_id,
                details={"name": view.name, "owner": view.user_id},
            )
    state = "was already revoked" if already else "revoked"
    emit(args, view, lambda v: f"token {v.token_id} ({v.name!r}) {state}")
    return 0


# --- secrets -------------------------------------------------------------------------------


def cmd_secrets_set(args: argparse.Namespace) -> int:
    with open_cli_studio(args) as studio:
        actor, _ = _admin_in(studio, args.workspace, "secret:manage", allow_local=True)
        if not SECRET_NAME.fullmatch(args.name):
            raise UserError(
                f"secret name {args.name[:80]!r} is invalid: use a letter, then letters, "
                "digits or '_' (at most 64)"
            )
        value = _read_secret(f"value of secret {args.name}")
        existed = any(s.name == args.name for s in studio.vault.list_secrets(actor))
        info = studio.vault.set_secret(actor, args.name, value)
    done = "updated" if existed else "created"
    emit(
        args,
        {"workspace_id": args.workspace, **plain(info)},
        lambda _: f"secret {info.name} {done} in workspace {args.workspace} (key {info.key_id})",
    )
    return 0


def cmd_secrets_list(args: argparse.Namespace) -> int:
    with open_cli_studio(args) as studio:
        actor, _ = _admin_in(studio, args.workspace, "secret:manage", allow_local=True)
        infos = studio.vault.list_secrets(actor)

    def text(items: list[Any]) -> str:
        lines = [
            f"{s.name}  updated {s.updated_at:%Y-%m-%d %H:%M:%S} by {s.updated_by}  key {s.key_id}"
            for s in items
        ]
        return "\n".join(lines) or "no secrets"

    emit(args, infos, text)
    return 0


def cmd_secrets_rm(args: argparse.Namespace) -> int:
    with open_cli_studio(args) as studio:
        actor, _ = _admin_in(studio, args.workspace, "secret:manage", allow_local=True)
        studio.vault.delete_secret(actor, args.name)
    result = {"workspace_id": args.workspace, "name": args.name, "deleted": True}
    emit(args, result, lambda _: f"secret {args.name} deleted from workspace {args.workspace}")
    return 0


def cmd_secrets_rotate_key(args: argparse.Namespace) -> int:
    _operator_only("secrets rotate-key")
    with open_cli_studio(args) as studio:
        ring = studio.vault.keyring
        if ring.path is None:  # STUDIO_SECRET_KEY: the operator puts the new key first
            keys = ring.material()
            if len(keys) < 2:
                raise UserError(
                    f"the vault keys come from {KEY_ENV}: put a new key in front of the old "
                    f"one ({KEY_ENV}=NEW,OLD), then run `studio secrets rotate-key` again; "
                    'generate a key with: python -c "from cryptography.fernet import Fernet; '
                    'print(Fernet.generate_key().decode())"'
                )
            new_key = keys[0]
        else:
            new_key = Fernet.generate_key()
        report = studio.vault.rotate(new_key)
        studio.audit.record(
            "vault.key_rotated",
            actor=_operator(),
            workspace_id=None,
            target=report.key_id,
            details={"reencrypted": report.reencrypted},
        )
        key_path = studio.vault.keyring.path
    db = Path(args.db) if args.db else Settings().db_path
    result = {
        "key_id": report.key_id,
        "reencrypted": report.reencrypted,
        "key_file": str(key_path) if key_path else None,
        "database": str(db),
    }

    def text(_: Any) -> str:
        where = (
            f"the key file {key_path} (it holds the new key first, then the older ones)"
            if key_path
            else f"the new value of {KEY_ENV}"
        )
        return (
            f"re-encrypted {report.reencrypted} secret(s) under the new key {report.key_id}\n"
            f"Back up now, together: {where} and the database {db}.\n"
            "Restart any other studio process, then run `studio secrets retire-keys` to drop "
            "keys no secret uses any more."
        )

    emit(args, result, text)
    return 0


def cmd_secrets_retire_keys(args: argparse.Namespace) -> int:
    _operator_only("secrets retire-keys")
    with open_cli_studio(args) as studio:
        retired = list(studio.vault.retire_unused_keys())
        from_env = studio.vault.keyring.path is None

    def text(ids: list[str]) -> str:
        if not ids:
            return "no unused keys"
        if from_env:
            return f"unused keys (remove them from {KEY_ENV} yourself): {', '.join(ids)}"
        return f"removed unused key(s) {', '.join(ids)} from the key file; back it up again"

    emit(args, retired, text)
    return 0


# --- audit ---------------------------------------------------------------------------------


def _anchor(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    match = _ANCHOR.fullmatch(text.strip().lower())
    if match is None:
        raise UserError("--anchor must be SEQ:HASH, as printed by `studio audit verify`")
    return int(match.group(1)), match.group(2)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    anchor = _anchor(args.anchor)
    with open_cli_studio(args) as studio:
        token = _env_token()
        if token is not None:  # the chain is global; a token needs audit:read somewhere
            _require_token(studio, _token_principal(studio, token), "audit:read")
        result = studio.audit.verify(anchor=anchor)
        seq, digest = studio.audit.head()
    body = {
        "ok": result.ok,
        "entries": result.checked,
        "first_broken_seq": result.first_broken_seq,
        "reason": result.reason,
        "head": {"seq": seq, "hash": digest},
    }
    if result.ok:
        emit(
            args, body, lambda _: f"audit log intact: {result.checked} entries, head {seq} {digest}"
        )
        return 0
    emit(
        args,
        body,
        lambda _: f"audit log broken at entry {result.first_broken_seq}: {result.reason}",
    )
    return 1


def cmd_audit_list(args: argparse.Namespace) -> int:
    if args.action is not None and args.action not in AUDIT_ACTIONS:
        raise UserError(
            f"unknown audit action {args.action!r}; actions are: {', '.join(AUDIT_ACTIONS)}"
        )
    if not 0 < args.limit <= MAX_PAGE:
        raise UserError(f"--limit must be 1 to {MAX_PAGE}")
    with open_cli_studio(args) as studio:
        _admin_in(studio, args.workspace, "audit:read", allow_local=True)
        try:
            entries = studio.audit.entries(
                args.workspace, action=args.action, after_seq=args.after, limit=args.limit
            )
        except (ValueError, TypeError):
            raise UserError(
                "the audit log holds a malformed entry: run `studio audit verify` to find it"
            ) from None

    def text(items: list[Any]) -> str:
        lines = [
            f"#{e.seq} {e.at:%Y-%m-%d %H:%M:%S} {e.actor} {e.action} {e.target} "
            + json.dumps(e.details, ensure_ascii=False, sort_keys=True, default=str)
            for e in items
        ]
        return "\n".join(lines) or "no entries"

    emit(args, entries, text)
    return 0


# --- the parsers ---------------------------------------------------------------------------


def add_admin_commands(sub: Any) -> None:
    """Add the administration subcommands to the `studio` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="studio database file (default: $STUDIO_DATA_DIR/studio.db)")
    common.add_argument("--json", action="store_true", help="print JSON")

    def group(name: str, help: str) -> Any:
        return sub.add_parser(name, help=help).add_subparsers(dest="sub", required=True)

    def command(parent: Any, name: str, func: Callable[..., int], help: str) -> Any:
        parser = parent.add_parser(name, parents=[common], help=help)
        parser.set_defaults(func=func)
        return parser

    users = group("users", "create or disable user accounts (operator)")
    p = command(users, "create", cmd_users_create, "create a local account")
    p.add_argument("email")
    p.add_argument("--name", help="display name (default: the e-mail's local part)")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (without it: an OIDC-only account)",
    )
    p = command(users, "set-password", cmd_users_set_password, "set a password (read from stdin)")
    p.add_argument("email")
    p.add_argument("--password-stdin", action="store_true", help="accepted for clarity")
    p = command(users, "disable", cmd_users_disable, "end a user's sessions and tokens")
    p.add_argument("email")

    workspaces = group("workspaces", "create workspaces (operator)")
    p = command(workspaces, "create", cmd_workspaces_create, "create a workspace")
    p.add_argument("name")
    p.add_argument("--owner", required=True, help="e-mail of the owner (becomes admin)")
    p.add_argument("--id", help="workspace id (default: a new UUID)")

    members = group("members", "add, remove and list workspace members")
    p = command(members, "add", cmd_members_add, "add a member, or change their role")
    p.add_argument("workspace")
    p.add_argument("email")
    p.add_argument("role", help=", ".join(ROLE_NAMES))
    p = command(members, "remove", cmd_members_remove, "remove a member (and their tokens)")
    p.add_argument("workspace")
    p.add_argument("email")
    p = command(members, "list", cmd_members_list, "list members and roles")
    p.add_argument("workspace")

    tokens = group("tokens", "create, list and revoke API tokens")
    p = command(tokens, "create", cmd_tokens_create, "create a token (its value is shown once)")
    p.add_argument("--workspace", required=True)
    p.add_argument("--user", required=True, help="e-mail of the token's owner")
    p.add_argument("--name", required=True)
    p.add_argument("--actions", required=True, help="comma-separated, e.g. run:read,run:start")
    p.add_argument("--expires-days", type=int, help="days until it expires (default: never)")
    p = command(tokens, "list", cmd_tokens_list, "list tokens (never their values)")
    p.add_argument("--workspace", required=True)
    p = command(tokens, "revoke", cmd_tokens_revoke, "revoke a token at once")
    p.add_argument("--workspace", required=True)
    p.add_argument("token_id")

    secrets = group("secrets", "manage a workspace's vault secrets")
    p = command(secrets, "set", cmd_secrets_set, "create or replace a secret (value on stdin)")
    p.add_argument("workspace")
    p.add_argument("name")
    p = command(secrets, "list", cmd_secrets_list, "list secret names (never values)")
    p.add_argument("workspace")
    p = command(secrets, "rm", cmd_secrets_rm, "delete a secret")
    p.add_argument("workspace")
    p.add_argument("name")
    command(secrets, "rotate-key", cmd_secrets_rotate_key, "re-encrypt every secret, new key")
    command(secrets, "retire-keys", cmd_secrets_retire_keys, "drop keys no secret uses")

    audit = group("audit", "verify and read the audit log")
    p = command(audit, "verify", cmd_audit_verify, "check the hash chain")
    p.add_argument("--anchor", help="SEQ:HASH printed by an earlier verify (detects truncation)")
    p = command(audit, "list", cmd_audit_list, "a workspace's entries, oldest first")
    p.add_argument("workspace")
    p.add_argument("--action", help="only this action, e.g. member.added")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--after", type=int, default=0, help="entries after this seq (paging)")
