"""The `studio` command, driven the way a person or a script drives it.

Most tests call `studio.cli.main([...])` in-process (fast) against a fresh SQLite file in
tmp_path and read stdout/stderr with `capsys`; the environment (`STUDIO_USER`,
`STUDIO_HTTP_ALLOW`, `STUDIO_DATA_DIR`) is set with monkeypatch. One test starts real
`python -m studio.cli` processes to check the console entry point, exit codes and stderr.
The refund of the support agent goes to the loopback `HttpReceiver`, which records every
effect, so "exactly one refund, with bob's amount" is checked on the receiving side.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from graphs.headless import open_runtime, run_document
from graphs.identity import Actor
from studio.cli import main
from tests.conftest import EXAMPLES, example, support_doc
from tests.loopback.http_receiver import HttpReceiver

ROOT = Path(__file__).resolve().parents[2]
TRIAGE = EXAMPLES / "triage_router.json"
INVOICE = '{"ticket": "My invoice is wrong"}'
BILLING_ANSWER = "Billing will correct your invoice within 2 days."


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """`studio ARGS --db DB` in-process; returns the exit code and what was printed."""

    def __init__(self, db: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.db = db
        self._capsys = capsys

    def __call__(self, *argv: str, db: bool = True) -> Result:
        self._capsys.readouterr()
        rc = main([*argv, "--db", str(self.db)] if db else list(argv))
        out, err = self._capsys.readouterr()
        return Result(rc, out, err)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the studio database directly (the CLI has closed it when a command returns)."""
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db) as conn:
            return list(conn.execute(sql, params))


@pytest.fixture
def cli(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    receiver: HttpReceiver,
) -> Cli:
    monkeypatch.setenv("STUDIO_USER", "alice")
    monkeypatch.setenv("STUDIO_HTTP_ALLOW", receiver.host_port)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("STUDIO_SMTP_HOST", raising=False)
    return Cli(tmp_path / "studio.db", capsys)


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def assert_clean_error(result: Result, *needles: str) -> None:
    """Exit 2, nothing on stdout, an `error:` on stderr naming every needle, no traceback."""
    assert result.rc == 2, (result.out, result.err)
    assert result.out == ""
    assert result.err.startswith("error:"), result.err
    assert "Traceback" not in result.err
    for needle in needles:
        assert needle in result.err, (needle, result.err)


def refunds(receiver: HttpReceiver) -> list[Any]:
    return [e for e in receiver.effects if e.path == "/refunds"]


def unknown_node_type(doc: dict[str, Any]) -> dict[str, Any]:
    route = next(n for n in doc["nodes"] if n["id"] == "route")
    route["type"] = "teleport"
    return doc


def dangling_edge(doc: dict[str, Any]) -> dict[str, Any]:
    doc["edges"].append({"source": "billing", "target": "nowhere"})
    return doc


UNKNOWN_TYPE = ("node 'route'", "unknown node type 'teleport'")
DANGLING = ("edge 'billing->nowhere'", "'nowhere' is not a node")


# --- the console entry point, in real processes ----------------------------------------------


def test_console_script_is_studio_cli_main() -> None:
    [script] = entry_points(group="console_scripts", name="studio")
    assert script.value == "studio.cli:main"
    assert script.load() is main


