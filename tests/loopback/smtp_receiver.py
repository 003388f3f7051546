"""A loopback SMTP server (aiosmtpd) that records what it receives, for outbox tests.

    with SmtpReceiver() as smtp:
        ...deliver to 127.0.0.1:smtp.port...
        assert smtp.wait_for(1)
        assert smtp.distinct_message_ids() == {"<key@example.com>"}

`fail_next(n)` answers the next n messages with a temporary error (451),
`refuse_recipient(address)` refuses one address for good (550); `stop()` and `start()` take
the server down and bring it back on the same port.
"""

from __future__ import annotations

__all__ = ["ReceivedMail", "SmtpReceiver", "free_port"]

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted message: the SMTP envelope and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    def header(self, name: str) -> str | None:
        value = self.message[name]
        return None if value is None else str(value)

    @property
    def message_id(self) -> str | None:
        return self.header("Message-ID")

    @property
    def idempotency_key(self) -> str | None:
        return self.header("Idempotency-Key")

    @property
    def subject(self) -> str | None:
        return self.header("Subject")

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        if part is None:
            return ""
        text = str(part.get_content())
        return text.replace("\r\n", "\n")  # SMTP carries CRLF line ends


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self._receiver = receiver

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._receiver._refuses(address):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self._receiver._accept(envelope)


class SmtpReceiver:
    """Thread-safe recorder of delivered mail behind a real SMTP server on loopback."""

    def __init__(self, port: int | None = None) -> None:
        self.host = HOST
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._mails: list[ReceivedMail] = []
        self._failures_left = 0
        self._refused: set[str] = set()
        self._controller: Controller | None = None

    def __enter__(self) -> SmtpReceiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
            self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def fail_next(self, count: int) -> None:
        """Refuse the next `count` messages with '451 try again later'."""
        with self._lock:
            self._failures_left = count

    def refuse_recipient(self, address: str) -> None:
        """Answer RCPT TO for `address` with a permanent '550 no such user'."""
        with self._lock:
            self._refused.add(address.lower())

    def _refuses(self, address: str) -> bool:
        with self._lock:
            return address.lower() in self._refused

    def _accept(self, envelope: Any) -> str:
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                return "451 4.3.0 Temporary failure, try again later"
            parsed = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            self._mails.append(ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), parsed))
            self._arrived.notify_all()
        return "250 OK"

    @property
    def mails(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._mails)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least `count` messages arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._mails) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    return len(self._mails) >= count
        return True

    def message_id_counts(self) -> Counter[str | None]:
        return Counter(mail.message_id for mail in self.mails)

    def distinct_message_ids(self) -> set[str | None]:
        return set(self.message_id_counts())

    def distinct_idempotency_keys(self) -> set[str | None]:
        return {mail.idempotency_key for mail in self.mails}
