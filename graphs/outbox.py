"""The SQL outbox: e-mails and webhooks written in the effect's transaction, delivered later.

Writing: `SqlOutbox.enqueue_email` and `enqueue_webhook` add one `OutboxMessage` row in the
caller's session (the caller commits it together with the effect ledger). The row's id *is*
the idempotency key, so a repeat with the same key returns the existing message.

Delivering: `OutboxDispatcher.deliver_pending` claims rows with a compare-and-set, sends them
(SMTP through `smtplib`, webhooks through the network guard) and marks each one sent, queued
again with a back-off, or failed. Every delivery carries the idempotency key (e-mail:
``Message-ID`` and ``Idempotency-Key`` headers; webhooks: ``Idempotency-Key``), so a receiver
can drop the duplicate sent when a dispatcher dies between sending and marking the row sent.

`sent_at` has one meaning per status, because the table has no separate columns for them:
while ``queued`` it is the earliest next attempt (None: now), while ``sending`` the time the
row was claimed (the lease start, also the claim's fencing token), once ``sent`` the delivery
time.
"""

from __future__ import annotations

__all__ = [
    "Clock",
    "OutboxDispatcher",
    "SmtpSettings",
    "SqlOutbox",
    "check_webhook_url",
    "enqueue_webhook",
    "signature_header",
    "start_dispatcher_thread",
    "verify_signature",
]

import email.policy
import hashlib
import hmac
import json
import logging
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import httpx
from sqlalchemy import ColumnElement, Connection, Engine, and_, or_, select, update
from sqlalchemy.orm import Session

from components.base import HttpPolicy
from components.errors import Conflict, UserError
from components.netguard import EgressRefused, guarded_client
from graphs.tables import OutboxMessage

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_STAMP = re.compile(r"[0-9]{1,12}")
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_MAX_ERROR = 500
_MAX_BACKOFF_S = 3600.0
# Headers stay on one line (RFC 5322 allows 998 characters), so a key is never folded.
_MAIL_POLICY = email.policy.SMTP.clone(max_line_length=998)


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- writing -------------------------------------------------------------------------------


def _checked_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise UserError(
            f"idempotency key {key!r} is not usable as an outbox message id; pass the effect "
            "ledger's key (1-64 letters, digits, '-' or '_')"
        )
    return key


def _refuse_header_breaks(**fields: str) -> None:
    for name, value in fields.items():
        if _HEADER_UNSAFE.search(value):
            raise UserError(
                f"e-mail {name} {value[:80]!r} contains a line break or control character; "
                "remove it (header injection is refused)"
            )


def _enqueue(session: Session, message: OutboxMessage) -> str:
    existing = session.get(OutboxMessage, message.message_id)
    if existing is None:
        session.add(message)
        session.flush()
        return message.message_id
    if (existing.workspace_id, existing.channel) != (message.workspace_id, message.channel):
        raise Conflict(
            f"idempotency key {message.message_id!r} already names another outbox message; "
            "derive a fresh key for this effect"
        )
    return existing.message_id


class SqlOutbox:
    """The `Outbox` of one run, writing into the caller's session (which the caller commits)."""

    def __init__(
        self,
        session: Session,
        *,
        workspace_id: str,
        run_id: str | None,
        clock: Clock = _utcnow,
    ) -> None:
        self._session = session
        self._workspace_id = workspace_id
        self._run_id = run_id
        self._clock = clock

    def enqueue_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> str:
        """Queue one e-mail; the same key again returns the first message's id."""
        _refuse_header_breaks(recipient=to, subject=subject)
        message = OutboxMessage(
            message_id=_checked_key(idempotency_key),
            workspace_id=self._workspace_id,
            run_id=self._run_id,
            channel="email",
            recipient=to,
            subject=subject,
            body=body,
            status="queued",
            attempts=0,
            created_at=self._clock(),
        )
        return _enqueue(self._session, message)