def test_real_process_exit_codes_stdout_and_stderr(tmp_path: Path) -> None:
    """`python -m studio.cli`: a broken document exits 2 with every problem on stderr and no
    traceback; a run exits 0, prints JSON and stores its data under $STUDIO_DATA_DIR."""
    broken = write_json(
        tmp_path / "broken.json", dangling_edge(unknown_node_type(example("triage_router")))
    )
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path / "data"),
        "STUDIO_USER": "carol",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "studio.cli"]
    # Both processes at once: the interpreter start-up dominates their time.
    procs = {
        "validate": subprocess.Popen(
            [*command, "validate", str(broken)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        "run": subprocess.Popen(
            [*command, "run", str(TRIAGE), "--input", INVOICE, "--json"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    }
    done = {name: (*p.communicate(timeout=90), p.returncode) for name, p in procs.items()}

    out, err, rc = done["validate"]
    assert rc == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("error: graph document is invalid (2 problems)"), err
    for needle in (*UNKNOWN_TYPE, *DANGLING):
        assert needle in err

    out, err, rc = done["run"]
    assert rc == 0, err
    assert "Traceback" not in err
    run = json.loads(out)
    assert run["status"] == "succeeded"
    assert run["started_by"] == "carol"
    assert run["output"]["answer"] == BILLING_ANSWER
    assert (tmp_path / "data" / "studio.db").is_file()


# --- validate and schema -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("support_agent", "Support agent"),
        ("triage_router", "Ticket triage"),
        ("dataset_report", "Dataset report"),
    ],
)
def test_validate_each_example(cli: Cli, name: str, title: str) -> None:
    path = str(EXAMPLES / f"{name}.json")
    nodes = len(example(name)["nodes"])

    result = cli("validate", path)
    assert result.rc == 0, result.err
    assert result.out.strip() == f"valid: {title!r} ({nodes} nodes)"
    assert result.err == ""

    as_json = cli("validate", path, "--json")
    assert as_json.rc == 0
    assert as_json.json() == {"valid": True, "name": title, "nodes": nodes}
    assert cli.rows("SELECT count(*) FROM graphs") == []  # validating stores nothing


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(
            '{"schema_version": 1, "name": "x",\n', ("document: not valid JSON",), id="malformed"
        ),
        pytest.param(
            json.dumps(unknown_node_type(example("triage_router"))), UNKNOWN_TYPE, id="node-type"
        ),
        pytest.param(
            json.dumps(dangling_edge(example("triage_router"))), DANGLING, id="dangling-edge"
        ),
        pytest.param(
            json.dumps(dangling_edge(unknown_node_type(example("triage_router")))),
            (*UNKNOWN_TYPE, *DANGLING, "(2 problems)"),
            id="both",
        ),
    ],
)
def test_validate_broken_document(
    cli: Cli, tmp_path: Path, content: str, expected: tuple[str, ...]
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    result = cli("validate", str(path))
    assert_clean_error(result, "error: graph document is invalid", *expected)
    problems = [line for line in result.err.splitlines() if line.startswith("  - ")]
    assert len(problems) == (2 if "(2 problems)" in expected else 1), result.err


def test_validate_missing_file(cli: Cli, tmp_path: Path) -> None:
    assert_clean_error(cli("validate", str(tmp_path / "nope.json")), "nope.json")


def test_schema_is_the_graph_document_json_schema(cli: Cli) -> None:
    result = cli("schema", db=False)
    assert result.rc == 0
    schema = result.json()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "GraphDocument"
    assert {
        "schema_version",
        "name",
        "entry",
        "nodes",
        "edges",
        "state",
        "tools",
        "secrets",
        "policies",
    } <= set(schema["properties"])
    assert {"EdgeDoc"} <= set(schema["$defs"])


# --- run ---------------------------------------------------------------------------------------


def test_run_triage_json(cli: Cli) -> None:
    result = cli("run", str(TRIAGE), "--input", INVOICE, "--json")
    assert result.rc == 0, result.err
    run = result.json()
    assert run["status"] == "succeeded"
    assert run["started_by"] == "alice"
    assert run["input"] == {"ticket": "My invoice is wrong"}
    assert run["output"] == {"category": "billing", "attempts": 0, "answer": BILLING_ANSWER}
    assert run["error"] is None
    assert cli.rows("SELECT run_id, status FROM runs") == [(run["run_id"], "succeeded")]

    text = cli("run", str(TRIAGE), "--input", '{"ticket": "The app crashes"}')
    assert text.rc == 0
    first, output = text.out.splitlines()[:2]
    assert first.startswith("run ") and first.endswith("succeeded")
    assert json.loads(output.removeprefix("  output: "))["category"] == "bug"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param("ticket=hello", "Expecting value", id="not-json"),
        pytest.param(
            '{"ticket": "x", "priority": 1}',
            "unknown input 'priority'; this graph takes ticket",
            id="unknown-field",
        ),
        pytest.param("{}", "input 'ticket' is required: The ticket text.", id="missing-required"),
        pytest.param('{"ticket": 5}', "input 'ticket' must be a string", id="wrong-type"),
    ],
)
def test_run_with_bad_input_stores_no_run(cli: Cli, payload: str, message: str) -> None:
    result = cli("run", str(TRIAGE), "--input", payload)
    assert_clean_error(result, message)
    assert len(result.err.strip().splitlines()) == 1
    assert cli.rows("SELECT run_id FROM runs") == []
    assert cli.rows("SELECT event_id FROM run_events") == []


