"""`studio demo`: the support-agent example end to end, headless, narrated.

A local payments sandbox (a loopback HTTP server that deduplicates by Idempotency-Key)
receives the refund. The run pauses twice: the e-mail needs a confirmation (the starter
gives it), the refund needs an admin who did not start the run (a second user gives it,
lowering the amount). Nothing is approved automatically.
"""

from __future__ import annotations

__all__ = ["run_demo"]

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any

from components.base import HttpPolicy
from graphs.headless import open_runtime
from graphs.identity import Actor
from studio.settings import Settings

ALICE, BOB = Actor("demo", "alice"), Actor("demo", "bob")


class _Sandbox(ThreadingHTTPServer):
    """The payments sandbox: remembers each refund once per Idempotency-Key."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Payments)
        self.seen: dict[str, dict[str, Any]] = {}


class _Payments(BaseHTTPRequestHandler):
    server: _Sandbox

    def do_POST(self) -> None:
        seen = self.server.seen
        key = self.headers.get("Idempotency-Key", "")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        first = key not in seen
        seen.setdefault(key, body)
        reply = json.dumps({"refund": "accepted", "replayed": not first}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *_: Any) -> None:
        return


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(db_path: Path | None) -> int:
    payments = _Sandbox()
    threading.Thread(target=payments.serve_forever, daemon=True).start()
    port = payments.server_address[1]
    doc = json.loads(files("graphs").joinpath("examples/support_agent.json").read_text())
    refund = next(t for t in doc["tools"] if t["name"] == "issue_refund")
    refund["config"]["url"] = f"http://127.0.0.1:{port}/refunds"
    db = db_path or Settings().db_path
    policy = HttpPolicy(allow_hosts=frozenset({f"127.0.0.1:{port}"}))
    try:
        with open_runtime(db, http=policy) as rt:
            return _narrate(rt.manager, doc, db, payments.seen)
    finally:
        payments.shutdown()


def _narrate(m: Any, doc: dict[str, Any], db: Path, seen: dict[str, Any]) -> int:
    _say(f"Agent Studio demo — database {db}")
    version = m.library.create(ALICE, doc, message="demo")
    run_id = m.start_run(ALICE, version_id=version.version_id, input={"order_id": "A-1001"})
    _say(f"alice started run {run_id} of {doc['name']!r} (version {version.number})")
    for _ in range(4):
        run = m.wait(ALICE, run_id, timeout_s=60)
        _say(f"  run is {run.status}")
        if run.status != "waiting_approval":
            break
        for a in m.approvals.list(ALICE, run_id=run_id):
            _say(f"  paused: {a.action} {json.dumps(a.args)} needs {a.tier!r} — {a.reason}")
            if a.tier == "admin":
                edited = {**a.args, "amount": 25.0}
                _say(f"  bob (approver) approves with the amount lowered to {edited['amount']}")
                m.decide(BOB, a.approval_id, "edit", args=edited)
            else:
                _say("  alice (the starter) confirms")
                m.decide(ALICE, a.approval_id, "approve")
    steps = [e for e in m.events.history(ALICE.workspace_id, run_id) if e.kind == "node_finished"]
    for e in steps:
        tokens = (
            f", {e.data['input_tokens']}+{e.data['output_tokens']} tokens"
            if e.data.get("model")
            else ""
        )
        _say(f"  step {e.node_id}: {e.data['ms']:.1f} ms{tokens}")
    _say(f"result: {json.dumps(run.output)}")
    _say(f"payments sandbox saw {len(seen)} refund(s): {list(seen.values())}")
    return 0 if run.status == "succeeded" else 1
