"""The SQL outbox: enqueue in the caller's transaction, deliver exactly once per key.

Real SQLite files, a real SMTP server and a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, update
from sqlalchemy.orm import Session

from components.base import HttpPolicy
from components.errors import Conflict, UserError
from graphs.outbox import (
    OutboxDispatcher,
    SmtpSettings,
    SqlOutbox,
    enqueue_webhook,
    signature_header,
    start_dispatcher_thread,
    verify_signature,
)
from graphs.tables import Base, OutboxMessage
from tests.loopback.smtp_receiver import SmtpReceiver, free_port

SIGNING_KEY = b"test-signing-key-0123456789abcdef"
SENDER = "Agent Studio <studio@studio.example>"


def key(n: int) -> str:
    return f"{n:064x}"


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_engine(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "studio.db"
    engine = make_engine(path)
    Base.metadata.create_all(engine)
    engine.dispose()
    return path


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = make_engine(db_path)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


def queue_email(
    engine: Engine, idem: str, *, to: str = "ana@example.com", workspace: str = "ws-1"
) -> str:
    with Session(engine) as session, session.begin():
        outbox = SqlOutbox(session, workspace_id=workspace, run_id="run-1")
        return outbox.enqueue_email(
            to=to, subject=f"Order {idem[-4:]}", body="Hi", idempotency_key=idem
        )


def queue_webhook(engine: Engine, idem: str, url: str, payload: dict[str, Any]) -> str:
    with Session(engine) as session, session.begin():
        return enqueue_webhook(
            session,
            workspace_id="ws-1",
            run_id="run-1",
            url=url,
            payload=payload,
            idempotency_key=idem,
        )


def get_row(engine: Engine, idem: str) -> OutboxMessage:
    with Session(engine) as session:
        found = session.get(OutboxMessage, idem)
        assert found is not None
        return found


def count_rows(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


def dispatcher_for(
    engine: Engine, port: int | None, *, http: HttpPolicy | None = None, **options: Any
) -> OutboxDispatcher:
    smtp = None if port is None else SmtpSettings("127.0.0.1", port, SENDER, timeout_s=5)
    return OutboxDispatcher(
        engine, smtp=smtp, http=http or HttpPolicy(timeout_s=5), signing_key=SIGNING_KEY, **options
    )


# --- enqueue ----------------------------------------------------------------------------------


def test_enqueue_writes_in_the_callers_transaction_only(engine: Engine) -> None:
    with Session(engine) as session:
        outbox = SqlOutbox(session, workspace_id="ws-1", run_id="run-1")
        outbox.enqueue_email(to="ana@example.com", subject="s", body="b", idempotency_key=key(1))
        session.rollback()  # the effect's transaction failed: no message either
    assert count_rows(engine) == 0

    assert queue_email(engine, key(1)) == key(1)
    row = get_row(engine, key(1))
    assert (row.channel, row.status, row.attempts, row.sent_at) == ("email", "queued", 0, None)


def test_same_key_returns_the_existing_message(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        outbox = SqlOutbox(session, workspace_id="ws-1", run_id="run-1")
        ids = {
            outbox.enqueue_email(to="ana@example.com", subject="s", body=b, idempotency_key=key(1))
            for b in ("first", "second")
        }
    ids.add(queue_email(engine, key(1)))
    assert ids == {key(1)}
    assert count_rows(engine) == 1
    assert get_row(engine, key(1)).body == "first"


def test_a_key_used_by_another_workspace_or_channel_is_a_conflict(engine: Engine) -> None:
    queue_email(engine, key(1), workspace="ws-1")
    with pytest.raises(Conflict, match="derive a fresh key"):
        queue_email(engine, key(1), workspace="ws-2")
    with pytest.raises(Conflict):
        queue_webhook(engine, key(1), "https://hooks.example.com/x", {"a": 1})
    assert get_row(engine, key(1)).workspace_id == "ws-1"
    assert count_rows(engine) == 1


@pytest.mark.parametrize("bad", ["", "k" * 65, "a b", "key\r\nBcc: x", "<x@y>", "ключ"])
def test_unusable_keys_are_refused(engine: Engine, bad: str) -> None:
    with pytest.raises(UserError, match="idempotency key"):
        queue_email(engine, bad)
    assert count_rows(engine) == 0


@pytest.mark.parametrize(
    "field, value", [("to", "a@example.com\r\nBcc: x@evil.example"), ("subject", "s\nBcc: x")]
)
def test_outbox_itself_refuses_header_injection(engine: Engine, field: str, value: str) -> None:
    args = {"to": "a@example.com", "subject": "s", "body": "b", "idempotency_key": key(1)}
    with Session(engine) as session, pytest.raises(UserError, match="header injection"):
        SqlOutbox(session, workspace_id="ws-1", run_id=None).enqueue_email(**{**args, field: value})


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example.com/x",
        "javascript:alert(1)",
        "http://",
        "/relative",
        "http://h.example/\r\nX: y",
    ],
)
def test_enqueue_webhook_refuses_non_http_urls(engine: Engine, url: str) -> None:
    with pytest.raises(UserError, match="webhook URL"):
        queue_webhook(engine, key(1), url, {})
    assert count_rows(engine) == 0


# --- e-mail delivery ----------------------------------------------------------------------------


def test_email_is_delivered_once_with_its_key_as_message_id(
    engine: Engine, smtp: SmtpReceiver
) -> None:
    queue_email(engine, key(7), to="bob@example.org")
    dispatcher = dispatcher_for(engine, smtp.port)

    assert dispatcher.deliver_pending() == 1
    assert dispatcher.deliver_pending() == 0
    [mail] = smtp.mails
    assert mail.message_id == f"<{key(7)}@studio.example>"
    assert mail.idempotency_key == key(7)
    assert (mail.mail_from, mail.rcpt_tos) == ("studio@studio.example", ("bob@example.org",))
    assert (mail.message["To"], mail.subject, mail.body) == (
        "bob@example.org",
        "Order 0007",
        "Hi\n",
    )
    row = get_row(engine, key(7))
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None


def test_smtp_server_down_requeues_with_backoff_then_delivers(
    engine: Engine, clock: FakeClock
) -> None:
    receiver = SmtpReceiver(port=free_port())  # not started: connections are refused
    queue_email(engine, key(1))
    dispatcher = dispatcher_for(engine, receiver.port, clock=clock, retry_base_s=30)

    assert dispatcher.deliver_pending() == 0
    row = get_row(engine, key(1))
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error is not None and "Connection refused" in row.last_error

    assert dispatcher.deliver_pending() == 0  # backing off: not due for 30 s
    assert get_row(engine, key(1)).attempts == 1

    clock.advance(31)
    with receiver:
        assert dispatcher.deliver_pending() == 1
        assert [m.idempotency_key for m in receiver.mails] == [key(1)]
    row = get_row(engine, key(1))
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


def test_temporary_smtp_refusal_is_retried(engine: Engine, smtp: SmtpReceiver) -> None:
    smtp.fail_next(2)
    queue_email(engine, key(1))
    dispatcher = dispatcher_for(engine, smtp.port, retry_base_s=0)

    assert [dispatcher.deliver_pending() for _ in range(3)] == [0, 0, 1]
    row = get_row(engine, key(1))
    assert (row.status, row.attempts) == ("sent", 3)
    assert len(smtp.mails) == 1


def test_gives_up_after_max_attempts(engine: Engine) -> None:
    receiver = SmtpReceiver(port=free_port())
    queue_email(engine, key(1))
    dispatcher = dispatcher_for(engine, receiver.port, max_attempts=3, retry_base_s=0)

    for attempt in (1, 2, 3):
        assert dispatcher.deliver_pending() == 0
        assert get_row(engine, key(1)).attempts == attempt
    row = get_row(engine, key(1))
    assert row.status == "failed" and row.last_error is not None

    with receiver:
        assert dispatcher.deliver_pending() == 0
        assert receiver.mails == []
    assert get_row(engine, key(1)).attempts == 3


def test_permanent_refusal_fails_at_once_and_does_not_block_others(
    engine: Engine, smtp: SmtpReceiver
) -> None:
    smtp.refuse_recipient("gone@example.com")
    queue_email(engine, key(1), to="gone@example.com")
    queue_email(engine, key(2), to="ana@example.com")

    assert dispatcher_for(engine, smtp.port, retry_base_s=0).deliver_pending() == 1
    gone = get_row(engine, key(1))
    assert (gone.status, gone.attempts) == ("failed", 1)
    assert gone.last_error is not None and "550" in gone.last_error
    assert get_row(engine, key(2)).status == "sent"
    assert [m.idempotency_key for m in smtp.mails] == [key(2)]


def test_dispatcher_without_smtp_leaves_email_queued(engine: Engine) -> None:
    queue_email(engine, key(1))
    assert dispatcher_for(engine, None).deliver_pending() == 0
    assert (get_row(engine, key(1)).status, get_row(engine, key(1)).attempts) == ("queued", 0)


def _pretend_claimed(engine: Engine, idem: str, at: datetime, attempts: int) -> None:
    """What a dispatcher that died after claiming (or after sending) leaves behind."""
    with engine.begin() as conn:
        conn.execute(
            update(OutboxMessage)
            .where(OutboxMessage.message_id == idem)
            .values(status="sending", sent_at=at, attempts=attempts)
        )


def test_crash_after_send_redelivers_after_the_lease_with_the_same_key(
    engine: Engine, smtp: SmtpReceiver, clock: FakeClock
) -> None:
    queue_email(engine, key(1))
    dispatcher = dispatcher_for(engine, smtp.port, clock=clock, lease_s=300)
    assert dispatcher.deliver_pending() == 1
    _pretend_claimed(engine, key(1), clock.now, attempts=1)  # "sent" was never recorded

    clock.advance(299)
    assert dispatcher.deliver_pending() == 0  # the lease still belongs to the dead dispatcher
    clock.advance(2)
    assert dispatcher.deliver_pending() == 1

    assert len(smtp.mails) == 2  # at-least-once on the wire ...
    assert smtp.distinct_message_ids() == {f"<{key(1)}@studio.example>"}  # ... one key
    assert smtp.distinct_idempotency_keys() == {key(1)}
    assert (get_row(engine, key(1)).status, get_row(engine, key(1)).attempts) == ("sent", 2)


def test_stale_claim_beyond_max_attempts_is_failed_not_resent(
    engine: Engine, smtp: SmtpReceiver, clock: FakeClock
) -> None:
    queue_email(engine, key(1))
    _pretend_claimed(engine, key(1), clock.now, attempts=3)
    clock.advance(301)
    assert dispatcher_for(engine, smtp.port, clock=clock, max_attempts=3).deliver_pending() == 0
    row = get_row(engine, key(1))
    assert row.status == "failed" and "did not finish" in (row.last_error or "")
    assert smtp.mails == []


@pytest.mark.parametrize("journal", ["delete", "wal"])
@pytest.mark.parametrize("limit", [5, 50])
def test_two_dispatchers_racing_deliver_each_message_exactly_once(
    db_path: Path, engine: Engine, smtp: SmtpReceiver, limit: int, journal: str
) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"PRAGMA journal_mode={journal}").scalar() == journal
    for n in range(50):
        queue_email(engine, key(n))
    engines = [make_engine(db_path) for _ in range(2)]
    dispatchers = [dispatcher_for(e, smtp.port) for e in engines]
    start = threading.Barrier(2)
    sent = [0, 0]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            start.wait()
            while batch := dispatchers[index].deliver_pending(limit=limit):
                sent[index] += batch
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for e in engines:
        e.dispose()

    assert errors == []
    assert sum(sent) == 50
    assert len(smtp.mails) == 50
    assert smtp.distinct_idempotency_keys() == {key(n) for n in range(50)}
    with Session(engine) as session:
        states = set(session.execute(select(OutboxMessage.status, OutboxMessage.attempts)))
    assert states == {("sent", 1)}  # every row was claimed exactly once


# --- webhooks -----------------------------------------------------------------------------------


class WebhookReceiver:
    """A loopback HTTP server recording POSTs; answers with queued status codes (else 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hooks/run-ended") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def allow(hook: WebhookReceiver) -> HttpPolicy:
    return HttpPolicy(allow_hosts=frozenset({f"127.0.0.1:{hook.port}"}), timeout_s=5)


def test_webhook_is_posted_signed_with_its_idempotency_key(
    engine: Engine, hook: WebhookReceiver
) -> None:
    payload = {"run_id": "run-1", "status": "succeeded", "note": "héllo"}
    queue_webhook(engine, key(3), hook.url(), payload)

    assert dispatcher_for(engine, None, http=allow(hook)).deliver_pending() == 1
    [(path, headers, body)] = hook.requests
    assert path == "/hooks/run-ended"
    assert json.loads(body) == payload
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == key(3)
    stamp, signature = headers["X-Studio-Timestamp"], headers["X-Studio-Signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(SIGNING_KEY, stamp, body, signature)
    assert get_row(engine, key(3)).status == "sent"


def test_signature_rejects_tampering_staleness_and_wrong_keys() -> None:
    body = b'{"amount":10,"run_id":"run-1"}'
    now = 1_700_000_000
    good = signature_header(SIGNING_KEY, now, body)

    assert verify_signature(SIGNING_KEY, str(now), body, good, now=now)
    assert verify_signature(SIGNING_KEY, now, body.decode(), good, now=now + 300)
    assert not verify_signature(SIGNING_KEY, now, body.replace(b"10", b"99"), good, now=now)
    assert not verify_signature(SIGNING_KEY, now + 1, body, good, now=now)  # stamp swapped
    assert not verify_signature(SIGNING_KEY, now, body, good, now=now + 301)  # stale
    assert not verify_signature(SIGNING_KEY, now, body, good, now=now - 301)  # from the future
    assert not verify_signature(b"another-key-0123456789abcdef", now, body, good, now=now)
    assert not verify_signature(SIGNING_KEY, now, body, good, now=now + 60, tolerance_s=30)
    for forged in ("", good[7:], good.upper(), "sha1=" + good[7:], good + "0", "sha256=ü"):
        assert not verify_signature(SIGNING_KEY, now, body, forged, now=now)
    wide = "".join(chr(0xFF10 + int(digit)) for digit in str(now))  # int() would accept it
    for stamp in ("", "abc", "1.5e9", None, f"+{now}", f" {now}", f"{now:_}", wide):
        assert not verify_signature(SIGNING_KEY, stamp, body, good, now=now)  # type: ignore[arg-type]


def test_webhook_to_a_private_address_is_refused_unless_allowed(
    engine: Engine, hook: WebhookReceiver
) -> None:
    queue_webhook(engine, key(1), hook.url(), {"n": 1})
    assert dispatcher_for(engine, None).deliver_pending() == 0  # default policy
    row = get_row(engine, key(1))
    assert (row.status, row.attempts) == ("failed", 1)  # retrying cannot help
    assert row.last_error is not None and "loopback" in row.last_error
    assert "allowed hosts" in row.last_error
    assert hook.requests == []

    queue_webhook(engine, key(2), hook.url(), {"n": 2})
    assert dispatcher_for(engine, None, http=allow(hook)).deliver_pending() == 1
    assert [json.loads(body) for _, _, body in hook.requests] == [{"n": 2}]


def test_webhook_5xx_is_retried_and_4xx_fails(engine: Engine, hook: WebhookReceiver) -> None:
    hook.statuses = [503, 404]
    queue_webhook(engine, key(1), hook.url("/a"), {"n": 1})
    dispatcher = dispatcher_for(engine, None, http=allow(hook), retry_base_s=0)

    assert dispatcher.deliver_pending() == 0
    assert (get_row(engine, key(1)).status, get_row(engine, key(1)).attempts) == ("queued", 1)
    queue_webhook(engine, key(2), hook.url("/b"), {"n": 2})
    assert dispatcher.deliver_pending() == 1  # /a answered 404 this time, /b 200
    assert (get_row(engine, key(1)).status, get_row(engine, key(1)).attempts) == ("failed", 2)
    assert "HTTP 404" in (get_row(engine, key(1)).last_error or "")
    assert get_row(engine, key(2)).status == "sent"
    assert len({h["Idempotency-Key"] for p, h, _ in hook.requests if p == "/a"}) == 1


def test_webhook_url_tokens_stay_out_of_errors_and_logs(
    engine: Engine, hook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    hook.statuses = [500]
    queue_webhook(engine, key(1), hook.url("/hooks/s3cr3t-T0KEN"), {"n": 1})
    dead = f"http://127.0.0.1:{free_port()}/hooks/s3cr3t-T0KEN"
    queue_webhook(engine, key(2), dead, {"n": 2})
    policy = HttpPolicy(allow_hosts=frozenset({"127.0.0.1"}), timeout_s=5)

    with caplog.at_level(logging.DEBUG):
        assert dispatcher_for(engine, None, http=policy).deliver_pending() == 0
    errors = [get_row(engine, key(n)).last_error or "" for n in (1, 2)]
    assert all(errors) and "HTTP 500" in errors[0]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("graphs.")]
    assert ours and not any("s3cr3t" in text for text in [*errors, *ours])


# --- the dispatcher thread ------------------------------------------------------------------------


def test_dispatcher_thread_survives_errors_and_stops_on_request(
    tmp_path: Path, smtp: SmtpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(tmp_path / "late.db")  # no tables yet: every pass fails
    dispatcher = dispatcher_for(engine, smtp.port)
    stop = threading.Event()
    with caplog.at_level(logging.ERROR, logger="graphs.outbox"):
        thread = start_dispatcher_thread(dispatcher, 0.05, stop)
        try:
            threading.Event().wait(0.3)
            assert thread.is_alive()
            Base.metadata.create_all(engine)
            queue_email(engine, key(1))
            assert smtp.wait_for(1, timeout=10)
        finally:
            stop.set()
            thread.join(5)
    assert not thread.is_alive()
    assert "outbox delivery pass failed" in caplog.text
    assert get_row(engine, key(1)).status == "sent"
    engine.dispose()


def test_dispatcher_refuses_unsafe_settings(engine: Engine) -> None:
    with pytest.raises(UserError, match="signing key"):
        OutboxDispatcher(engine, smtp=None, http=HttpPolicy(), signing_key=b"short")
    with pytest.raises(UserError, match="raise lease_s"):
        dispatcher_for(engine, None, http=HttpPolicy(timeout_s=20), lease_s=30)
    with pytest.raises(UserError, match="max_attempts"):
        dispatcher_for(engine, None, max_attempts=0)
    with pytest.raises(UserError, match="SMTP sender 'studio'"):
        SmtpSettings("127.0.0.1", 25, "studio")