def check_webhook_url(url: str) -> None:
    """A `UserError` unless `url` is an http(s) URL without control characters."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise UserError(f"webhook URL {url[:200]!r} is not an http(s) URL; fix the address")
    if _HEADER_UNSAFE.search(url):
        raise UserError(f"webhook URL {url[:200]!r} contains control characters; remove them")


def enqueue_webhook(
    session: Session,
    *,
    workspace_id: str,
    run_id: str | None,
    url: str,
    payload: dict[str, Any],
    idempotency_key: str,
    clock: Clock = _utcnow,
) -> str:
    """Queue one signed JSON POST to `url`; the same key again returns the first message."""
    check_webhook_url(url)
    message = OutboxMessage(
        message_id=_checked_key(idempotency_key),
        workspace_id=workspace_id,
        run_id=run_id,
        channel="webhook",
        recipient=url,
        subject="",
        body=json.dumps(payload, sort_keys=True, separators=(",", ":")),
        status="queued",
        attempts=0,
        created_at=clock(),
    )
    return _enqueue(session, message)


# --- signatures ----------------------------------------------------------------------------


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def signature_header(signing_key: bytes, timestamp: str | int, body: bytes | str) -> str:
    """``sha256=<hex HMAC-SHA256(signing_key, f"{timestamp}.{body}")>``."""
    signed = f"{timestamp}.".encode() + _as_bytes(body)
    return "sha256=" + hmac.new(signing_key, signed, hashlib.sha256).hexdigest()


def verify_signature(
    signing_key: bytes,
    timestamp: str | int,
    body: bytes | str,
    header: str,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True if `header` signs exactly this timestamp and body and the timestamp is fresh."""
    stamp = str(timestamp)
    if not _STAMP.fullmatch(stamp):
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance_s:
        return False
    expected = signature_header(signing_key, stamp, body)
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "replace"))


# --- delivering ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where e-mail goes: an SMTP server (plain, or upgraded with STARTTLS) and the sender."""

    host: str
    port: int
    sender: str
    starttls: bool = False
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if "@" not in parseaddr(self.sender)[1]:
            raise UserError(
                f"SMTP sender {self.sender!r} is not an address; write it like "
                "'studio@example.com' or 'Agent Studio <studio@example.com>'"
            )


@dataclass(frozen=True, slots=True)
class _Claimed:
    message_id: str
    channel: str
    recipient: str
    subject: str
    body: str
    attempts: int
    claimed_at: datetime


class _Permanent(Exception):
    """A delivery failure that retrying cannot fix."""


def _error_text(exc: BaseException, recipient: str) -> str:
    text = f"{type(exc).__name__}: {exc}".replace(recipient, "<recipient>")
    return text[:_MAX_ERROR]


