"""The `studio` administration commands and `STUDIO_TOKEN`, driven like an operator does.

In-process `studio.cli.main([...])` against a fresh SQLite file in tmp_path, with capsys for
stdout/stderr and monkeypatch for stdin (secrets and passwords are never arguments) and the
environment; one test pipes a secret into a real `python -m studio.cli` process. Secret
values are canaries: the tests grep every printed line and every file beside the database.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from graphs.headless import LOCAL_WORKSPACE
from studio.cli import main
from studio.context import open_studio
from studio.settings import Settings
from tests.conftest import support_doc
from tests.loopback.http_receiver import HttpReceiver

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = "root-operator"
CANARY = "sk-live-canary-" + "5e1f0c9a7d3b2846"
PASSWORD = "correct horse battery staple"
ORDER = '{"order_id": "A-1001"}'


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Studio:
    """`studio ARGS --db DB` in-process, optionally with stdin and `STUDIO_TOKEN`."""

    def __init__(
        self, db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.db = db
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    def __call__(self, *argv: str, stdin: str = "", token: str | None = None) -> Result:
        with self._monkeypatch.context() as patch:
            patch.setattr(sys, "stdin", io.StringIO(stdin))
            if token is not None:
                patch.setenv("STUDIO_TOKEN", token)
            self._capsys.readouterr()
            rc = main([*argv, "--db", str(self.db)])
            out, err = self._capsys.readouterr()
        return Result(rc, out, err)

    def ok(self, *argv: str, stdin: str = "", token: str | None = None) -> Result:
        result = self(*argv, stdin=stdin, token=token)
        assert result.rc == 0, (argv, result.out, result.err)
        return result

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return list(conn.execute(sql, params))

    def files(self) -> list[Path]:
        return [p for p in self.db.parent.iterdir() if p.is_file()]


@pytest.fixture
def studio(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    receiver: HttpReceiver,
) -> Studio:
    monkeypatch.setenv("STUDIO_USER", OPERATOR)
    monkeypatch.setenv("STUDIO_HTTP_ALLOW", receiver.host_port)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "unused"))
    for name in ("STUDIO_TOKEN", "STUDIO_SECRET_KEY", "STUDIO_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "data").mkdir()
    return Studio(tmp_path / "data" / "studio.db", capsys, monkeypatch)


def assert_clean_error(result: Result, *needles: str) -> None:
    """Exit 2, nothing on stdout, one `error:` line on stderr naming every needle."""
    assert result.rc == 2, (result.out, result.err)
    assert result.out == ""
    assert result.err.startswith("error:"), result.err
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in result.err, (needle, result.err)


def acme(studio: Studio) -> dict[str, str]:
    """Workspace acme: alice (owner, admin), bob approver, ed editor, vic viewer; and
    workspace globex owned by gus. Returns e-mail → user id."""
    ids = {}
    for name in ("alice", "bob", "ed", "vic", "gus"):
        user = studio.ok("users", "create", f"{name}@example.com", "--json").json()
        ids[name] = user["user_id"]
    studio.ok("workspaces", "create", "Acme", "--owner", "alice@example.com", "--id", "acme")
    studio.ok("workspaces", "create", "Globex", "--owner", "gus@example.com", "--id", "globex")
    for name, role in (("bob", "approver"), ("ed", "editor"), ("vic", "viewer")):
        studio.ok("members", "add", "acme", f"{name}@example.com", role)
    return ids


def new_token(studio: Studio, user: str, actions: str, *extra: str) -> str:
    body = studio.ok(
        "tokens",
        "create",
        "--workspace",
        "acme",
        "--user",
        f"{user}@example.com",
        "--name",
        f"{user} cli",
        "--actions",
        actions,
        *extra,
        "--json",
    ).json()
    value: str = body["token"]
    return value


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# --- users, workspaces, members ----------------------------------------------------------------


def test_users_workspaces_and_members(studio: Studio) -> None:
    made = studio.ok("users", "create", "Alice@Example.com", "--password-stdin", stdin=PASSWORD)
    assert made.out.startswith("user alice@example.com created")
    assert PASSWORD not in made.out + made.err
    oidc = studio.ok("users", "create", "bob@example.com", "--name", "Bob B", "--json").json()
    assert (oidc["display_name"], oidc["has_password"]) == ("Bob B", False)
    [(stored,)] = studio.rows("SELECT password_hash FROM users WHERE email = 'alice@example.com'")
    assert stored.startswith("$argon2id$")
    assert all(PASSWORD.encode() not in f.read_bytes() for f in studio.files())
    assert_clean_error(studio("users", "create", "bob@example.com"), "already exists")
    assert_clean_error(
        studio("users", "create", "carol@example.com", "--password-stdin", stdin="short"),
        "too short",
    )

    ws = studio.ok("workspaces", "create", "Acme", "--owner", "alice@example.com", "--id", "acme")
    assert "workspace acme ('Acme') created; alice@example.com is its admin" in ws.out
    studio.ok("members", "add", "acme", "bob@example.com", "approver")
    listed = studio.ok("members", "list", "acme", "--json").json()
    assert [(m["email"], m["roles"]) for m in listed] == [
        ("alice@example.com", ["admin"]),
        ("bob@example.com", ["approver"]),
    ]
    changed = studio.ok("members", "add", "acme", "bob@example.com", "runner")
    assert "bob@example.com is runner in workspace acme (was approver)" in changed.out
    assert "bob@example.com  runner" in studio.ok("members", "list", "acme").out

    audit = studio.ok("audit", "list", "acme", "--json").json()
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("workspace.created", OPERATOR),
        ("member.added", OPERATOR),
        ("member.added", OPERATOR),
        ("member.role_changed", OPERATOR),
    ]
    assert audit[-1]["details"] == {
        "email": "bob@example.com",
        "role": "runner",
        "previous": ["approver"],
    }
    only = studio.ok("audit", "list", "acme", "--action", "member.added", "--limit", "1", "--json")
    assert [e["target"] for e in only.json()] == [listed[0]["user_id"]]

    studio.ok("users", "disable", "bob@example.com")  # roles go with the account
    assert "bob@example.com" not in studio.ok("members", "list", "acme").out
    disabled = studio.ok("audit", "list", "acme", "--action", "user.disabled", "--json").json()
    assert [e["target"] for e in disabled] == [listed[1]["user_id"]]
    assert_clean_error(studio("members", "add", "acme", "bob@example.com", "viewer"), "disabled")


def test_the_last_admin_cannot_be_removed_or_demoted(studio: Studio) -> None:
    acme(studio)
    assert_clean_error(
        studio("members", "remove", "acme", "alice@example.com"), "last admin", "acme"
    )
    assert_clean_error(
        studio("members", "add", "acme", "alice@example.com", "viewer"), "last admin"
    )
    # A disabled second admin does not count.
    studio.ok("members", "add", "acme", "bob@example.com", "admin")
    studio.ok("users", "disable", "bob@example.com")
    assert_clean_error(studio("members", "remove", "acme", "alice@example.com"), "last admin")
    studio.ok("members", "add", "acme", "ed@example.com", "admin")
    removed = studio.ok("members", "remove", "acme", "alice@example.com")
    assert "alice@example.com removed from workspace acme" in removed.out
    emails = [m["email"] for m in studio.ok("members", "list", "acme", "--json").json()]
    assert "alice@example.com" not in emails
    assert_clean_error(
        studio("members", "remove", "acme", "alice@example.com"), "not a member", "acme"
    )
    actions = [e["action"] for e in studio.ok("audit", "list", "acme", "--json").json()]
    assert actions[-1] == "member.removed"


def test_workspaces_are_separate_and_unknown_ones_are_not_found(studio: Studio) -> None:
    acme(studio)
    acme_emails = {m["email"] for m in studio.ok("members", "list", "acme", "--json").json()}
    assert "gus@example.com" not in acme_emails
    assert [m["email"] for m in studio.ok("members", "list", "globex", "--json").json()] == [
        "gus@example.com"
    ]
    assert all(
        e["workspace_id"] == "globex" for e in studio.ok("audit", "list", "globex", "--json").json()
    )
    for argv in (
        ("members", "list", "nope"),
        ("members", "add", "nope", "bob@example.com", "viewer"),
        ("members", "remove", "nope", "bob@example.com"),
        ("tokens", "list", "--workspace", "nope"),
        ("tokens", "revoke", "--workspace", "nope", "tok"),
        ("secrets", "set", "nope", "PAY_KEY"),
        ("secrets", "list", "nope"),
        ("audit", "list", "nope"),
    ):
        assert_clean_error(studio(*argv, stdin=CANARY), "workspace 'nope' not found")
    assert_clean_error(
        studio("workspaces", "create", "Mine", "--owner", "gus@example.com", "--id", "local"),
        "reserved",
    )
    assert_clean_error(
        studio("workspaces", "create", "Dup", "--owner", "gus@example.com", "--id", "acme"),
        "already exists",
    )
    assert_clean_error(
        studio("workspaces", "create", "X", "--owner", "nobody@example.com"), "nobody@example.com"
    )


MISTAKES: list[tuple[tuple[str, ...], str]] = [
    (("members", "add", "acme", "bob@example.com", "owner"), "unknown role 'owner'"),
    (("members", "add", "acme", "zed@example.com", "viewer"), "no user"),
    (("users", "create", "not-an-address"), "not an e-mail address"),
    (("users", "create", "x@example.com", "--password-stdin"), "no password on stdin"),
    (("users", "disable", "zed@example.com"), "no user"),
    (("secrets", "set", "acme", "PAY_KEY"), "no value of secret PAY_KEY on stdin"),
    (("secrets", "rm", "acme", "NOPE"), "not found"),
    (("audit", "list", "acme", "--action", "member.flew"), "unknown audit action"),
    (("audit", "verify", "--anchor", "two:abc"), "--anchor must be SEQ:HASH"),
    (
        (
            "tokens",
            "create",
            "--workspace",
            "acme",
            "--user",
            "ed@example.com",
            "--name",
            "x",
            "--actions",
            "run:read,run:fly",
        ),
        "unknown action(s) 'run:fly'",
    ),
    (
        (
            "tokens",
            "create",
            "--workspace",
            "acme",
            "--user",
            "gus@example.com",
            "--name",
            "x",
            "--actions",
            "run:read",
        ),
        "not a member of workspace 'acme'",
    ),
    (
        (
            "tokens",
            "create",
            "--workspace",
            "acme",
            "--user",
            "ed@example.com",
            "--name",
            "x",
            "--actions",
            "run:read",
            "--expires-days",
            "99999999",
        ),
        "--expires-days",
    ),
    (("tokens", "revoke", "--workspace", "acme", "no-such-token"), "not found"),
    (("secrets", "set", "acme", "bad name"), "invalid"),
]


def test_every_mistake_is_one_line_without_a_traceback(studio: Studio) -> None:
    acme(studio)
    before = studio.rows("SELECT count(*) FROM audit_entries")
    for argv, needle in MISTAKES:
        assert_clean_error(studio(*argv), needle)
    assert studio.rows("SELECT count(*) FROM audit_entries") == before


# --- API tokens and STUDIO_TOKEN -------------------------------------------------------------


def test_a_cli_token_is_shown_once_and_acts_for_its_owner(
    studio: Studio, receiver: HttpReceiver, tmp_path: Path
) -> None:
    ids = acme(studio)
    created = studio.ok(
        "tokens",
        "create",
        "--workspace",
        "acme",
        "--user",
        "ed@example.com",
        "--name",
        "ed laptop",
        "--actions",
        "graph:read,graph:edit,run:start,run:read,approval:read",
        "--expires-days",
        "30",
    )
    [value] = [line for line in created.out.splitlines() if line.startswith("sk_")]
    assert created.out.count(value) == 1
    assert "shown only now" in created.out
    listed = studio.ok("tokens", "list", "--workspace", "acme")
    assert value not in listed.out and "ed laptop" in listed.out and "active" in listed.out
    assert all(value.encode() not in f.read_bytes() for f in studio.files())

    # ed's token runs the support agent in acme as ed; it pauses on the e-mail.
    graph = write_json(tmp_path / "support.json", support_doc(receiver))
    run = studio.ok("run", str(graph), "--input", ORDER, "--json", token=value).json()
    assert (run["started_by"], run["status"]) == (ids["ed"], "waiting_approval")
    assert studio.rows("SELECT workspace_id FROM runs") == [("acme",)]
    assert [r["run_id"] for r in studio.ok("runs", "list", "--json", token=value).json()] == [
        run["run_id"]
    ]
    assert studio.ok("runs", "list", "--json").json() == []  # the operator's local workspace
    [email] = studio.ok("approvals", "list", "--json", token=value).json()

    # A read-only token (vic, a viewer) lists runs but cannot decide.
    reader = new_token(studio, "vic", "run:read,approval:read")
    assert len(studio.ok("runs", "list", "--json", token=reader).json()) == 1
    refused = studio("approvals", "decide", email["approval_id"], "approve", token=reader)
    assert_clean_error(refused, "token")
    assert studio.rows("SELECT status FROM approvals") == [("pending",)]
    assert_clean_error(
        studio("approvals", "decide", email["approval_id"], "approve", "--as", "bob", token=value),
        "--as",
    )

    # An approver's token decides; the run goes on.
    approver = new_token(studio, "bob", "run:read,approval:read,approval:decide:confirm")
    decided = studio.ok("approvals", "decide", email["approval_id"], "approve", token=approver)
    assert "approved" in decided.out

    # Invalid, revoked and removed: "not valid", with no detail why.
    for bad in (
        "sk_nope",
        "sk_abcdefgh_" + "x" * 43,
        value[:-1] + ("A" if value[-1] != "A" else "B"),
    ):
        assert_clean_error(studio("runs", "list", token=bad), "the API token is not valid")
    token_id = created.out.split()[1]
    revoked = studio.ok("tokens", "revoke", "--workspace", "acme", token_id)
    assert f"token {token_id} ('ed laptop') revoked" in revoked.out
    assert (
        "was already revoked" in studio.ok("tokens", "revoke", "--workspace", "acme", token_id).out
    )
    assert_clean_error(studio("runs", "list", token=value), "the API token is not valid")
    studio.ok("members", "remove", "acme", "vic@example.com")
    assert_clean_error(studio("runs", "list", token=reader), "the API token is not valid")

    actions = [e["action"] for e in studio.ok("audit", "list", "acme", "--json").json()]
    assert actions.count("token.created") == 3
    assert actions.count("token.revoked") == 1  # the second revoke changed nothing
    assert "approval.decided" in actions


def test_a_token_administers_only_what_it_may_in_its_own_workspace(studio: Studio) -> None:
    ids = acme(studio)
    admin = new_token(
        studio, "alice", "member:manage,secret:manage,audit:read,token:manage,run:read"
    )
    members = studio.ok("members", "list", "acme", "--json", token=admin).json()
    assert {m["email"] for m in members} >= {"alice@example.com", "bob@example.com"}
    studio.ok("members", "add", "acme", "gus@example.com", "viewer", token=admin)
    studio.ok("secrets", "set", "acme", "PAY_KEY", stdin=CANARY, token=admin)
    assert [e["actor"] for e in studio.ok("audit", "list", "acme", "--json", token=admin).json()][
        -2:
    ] == [ids["alice"], ids["alice"]]
    assert "audit log intact" in studio.ok("audit", "verify", token=admin).out

    for argv in (
        ("members", "list", "globex"),
        ("secrets", "list", "globex"),
        ("audit", "list", "globex"),
        ("tokens", "list", "--workspace", "globex"),
    ):
        assert_clean_error(studio(*argv, token=admin), "workspace 'globex' not found")
    for argv in (
        ("users", "create", "mallory@example.com"),
        ("workspaces", "create", "Evil", "--owner", "alice@example.com"),
        ("secrets", "rotate-key"),
    ):
        assert_clean_error(studio(*argv, token=admin), "operator command", "STUDIO_TOKEN")

    # Within scope but not within the owner's role (ed is an editor), and the other way round.
    ed = new_token(studio, "ed", "member:manage,run:read,token:manage")
    assert_clean_error(studio("members", "list", "acme", token=ed), "token", "member:manage")
    reader = new_token(studio, "ed", "run:read")
    assert_clean_error(studio("secrets", "list", "acme", token=reader), "token", "secret:manage")
    # A token mints tokens only for its own user, and never with more actions than it has.
    mint = ["tokens", "create", "--workspace", "acme", "--name", "more"]
    assert_clean_error(
        studio(*mint, "--user", "bob@example.com", "--actions", "run:read", token=ed),
        "its own user",
    )
    assert_clean_error(
        studio(*mint, "--user", "ed@example.com", "--actions", "run:start", token=ed),
        "run:start",
    )
    mine = studio.ok(*mint, "--user", "ed@example.com", "--actions", "run:read", "--json", token=ed)
    # ed sees only ed's tokens; alice (member:manage) sees everyone's and may revoke them.
    owners = {
        t["owner"]
        for t in studio.ok("tokens", "list", "--workspace", "acme", "--json", token=ed).json()
    }
    assert owners == {"ed@example.com"}
    everyone = studio.ok("tokens", "list", "--workspace", "acme", "--json", token=admin).json()
    [alice_token_id] = [t["token_id"] for t in everyone if t["owner"] == "alice@example.com"]
    assert {t["owner"] for t in everyone} == {"alice@example.com", "ed@example.com"}
    assert_clean_error(
        studio("tokens", "revoke", "--workspace", "acme", alice_token_id, token=ed), "not found"
    )
    studio.ok("tokens", "revoke", "--workspace", "acme", mine.json()["token_id"], token=admin)


# --- secrets and the vault key -----------------------------------------------------------------


def secret_doc(receiver: HttpReceiver) -> dict[str, Any]:
    doc = support_doc(receiver)
    doc["secrets"] = ["PAY_KEY"]
    refund = next(t for t in doc["tools"] if t["name"] == "issue_refund")
    refund["config"]["secret_headers"] = {"X-Api-Key": "PAY_KEY"}
    return doc


def test_a_secret_from_stdin_is_used_by_runs_and_shown_nowhere(
    studio: Studio, receiver: HttpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed: list[str] = []

    def run(*argv: str, stdin: str = "") -> Result:
        result = studio.ok(*argv, stdin=stdin)
        printed.append(result.out + result.err)
        return result

    created = run("secrets", "set", LOCAL_WORKSPACE, "PAY_KEY", stdin=CANARY + "\n")
    assert "secret PAY_KEY created in workspace local" in created.out
    run("secrets", "set", LOCAL_WORKSPACE, "OTHER_KEY", stdin="another-value-123")
    run("secrets", "rm", LOCAL_WORKSPACE, "OTHER_KEY")
    listed = run("secrets", "list", LOCAL_WORKSPACE, "--json").json()
    assert [s["name"] for s in listed] == ["PAY_KEY"]
    assert listed[0]["updated_by"] == OPERATOR

    rotated = run("secrets", "rotate-key")
    key_file = studio.db.with_name("studio-vault.key")
    assert "re-encrypted 1 secret(s) under the new key" in rotated.out
    assert str(key_file) in rotated.out and str(studio.db) in rotated.out
    assert "Back up" in rotated.out
    [new_key_id] = [w for w in rotated.out.split() if len(w) == 16 and w.isalnum()][:1]
    assert run("secrets", "list", LOCAL_WORKSPACE, "--json").json()[0]["key_id"] == new_key_id
    keys = [k for k in key_file.read_text().splitlines() if k and not k.startswith("#")]
    assert len(keys) == 2 and oct(key_file.stat().st_mode & 0o777) == "0o600"

    # A run that uses the secret (as the local operator) still sends it after the rotation.
    receiver.route("/refunds", status=201, body={"refund": "accepted"})
    graph = write_json(tmp_path / "paid.json", secret_doc(receiver))
    run("run", str(graph), "--input", ORDER)
    for who in (OPERATOR, "bob"):
        [pending] = studio.ok("approvals", "list", "--json").json()
        run("approvals", "decide", pending["approval_id"], "approve", "--as", who)
    [listed_run] = studio.ok("runs", "list", "--json").json()
    assert listed_run["status"] == "succeeded"
    [refund] = [r for r in receiver.requests if r.path == "/refunds"]
    assert refund.headers["x-api-key"] == CANARY

    # Retire the old key: the secret still decrypts (checked through the Vault API too).
    assert "removed unused key(s)" in run("secrets", "retire-keys").out
    monkeypatch.delenv("STUDIO_SECRET_KEY", raising=False)
    with open_studio(Settings(), db_path=studio.db, resume=False) as s:
        assert s.vault.resolver(LOCAL_WORKSPACE)("PAY_KEY") == CANARY
        assert s.vault.keyring.key_ids == (new_key_id,)

    audit = studio.ok("audit", "list", LOCAL_WORKSPACE, "--json").json()
    assert {"secret.created", "secret.deleted", "secret.used"} <= {e["action"] for e in audit}
    printed.append(json.dumps(audit))
    assert not [text for text in printed if CANARY in text]
    for file in studio.files():
        assert CANARY.encode() not in file.read_bytes(), file.name


def test_rotate_key_with_the_key_in_the_environment(
    studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("STUDIO_SECRET_KEY", old)
    studio.ok("secrets", "set", LOCAL_WORKSPACE, "PAY_KEY", stdin=CANARY)
    assert_clean_error(studio("secrets", "rotate-key"), "STUDIO_SECRET_KEY=NEW,OLD")
    monkeypatch.setenv("STUDIO_SECRET_KEY", f"{new},{old}")
    assert "re-encrypted 1 secret(s)" in studio.ok("secrets", "rotate-key").out
    assert "unused keys" in studio.ok("secrets", "retire-keys").out
    monkeypatch.setenv("STUDIO_SECRET_KEY", new)
    with open_studio(Settings(), db_path=studio.db, resume=False) as s:
        assert s.vault.resolver(LOCAL_WORKSPACE)("PAY_KEY") == CANARY
    assert not studio.db.with_name("studio-vault.key").exists()


def test_a_real_process_reads_the_secret_from_a_pipe(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("STUDIO_TOKEN", "STUDIO_SECRET_KEY")},
        "STUDIO_DATA_DIR": str(tmp_path / "data"),
        "STUDIO_USER": OPERATOR,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "studio.cli", "secrets"]
    done = subprocess.run(
        [*command, "set", "local", "PAY_KEY"],
        input=CANARY + "\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert CANARY not in done.stdout + done.stderr
    assert "secret PAY_KEY created in workspace local" in done.stdout
    bad = subprocess.run(
        [*command, "set", "nope", "PAY_KEY"],
        input=CANARY,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.strip() == "error: workspace 'nope' not found"
    for file in (tmp_path / "data").iterdir():
        assert CANARY.encode() not in file.read_bytes(), file.name
    with open_studio(Settings(data_dir=tmp_path / "data"), resume=False) as s:
        assert s.vault.resolver(LOCAL_WORKSPACE)("PAY_KEY") == CANARY  # newline stripped


# --- the audit log -----------------------------------------------------------------------------


@pytest.fixture
def audited(studio: Studio) -> Iterator[Studio]:
    acme(studio)
    yield studio


def test_audit_verify_passes_then_names_the_edited_entry(audited: Studio) -> None:
    studio = audited
    result = studio.ok("audit", "verify")
    [(count, seq, digest)] = studio.rows(
        "SELECT count(*), max(seq), (SELECT hash FROM audit_entries ORDER BY seq DESC LIMIT 1) "
        "FROM audit_entries"
    )
    assert result.out.strip() == f"audit log intact: {count} entries, head {seq} {digest}"
    assert studio.ok("audit", "verify", "--anchor", f"{seq}:{digest}").out.startswith(
        "audit log intact"
    )

    with sqlite3.connect(studio.db) as conn:
        conn.execute("""UPDATE audit_entries SET details='{"role": "viewer"}' WHERE seq=2""")
    broken = studio("audit", "verify")
    assert broken.rc == 1, broken.err
    assert broken.out.startswith("audit log broken at entry 2: entry 2 was edited")
    body = studio("audit", "verify", "--json").json()
    assert (body["ok"], body["first_broken_seq"], body["entries"]) == (False, 2, 1)


def test_audit_verify_reports_unreadable_and_truncated_entries(audited: Studio) -> None:
    studio = audited
    seq, digest = studio.rows("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")[0]
    with sqlite3.connect(studio.db) as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = ?", (seq,))
    assert studio.ok("audit", "verify").out.startswith("audit log intact")  # shorter, but valid
    truncated = studio("audit", "verify", "--anchor", f"{seq}:{digest}")
    assert truncated.rc == 1
    assert f"audit log broken at entry {seq}" in truncated.out
    [(first_acme,)] = studio.rows("SELECT min(seq) FROM audit_entries WHERE workspace_id='acme'")
    with sqlite3.connect(studio.db) as conn:
        conn.execute("UPDATE audit_entries SET details='not json {' WHERE seq=?", (first_acme,))
    unreadable = studio("audit", "verify")
    assert unreadable.rc == 1, unreadable.err
    assert unreadable.out.startswith(f"audit log broken at entry {first_acme}"), unreadable.out
    assert "Traceback" not in unreadable.err
    assert_clean_error(studio("audit", "list", "acme"), "studio audit verify")
