"""Run-end notifications: a run started with ``notify`` gets one webhook and one e-mail when
it ends (succeeded, failed or cancelled), delivered exactly once by the outbox dispatcher.

Real SQLite files, the real run manager, an `OutboxDispatcher` sending SMTP to a loopback
aiosmtpd server and signed webhooks to the loopback HTTP receiver.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from components.base import HttpPolicy
from components.errors import UserError
from graphs.headless import Runtime, open_runtime, run_document
from graphs.identity import Actor
from graphs.outbox import OutboxDispatcher, SmtpSettings, verify_signature
from graphs.runs import FINAL_STATUSES
from graphs.tables import OutboxMessage
from tests.conftest import support_doc
from tests.loopback.http_receiver import HttpReceiver
from tests.loopback.smtp_receiver import SmtpReceiver

SIGNING_KEY = b"notify-signing-key-0123456789abcdef"
SENDER = "Agent Studio <studio@studio.example>"
OWNER_MAIL = "owner@example.com"


@pytest.fixture
def runtime(
    tmp_path: Path, receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    """A runtime whose own background dispatcher stays idle during the test (the tests
    drive `OutboxDispatcher`s themselves); it signs with the test's key."""
    monkeypatch.setenv("STUDIO_WEBHOOK_SECRET", SIGNING_KEY.decode())
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
    with open_runtime(
        tmp_path / "studio.db", http=policy, lease_ttl_s=5, outbox_interval_s=3600
    ) as rt:
        yield rt


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as server:
        yield server


@pytest.fixture
def hooks(receiver: HttpReceiver) -> HttpReceiver:
    receiver.route("/hooks/run-ended", status=204, body=b"")
    return receiver


def notify(receiver: HttpReceiver) -> dict[str, str]:
    return {"webhook": receiver.url_for("/hooks/run-ended"), "email": OWNER_MAIL}


def dispatcher(rt: Runtime, smtp: SmtpReceiver, receiver: HttpReceiver) -> OutboxDispatcher:
    return OutboxDispatcher(
        rt.engine,
        smtp=SmtpSettings(host=smtp.host, port=smtp.port, sender=SENDER, timeout_s=5),
        http=HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5),
        signing_key=SIGNING_KEY,
        lease_s=60,
        retry_base_s=0.01,
    )


def simple_doc(script: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "name": "Notifying graph",
        "entry": "agent",
        "state": [{"name": "question", "type": "string", "input": True}],
        "nodes": [
            {
                "id": "agent",
                "type": "llm",
                "config": {
                    "prompt": "{{ question }}",
                    "provider_config": {"script": script or [{"text": "All good."}]},
                },
            }
        ],
        "edges": [],
    }


def rows(rt: Runtime, run_id: str | None = None) -> list[OutboxMessage]:
    query = select(OutboxMessage).order_by(OutboxMessage.channel)
    if run_id is not None:
        query = query.where(OutboxMessage.run_id == run_id)
    with rt.manager.sessions() as session:
        return list(session.scalars(query))


def webhook_posts(receiver: HttpReceiver) -> list[Any]:
    return [r for r in receiver.requests if r.path == "/hooks/run-ended"]