def test_run_with_input_that_is_not_an_object_is_a_clean_error(cli: Cli) -> None:
    """BUG: `--input '[1, 2]'` or `--input '"hello"'` is valid JSON but not an object;
    `RunManager.start_run` calls `dict(input)` and the CLI dies with a TypeError/ValueError
    traceback instead of "error: ..." and exit 2."""
    for payload in ('["ticket", "x"]', '"hello"', "42"):
        try:
            result = cli("run", str(TRIAGE), "--input", payload)
        except Exception as exc:
            pytest.fail(f"studio run --input {payload!r} raised {exc!r} instead of exiting 2")
        assert_clean_error(result, "--input")
    assert cli.rows("SELECT run_id FROM runs") == []


def test_run_input_that_is_not_json_names_the_option(cli: Cli) -> None:
    """BUG (usability): the message for `--input 'ticket=hello'` is the bare JSONDecodeError,
    'error: Expecting value: line 1 column 1 (char 0)', which doesn't say that --input is
    the problem."""
    assert_clean_error(cli("run", str(TRIAGE), "--input", "ticket=hello"), "--input")


def test_run_that_fails_exits_1_and_shows_the_error(cli: Cli, tmp_path: Path) -> None:
    doc = {
        "schema_version": 1,
        "name": "Failing graph",
        "entry": "agent",
        "state": [{"name": "question", "type": "string", "input": True}],
        "nodes": [
            {
                "id": "agent",
                "type": "llm",
                "config": {
                    "prompt": "{{ question }}",
                    "provider_config": {"script": [{"fail": "error"}]},
                },
            }
        ],
        "edges": [],
    }
    result = cli(
        "run", str(write_json(tmp_path / "fails.json", doc)), "--input", '{"question": "hi"}'
    )
    assert result.rc == 1
    assert "failed" in result.out.splitlines()[0]
    assert "  error: " in result.out
    assert cli.rows("SELECT status FROM runs") == [("failed",)]


def test_data_dir_comes_from_the_environment(tmp_path: Path, cli: Cli) -> None:
    result = cli("run", str(TRIAGE), "--input", INVOICE, "--json", db=False)
    assert result.rc == 0, result.err
    assert (tmp_path / "data" / "studio.db").is_file()
    assert not cli.db.exists()
    listed = cli("runs", "list", "--json", db=False)
    assert [r["run_id"] for r in listed.json()] == [result.json()["run_id"]]


# --- the support agent: pauses, approvals, separation of duties, exactly one refund ----------


@dataclass(frozen=True)
class Paused:
    run_id: str
    approval_id: str
    text: str


@pytest.fixture
def support_run(cli: Cli, tmp_path: Path, receiver: HttpReceiver) -> Paused:
    """alice runs the support agent; it pauses on the e-mail (confirm)."""
    graph = write_json(tmp_path / "support_agent.json", support_doc(receiver))
    result = cli("run", str(graph), "--input", '{"order_id": "A-1001"}')
    assert result.rc == 0, result.err
    first = result.out.splitlines()[0]
    assert first.startswith("run ") and first.endswith("waiting_approval"), result.out
    [(approval_id, run_id)] = cli.rows("SELECT approval_id, run_id FROM approvals")
    assert first.split()[1] == run_id
    return Paused(run_id, approval_id, result.out)