class OutboxDispatcher:
    """Delivers queued outbox rows; several dispatchers may run against one database."""

    def __init__(
        self,
        engine: Engine,
        *,
        smtp: SmtpSettings | None,
        http: HttpPolicy,
        signing_key: bytes,
        max_attempts: int = 5,
        lease_s: float = 300.0,
        retry_base_s: float = 30.0,
        clock: Clock = _utcnow,
    ) -> None:
        if len(signing_key) < 16:
            raise UserError("the webhook signing key must be at least 16 bytes; use a random key")
        if max_attempts < 1:
            raise UserError(f"max_attempts must be at least 1, not {max_attempts}")
        slowest = max(http.timeout_s, smtp.timeout_s if smtp else 0.0)
        if lease_s < 2 * slowest:
            raise UserError(
                f"lease_s={lease_s} is shorter than twice the delivery timeout ({slowest}s): "
                "another dispatcher could resend a message still being sent; raise lease_s"
            )
        self._engine = engine
        self._smtp = smtp
        self._http = http
        self._signing_key = signing_key
        self._max_attempts = max_attempts
        self._lease = timedelta(seconds=lease_s)
        self._retry_base_s = retry_base_s
        self._clock = clock
        self._channels = ("email", "webhook") if smtp is not None else ("webhook",)

    def deliver_pending(self, limit: int = 100) -> int:
        """Claim up to `limit` due rows and deliver them; returns how many were sent."""
        sent = 0
        for message in self._claim(limit):
            try:
                self._deliver(message)
            except Exception as exc:  # one bad message never stops the others
                self._record_failure(message, exc)
            else:
                sent += self._record_sent(message)
        return sent

    def _due(self, now: datetime) -> ColumnElement[bool]:
        row = OutboxMessage
        queued = and_(row.status == "queued", or_(row.sent_at.is_(None), row.sent_at <= now))
        stale = and_(
            row.status == "sending",
            or_(row.sent_at.is_(None), row.sent_at < now - self._lease),
        )
        return and_(row.channel.in_(self._channels), or_(queued, stale))

    def _claim(self, limit: int) -> list[_Claimed]:
        now = self._clock()
        due = self._due(now)
        with self._engine.connect() as conn:
            query = select(OutboxMessage.message_id).where(due)
            candidates = conn.scalars(query.order_by(OutboxMessage.created_at).limit(limit))
            candidate_ids = list(candidates)
        with self._engine.begin() as conn:
            claims = [self._claim_one(conn, message_id, due, now) for message_id in candidate_ids]
        return [claim for claim in claims if claim is not None]

    @staticmethod
    def _claim_one(
        conn: Connection, message_id: str, due: ColumnElement[bool], now: datetime
    ) -> _Claimed | None:
        """Compare-and-set one row to ``sending``; None if another dispatcher got it first."""
        row = OutboxMessage
        won = conn.execute(
            update(row)
            .where(row.message_id == message_id, due)
            .values(status="sending", sent_at=now, attempts=row.attempts + 1)
        )
        if won.rowcount != 1:
            return None
        columns = (row.channel, row.recipient, row.subject, row.body, row.attempts)
        found = conn.execute(select(*columns).where(row.message_id == message_id)).one()
        return _Claimed(
            message_id=message_id,
            channel=found.channel,
            recipient=found.recipient,
            subject=found.subject,
            body=found.body,
            attempts=found.attempts,
            claimed_at=now,
        )

    def _deliver(self, message: _Claimed) -> None:
        if message.attempts > self._max_attempts:
            raise _Permanent("an earlier attempt did not finish (the dispatcher stopped)")
        if message.channel == "email":
            self._send_email(message)
        else:
            self._post_webhook(message)

    def _send_email(self, message: _Claimed) -> None:
        assert self._smtp is not None
        settings = self._smtp
        sender = parseaddr(settings.sender)[1]
        mail = EmailMessage(policy=_MAIL_POLICY)
        mail["From"] = settings.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(self._clock())
        mail["Message-ID"] = f"<{message.message_id}@{sender.rpartition('@')[2]}>"
        mail["Idempotency-Key"] = message.message_id
        mail.set_content(message.body)
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as client:
                if settings.starttls:
                    client.starttls(context=ssl.create_default_context())
                client.send_message(mail, sender, [message.recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if all(code >= 500 for code in codes):
                raise _Permanent(f"the SMTP server refused the recipient ({codes})") from exc
            raise
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise _Permanent(f"the SMTP server refused the message: {exc}") from exc
            raise

    def _post_webhook(self, message: _Claimed) -> None:
        stamp = str(int(self._clock().timestamp()))
        body = message.body.encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.message_id,
            "X-Studio-Timestamp": stamp,
            "X-Studio-Signature": signature_header(self._signing_key, stamp, body),
        }
        try:
            with (
                guarded_client(self._http) as client,
                client.stream("POST", message.recipient, content=body, headers=headers) as answer,
            ):
                status = answer.status_code  # the answer's body is never read
        except EgressRefused as exc:  # refused by the network guard: retrying cannot help
            raise _Permanent(str(exc)) from exc
        if 200 <= status < 300:
            return
        if status in (408, 425, 429) or status >= 500:
            raise RuntimeError(f"the webhook answered HTTP {status}; will retry")
        raise _Permanent(f"the webhook answered HTTP {status}; the receiver refused it")

    def _record_sent(self, message: _Claimed) -> int:
        with self._engine.begin() as conn:
            marked = conn.execute(
                update(OutboxMessage)
                .where(*self._still_mine(message))
                .values(status="sent", sent_at=self._clock(), last_error=None)
            )
        if marked.rowcount != 1:
            logger.warning(
                "outbox message %s was sent after its lease expired; the receiver deduplicates "
                "it by its idempotency key",
                message.message_id,
            )
        return 1

    def _record_failure(self, message: _Claimed, exc: Exception) -> None:
        final = isinstance(exc, _Permanent) or message.attempts >= self._max_attempts
        delay = min(self._retry_base_s * 2 ** (message.attempts - 1), _MAX_BACKOFF_S)
        values: dict[str, Any] = {
            "status": "failed" if final else "queued",
            "sent_at": None if final else self._clock() + timedelta(seconds=delay),
            "last_error": _error_text(exc, message.recipient),
        }
        with self._engine.begin() as conn:
            conn.execute(update(OutboxMessage).where(*self._still_mine(message)).values(values))
        logger.warning(
            "outbox %s message %s attempt %d failed (%s): %s",
            message.channel,
            message.message_id,
            message.attempts,
            "giving up" if final else f"retrying in {delay:.0f}s",
            values["last_error"],
        )

    @staticmethod
    def _still_mine(message: _Claimed) -> tuple[ColumnElement[bool], ...]:
        return (
            OutboxMessage.message_id == message.message_id,
            OutboxMessage.status == "sending",
            OutboxMessage.sent_at == message.claimed_at,
        )


def start_dispatcher_thread(
    dispatcher: OutboxDispatcher, interval_s: float, stop_event: threading.Event
) -> threading.Thread:
    """Run `deliver_pending` every `interval_s` until `stop_event` is set; errors are logged."""

    def loop() -> None:
        while not stop_event.is_set():
            try:
                dispatcher.deliver_pending()
            except Exception:
                logger.exception("outbox delivery pass failed; next pass in %ss", interval_s)
            stop_event.wait(interval_s)

    thread = threading.Thread(target=loop, name="outbox-dispatcher", daemon=True)
    thread.start()
    return thread