def assert_delivered_once(
    rt: Runtime,
    smtp: SmtpReceiver,
    receiver: HttpReceiver,
    *,
    run_id: str,
    graph_id: str,
    status: str,
) -> None:
    """One webhook + one e-mail row; two dispatcher passes deliver each exactly once."""
    queued = rows(rt, run_id)
    assert sorted(r.channel for r in queued) == ["email", "webhook"]
    assert all(r.status == "queued" and r.workspace_id == "acme" for r in queued)

    first = dispatcher(rt, smtp, receiver)
    assert first.deliver_pending() == 2
    assert first.deliver_pending() == 0  # a second pass finds nothing due
    assert dispatcher(rt, smtp, receiver).deliver_pending() == 0  # nor does another dispatcher
    assert {r.status for r in rows(rt, run_id)} == {"sent"}

    [post] = webhook_posts(receiver)
    assert post.method == "POST"
    assert post.json == {"run_id": run_id, "status": status, "graph_id": graph_id}
    stamp = post.headers["x-studio-timestamp"]
    signature = post.headers["x-studio-signature"]
    assert verify_signature(SIGNING_KEY, stamp, post.body, signature)
    assert not verify_signature(b"another-key-0123456789abcdef", stamp, post.body, signature)
    assert not verify_signature(SIGNING_KEY, stamp, post.body + b" ", signature)
    assert post.headers["idempotency-key"] == f"notify_{run_id}"

    assert smtp.wait_for(1)
    [mail] = smtp.mails
    assert mail.rcpt_tos == (OWNER_MAIL,)
    assert mail.subject is not None and run_id in mail.subject and status in mail.subject
    assert status in mail.body
    assert mail.idempotency_key == f"notify_{run_id}_email"


# --- each way a run can end ---------------------------------------------------------------


def test_succeeded_run_notifies_once(
    runtime: Runtime, hooks: HttpReceiver, smtp: SmtpReceiver, alice: Actor
) -> None:
    view = run_document(
        runtime, simple_doc(), {"question": "hi"}, actor=alice, timeout_s=30, notify=notify(hooks)
    )
    assert view.status == "succeeded", view.error
    assert_delivered_once(
        runtime, smtp, hooks, run_id=view.run_id, graph_id=view.graph_id, status="succeeded"
    )


def test_failed_run_notifies_once(
    runtime: Runtime, hooks: HttpReceiver, smtp: SmtpReceiver, alice: Actor
) -> None:
    doc = simple_doc([{"fail": "error"}])
    view = run_document(
        runtime, doc, {"question": "hi"}, actor=alice, timeout_s=30, notify=notify(hooks)
    )
    assert view.status == "failed"
    assert_delivered_once(
        runtime, smtp, hooks, run_id=view.run_id, graph_id=view.graph_id, status="failed"
    )


def test_waiting_run_does_not_notify_until_it_ends(
    runtime: Runtime, receiver: HttpReceiver, hooks: HttpReceiver, smtp: SmtpReceiver, alice: Actor
) -> None:
    m = runtime.manager
    version = m.library.create(alice, support_doc(receiver))
    run_id = m.start_run(
        alice, version_id=version.version_id, input={"order_id": "A-1"}, notify=notify(hooks)
    )
    assert m.wait(alice, run_id, timeout_s=30).status == "waiting_approval"
    assert rows(runtime, run_id) == []
    [email] = m.approvals.list(alice, run_id=run_id)
    m.decide(alice, email.approval_id, "reject", feedback="no mail")
    assert m.wait(alice, run_id, timeout_s=30).status == "waiting_approval"
    assert rows(runtime, run_id) == []  # still waiting: nothing sent
    [refund] = [a for a in m.approvals.list(alice, run_id=run_id) if a.status == "pending"]
    m.decide(Actor("acme", "bob"), refund.approval_id, "reject", feedback="no refund")
    view = m.wait(alice, run_id, timeout_s=30)
    assert view.status == "succeeded", view.error
    assert_delivered_once(
        runtime, smtp, hooks, run_id=run_id, graph_id=view.graph_id, status="succeeded"
    )


def test_run_cancelled_while_waiting_notifies_once(
    runtime: Runtime, receiver: HttpReceiver, hooks: HttpReceiver, smtp: SmtpReceiver, alice: Actor
) -> None:
    m = runtime.manager
    version = m.library.create(alice, support_doc(receiver))
    run_id = m.start_run(
        alice, version_id=version.version_id, input={"order_id": "A-2"}, notify=notify(hooks)
    )
    assert m.wait(alice, run_id, timeout_s=30).status == "waiting_approval"
    view = m.cancel(alice, run_id)
    assert view.status == "cancelled"
    m.wait(alice, run_id, timeout_s=5)
    assert rows(runtime, run_id), "a run cancelled while waiting queued no notification"
    assert_delivered_once(
        runtime, smtp, hooks, run_id=run_id, graph_id=version.graph_id, status="cancelled"
    )