def test_support_agent_through_the_cli(
    cli: Cli, support_run: Paused, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = support_run.run_id
    # The pending approval is printed with the run.
    assert (
        f"approval {support_run.approval_id}  pending  [confirm] email_customer" in support_run.text
    )
    assert "customer-A-1001@example.com" in support_run.text

    [email] = cli("approvals", "list", "--json").json()
    assert email["approval_id"] == support_run.approval_id
    assert email["run_id"] == run_id
    assert (email["action"], email["tier"], email["status"]) == (
        "email_customer",
        "confirm",
        "pending",
    )
    assert email["run_started_by"] == "alice"
    assert email["args"]["to"] == "customer-A-1001@example.com"

    # alice, the starter, may confirm the e-mail; the run pauses again on the refund.
    decided = cli("approvals", "decide", email["approval_id"], "approve")
    assert decided.rc == 0, decided.err
    assert f"approval {email['approval_id']}  approved" in decided.out
    assert f"run {run_id}  waiting_approval" in decided.out
    [refund] = cli("approvals", "list", "--json").json()
    assert (refund["action"], refund["tier"]) == ("issue_refund", "admin")
    assert refund["args"] == {"order_id": "A-1001", "amount": 49.9}

    # ... but not the refund: admin calls need someone other than the starter.
    refused = cli("approvals", "decide", refund["approval_id"], "approve")
    assert_clean_error(refused, "someone other than the run's starter", refund["approval_id"])
    assert refunds(receiver) == []
    assert cli("approvals", "list", "--json").json()[0]["status"] == "pending"

    # bob lowers the amount and approves: the run ends, one refund of 20 reaches the API.
    monkeypatch.setenv("STUDIO_USER", "bob")
    approved = cli(
        "approvals",
        "decide",
        refund["approval_id"],
        "approve",
        "--args",
        '{"order_id": "A-1001", "amount": 20}',
    )
    assert approved.rc == 0, approved.err
    assert f"approval {refund['approval_id']}  edited" in approved.out
    assert f"run {run_id}  succeeded" in approved.out
    [paid] = refunds(receiver)
    assert paid.method == "POST"
    assert paid.json == {"order_id": "A-1001", "amount": 20}
    assert paid.idempotency_key

    # A second decision on the same approval is a conflict and changes nothing.
    again = cli("approvals", "decide", refund["approval_id"], "approve", "--as", "dave")
    assert_clean_error(again, refund["approval_id"], "already edited by 'bob'")
    again = cli("approvals", "decide", email["approval_id"], "reject")
    assert_clean_error(again, "already approved by 'alice'")
    assert len(refunds(receiver)) == 1

    assert cli("approvals", "list").out.strip() == "none"
    history = {
        a["approval_id"]: (a["status"], a["decided_by"])
        for a in cli("approvals", "list", "--status", "all", "--json").json()
    }
    assert history == {
        email["approval_id"]: ("approved", "alice"),
        refund["approval_id"]: ("edited", "bob"),
    }
    # The e-mail was written to the outbox once (no SMTP configured: it stays queued).
    assert cli.rows("SELECT channel, recipient FROM outbox WHERE run_id = ?", run_id) == [
        ("email", "customer-A-1001@example.com")
    ]

    [listed] = cli("runs", "list", "--json").json()
    assert (listed["run_id"], listed["status"], listed["started_by"]) == (
        run_id,
        "succeeded",
        "alice",
    )
    assert listed["output"]["order_id"] == "A-1001"
    assert [r["run_id"] for r in cli("runs", "list", "--status", "succeeded", "--json").json()] == [
        run_id
    ]
    assert cli("runs", "list", "--status", "failed").out.strip() == "no runs"

    shown = cli("runs", "show", run_id)
    assert shown.rc == 0
    assert shown.out.startswith(f"run {run_id}  succeeded")
    kinds = [line.split()[1] for line in shown.out.splitlines()[1:] if line.startswith("  #")]
    for kind in ("node_started", "node_finished", "approval_requested", "approval_decided"):
        assert kind in kinds, shown.out
    assert kinds.count("approval_requested") == 2
    assert "token" not in kinds


def test_runs_show_json_has_the_run_and_its_events(cli: Cli, support_run: Paused) -> None:
    """BUG: `runs show --json` prints `{"run": "RunView(...)", "events": ["RunEventView(...)"]}`:
    `_plain` in studio/cli.py converts dataclasses and lists but not dicts, so the dataclasses
    inside the dict fall through to json.dumps(default=str) and come out as repr strings."""
    shown = cli("runs", "show", support_run.run_id, "--json")
    assert shown.rc == 0
    body = shown.json()
    assert isinstance(body["run"], dict), str(body["run"])[:120]
    assert body["run"]["run_id"] == support_run.run_id
    assert body["run"]["status"] == "waiting_approval"
    kinds = [e["kind"] for e in body["events"]]
    assert {"node_started", "node_finished", "approval_requested"} <= set(kinds)
    requested = next(e for e in body["events"] if e["kind"] == "approval_requested")
    assert requested["data"] == {"approval_id": support_run.approval_id}


def test_approvals_decide_json_has_the_approval_and_the_run(cli: Cli, support_run: Paused) -> None:
    """BUG: same `_plain` defect as `runs show --json`: `approvals decide --json` prints
    `{"approval": "ApprovalView(...)", "run": "RunView(...)"}`."""
    decided = cli("approvals", "decide", support_run.approval_id, "approve", "--json")
    assert decided.rc == 0, decided.err
    body = decided.json()
    assert isinstance(body["approval"], dict), str(body["approval"])[:120]
    assert body["approval"]["status"] == "approved"
    assert body["run"]["status"] == "waiting_approval"


def test_decide_with_args_that_are_not_an_object_is_a_clean_error(
    cli: Cli, support_run: Paused
) -> None:
    """BUG: `--args '[1]'` is valid JSON but not an object; it reaches the argument validator
    as a list and the CLI dies with a traceback instead of exit 2. Not-JSON `--args` exits 2
    but with a bare JSONDecodeError message that does not name --args."""
    try:
        result = cli("approvals", "decide", support_run.approval_id, "approve", "--args", "[1]")
    except Exception as exc:
        pytest.fail(f"studio approvals decide --args '[1]' raised {exc!r} instead of exiting 2")
    assert_clean_error(result, "--args")
    assert_clean_error(
        cli("approvals", "decide", support_run.approval_id, "approve", "--args", "amount=20"),
        "--args",
    )
    assert cli.rows("SELECT status FROM approvals") == [("pending",)]


def test_unknown_and_foreign_ids_are_not_found(
    cli: Cli, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    mallory = Actor("acme", "mallory")
    with open_runtime(cli.db) as rt:
        theirs = run_document(rt, support_doc(receiver), {"order_id": "A-1001"}, actor=mallory)
        assert theirs.status == "waiting_approval"
        [their_approval] = rt.manager.approvals.list(mallory)

    for argv in (("runs", "show", theirs.run_id), ("runs", "show", "no-such-run")):
        assert_clean_error(cli(*argv), "not found", argv[-1])
    assert_clean_error(cli("resume", theirs.run_id), "not found")
    assert_clean_error(
        cli("approvals", "decide", their_approval.approval_id, "approve", "--as", "bob"),
        "not found",
    )
    assert_clean_error(cli("approvals", "decide", "apr_nope", "approve"), "not found")

    # The local workspace sees none of acme's runs or approvals.
    assert cli("runs", "list", "--json").json() == []
    assert cli("approvals", "list", "--status", "all", "--json").json() == []
    assert cli.rows("SELECT status FROM approvals") == [("pending",)]


# --- resume ------------------------------------------------------------------------------------


def test_resume_with_no_runs(cli: Cli) -> None:
    result = cli("resume")
    assert result.rc == 0, result.err
    assert result.out.strip() == "no runs"
    assert cli("resume", "--json").json() == []


def test_resume_a_finished_run_prints_its_status(cli: Cli) -> None:
    run = cli("run", str(TRIAGE), "--input", INVOICE, "--json").json()
    result = cli("resume", run["run_id"])
    assert result.rc == 0, result.err
    assert result.out.startswith(f"run {run['run_id']}  succeeded")
    assert BILLING_ANSWER in result.out
    [resumed] = cli("resume", "--json").json()
    assert (resumed["run_id"], resumed["status"]) == (run["run_id"], "succeeded")
    assert cli.rows("SELECT status FROM runs") == [("succeeded",)]


# --- notifications -------------------------------------------------------------------------------


def test_notify_targets_are_stored_and_queued_when_the_run_ends(
    cli: Cli, receiver: HttpReceiver
) -> None:
    receiver.route("/hooks/run-ended", status=204, body=b"")
    hook = receiver.url_for("/hooks/run-ended")
    result = cli(
        "run",
        str(TRIAGE),
        "--input",
        INVOICE,
        "--notify-webhook",
        hook,
        "--notify-email",
        "owner@example.com",
        "--json",
    )
    assert result.rc == 0, result.err
    run = result.json()
    assert run["status"] == "succeeded"

    [(notify,)] = cli.rows("SELECT notify FROM runs WHERE run_id = ?", run["run_id"])
    assert json.loads(notify) == {"webhook": hook, "email": "owner@example.com"}
    outbox = cli.rows(
        "SELECT channel, recipient, message_id FROM outbox WHERE run_id = ? ORDER BY channel",
        run["run_id"],
    )
    assert outbox == [
        ("email", "owner@example.com", f"notify_{run['run_id']}_email"),
        ("webhook", hook, f"notify_{run['run_id']}"),
    ]
    # The runtime's last outbox pass delivered the webhook (STUDIO_HTTP_ALLOW lets it reach
    # the loopback receiver) exactly once; without SMTP settings the e-mail stays queued.
    [post] = [r for r in receiver.requests if r.path == "/hooks/run-ended"]
    assert post.json == {
        "run_id": run["run_id"],
        "status": "succeeded",
        "graph_id": run["graph_id"],
    }
    assert post.headers["idempotency-key"] == f"notify_{run['run_id']}"
    assert dict(cli.rows("SELECT channel, status FROM outbox")) == {
        "email": "queued",
        "webhook": "sent",
    }


@pytest.mark.parametrize(
    ("option", "value"),
    [("--notify-webhook", "ftp://example.com/hook"), ("--notify-email", "not an address")],
)
def test_bad_notify_target_is_refused_before_the_run(cli: Cli, option: str, value: str) -> None:
    assert_clean_error(cli("run", str(TRIAGE), "--input", INVOICE, option, value), "notify")
    assert cli.rows("SELECT run_id FROM runs") == []
    assert cli.rows("SELECT message_id FROM outbox") == []


# --- demo --------------------------------------------------------------------------------------


def _demo(cli: Cli, db: Path) -> Result:
    return cli("demo", "--db", str(db), db=False)


def _sandbox_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("payments sandbox saw"))


def test_demo(cli: Cli, tmp_path: Path) -> None:
    result = _demo(cli, tmp_path / "demo.db")
    assert result.rc == 0, result.out + result.err
    assert "Traceback" not in result.err
    assert "alice (the starter) confirms" in result.out
    assert "bob (approver) approves with the amount lowered to 25.0" in result.out
    assert "  run is succeeded" in result.out
    line = next(x for x in result.out.splitlines() if x.startswith("result: "))
    assert json.loads(line.removeprefix("result: "))["order_id"] == "A-1001"
    assert _sandbox_line(result.out) == (
        "payments sandbox saw 1 refund(s): [{'order_id': 'A-1001', 'amount': 25.0}]"
    )
    assert (tmp_path / "demo.db").is_file()


def test_demo_sandbox_counts_only_its_own_refunds(cli: Cli, tmp_path: Path) -> None:
    """BUG: studio/demo.py keeps the sandbox's refunds in a class attribute
    (`_Payments.seen`), shared by every demo in the process, so a second `studio demo` in
    the same process reports the first demo's refund too ("saw 2 refund(s)")."""
    lines: list[str] = []
    for name in ("first.db", "second.db"):
        result = _demo(cli, tmp_path / name)
        assert result.rc == 0, result.out + result.err
        lines.append(_sandbox_line(result.out))
    assert (
        lines == ["payments sandbox saw 1 refund(s): [{'order_id': 'A-1001', 'amount': 25.0}]"] * 2
    )