def test_run_without_notify_queues_nothing(runtime: Runtime, alice: Actor) -> None:
    view = run_document(runtime, simple_doc(), {"question": "hi"}, actor=alice, timeout_s=30)
    assert view.status == "succeeded", view.error
    assert rows(runtime) == []


# --- delivery is exactly once, however many dispatchers ------------------------------------


def test_concurrent_dispatchers_deliver_each_notification_once(
    runtime: Runtime, hooks: HttpReceiver, smtp: SmtpReceiver, alice: Actor
) -> None:
    run_ids = []
    for n in range(4):
        view = run_document(
            runtime,
            simple_doc(),
            {"question": f"q{n}"},
            actor=alice,
            timeout_s=30,
            notify=notify(hooks),
        )
        assert view.status == "succeeded", view.error
        run_ids.append(view.run_id)
    assert len(rows(runtime)) == 8

    sent: list[int] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        worker = dispatcher(runtime, smtp, hooks)
        barrier.wait()
        sent.append(worker.deliver_pending())

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(sent) == 8
    assert smtp.wait_for(4)
    assert len(smtp.mails) == 4
    assert sorted(m.idempotency_key or "" for m in smtp.mails) == sorted(
        f"notify_{r}_email" for r in run_ids
    )
    posts = webhook_posts(hooks)
    assert len(posts) == 4
    assert sorted(p.json["run_id"] for p in posts) == sorted(run_ids)
    assert {r.status for r in rows(runtime)} == {"sent"}


def test_webhook_receiver_error_is_retried_and_still_delivered_once(
    runtime: Runtime, hooks: HttpReceiver, smtp: SmtpReceiver, alice: Actor
) -> None:
    hooks.route("/hooks/run-ended", status=503, body={"error": "busy"})
    view = run_document(
        runtime, simple_doc(), {"question": "hi"}, actor=alice, timeout_s=30, notify=notify(hooks)
    )
    worker = dispatcher(runtime, smtp, hooks)
    assert worker.deliver_pending() == 1  # the e-mail; the webhook is queued again
    [hook_row] = [r for r in rows(runtime, view.run_id) if r.channel == "webhook"]
    assert hook_row.status == "queued" and hook_row.attempts == 1
    hooks.route("/hooks/run-ended", status=200, body={"ok": True})
    time.sleep(0.05)  # past the back-off (retry_base_s=0.01)
    assert worker.deliver_pending() == 1
    assert worker.deliver_pending() == 0
    posts = webhook_posts(hooks)
    assert len(posts) == 2
    assert {p.headers["idempotency-key"] for p in posts} == {f"notify_{view.run_id}"}
    assert posts[0].body == posts[1].body  # the retry sends the same signed payload
    assert json.loads(posts[-1].body)["status"] == "succeeded"
    assert [r.status for r in rows(runtime, view.run_id)] == ["sent", "sent"]
    assert len(smtp.mails) == 1


# --- hostile notify targets -----------------------------------------------------------------


def test_notify_webhook_to_a_private_address_is_refused_at_delivery(
    runtime: Runtime, hooks: HttpReceiver, smtp: SmtpReceiver, alice: Actor
) -> None:
    """A webhook is an outbound request like any other: the network guard applies (SSRF)."""
    view = run_document(
        runtime, simple_doc(), {"question": "hi"}, actor=alice, timeout_s=30, notify=notify(hooks)
    )
    guarded = OutboxDispatcher(
        runtime.engine,
        smtp=None,
        http=HttpPolicy(timeout_s=5),  # loopback not allowed
        signing_key=SIGNING_KEY,
        lease_s=60,
    )
    assert guarded.deliver_pending() == 0
    [hook_row] = [r for r in rows(runtime, view.run_id) if r.channel == "webhook"]
    assert hook_row.status == "failed"
    assert webhook_posts(hooks) == []


@pytest.mark.parametrize(
    "target",
    [
        {"webhook": "ftp://example.com/hook"},
        {"webhook": "not a url"},
        {"email": "owner@example.com\r\nBcc: everyone@example.com"},
    ],
    ids=["ftp-webhook", "garbage-webhook", "header-injection-email"],
)
def test_unusable_notify_target_never_leaves_a_run_running(
    runtime: Runtime, alice: Actor, target: dict[str, str]
) -> None:
    """Refused at start, or the run still ends (I-RUN): never stuck in 'running'."""
    m = runtime.manager
    version = m.library.create(alice, simple_doc())
    try:
        run_id = m.start_run(
            alice, version_id=version.version_id, input={"question": "hi"}, notify=target
        )
    except UserError:
        assert m.list(alice) == []
        return
    view = m.wait(alice, run_id, timeout_s=3)
    assert view.status in FINAL_STATUSES, f"run left {view.status!r} with no live owner"


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/run\u2028ended", "https://hooks.example.com/run\x85ended"],
    ids=["line-separator", "next-line"],
)
def test_notify_target_accepted_at_start_is_not_silently_dropped_at_the_end(
    runtime: Runtime, alice: Actor, url: str
) -> None:
    """The start-time check and the outbox must agree: accepted means a notice is queued."""
    m = runtime.manager
    version = m.library.create(alice, simple_doc())
    try:
        run_id = m.start_run(
            alice, version_id=version.version_id, input={"question": "hi"}, notify={"webhook": url}
        )
    except UserError:
        assert m.list(alice) == []
        return
    view = m.wait(alice, run_id, timeout_s=10)
    assert view.status == "succeeded", view.error
    assert [r.channel for r in rows(runtime, run_id)] == ["webhook"], (
        "start_run accepted the webhook URL, but no notification was queued when the run ended"
    )


# --- the runtime's own dispatcher ---------------------------------------------------------


def test_runtime_dispatcher_delivers_notices_once_alongside_another_dispatcher(
    tmp_path: Path,
    hooks: HttpReceiver,
    smtp: SmtpReceiver,
    alice: Actor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`open_runtime` delivers notices by itself; a second dispatcher changes nothing."""
    monkeypatch.setenv("STUDIO_WEBHOOK_SECRET", SIGNING_KEY.decode())
    policy = HttpPolicy(allow_hosts=frozenset({hooks.host_port}), timeout_s=5)
    settings = SmtpSettings(host=smtp.host, port=smtp.port, sender=SENDER, timeout_s=5)
    with open_runtime(
        tmp_path / "own.db", http=policy, smtp=settings, lease_ttl_s=5, outbox_interval_s=0.05
    ) as rt:
        view = run_document(
            rt, simple_doc(), {"question": "hi"}, actor=alice, timeout_s=30, notify=notify(hooks)
        )
        assert view.status == "succeeded", view.error
        extra = dispatcher(rt, smtp, hooks)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            extra.deliver_pending()
            if {r.status for r in rows(rt, view.run_id)} == {"sent"}:
                break
            time.sleep(0.02)
        assert {r.status for r in rows(rt, view.run_id)} == {"sent"}
        extra.deliver_pending()
    assert smtp.wait_for(1)
    time.sleep(0.1)
    assert len(smtp.mails) == 1
    [post] = webhook_posts(hooks)
    assert post.json == {"run_id": view.run_id, "status": "succeeded", "graph_id": view.graph_id}
    assert verify_signature(
        SIGNING_KEY,
        post.headers["x-studio-timestamp"],
        post.body,
        post.headers["x-studio-signature"],
    )
