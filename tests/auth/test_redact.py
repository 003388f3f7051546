"""The redaction layer: strings, nested payloads, messages, exceptions and log records."""

from __future__ import annotations

import io
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, quote_plus

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from auth.redact import (
    MIN_SECRET_LENGTH,
    REDACTED,
    RedactingFilter,
    Redactor,
    install_log_redaction,
    redact_payload,
)


def canary() -> str:
    return f"canary-{secrets.token_urlsafe(24)}"


@pytest.fixture
def value() -> str:
    return canary()


@pytest.fixture
def redactor(value: str) -> Redactor:
    return Redactor([value])


# -- strings -------------------------------------------------------------------------------


def test_replaces_every_occurrence(redactor: Redactor, value: str) -> None:
    text = f"{value} and again:{value}!"
    assert redactor.redact(text) == f"{REDACTED} and again:{REDACTED}!"
    assert redactor.contains_secret(text)
    assert not redactor.contains_secret(redactor.redact(text))


def test_untouched_text_is_returned_as_is(redactor: Redactor) -> None:
    text = "nothing to hide here " * 10
    assert redactor.redact(text) is text


def test_an_empty_redactor_changes_nothing_and_is_still_truthy() -> None:
    empty = Redactor()
    payload = {"a": ["b"]}
    assert empty.redact_value(payload) is payload
    assert empty and empty.size == 0


@pytest.mark.parametrize("short", ["", "a", "admin", "12345"])
def test_values_shorter_than_the_minimum_are_ignored(short: str) -> None:
    redactor = Redactor([short])
    assert redactor.size == 0
    assert redactor.redact(f"user {short} logged in") == f"user {short} logged in"
    assert len("123456") == MIN_SECRET_LENGTH
    assert Redactor(["123456"]).redact("pin 123456") == f"pin {REDACTED}"


def test_longest_value_wins_when_one_is_a_prefix_of_another() -> None:
    short, long = "sk-live-abcdef", "sk-live-abcdef-0123456789"
    redactor = Redactor([short, long])
    assert redactor.redact(f"{long} {short}") == f"{REDACTED} {REDACTED}"
    assert "0123456789" not in redactor.redact(long)


def test_values_sharing_long_prefixes_are_all_found() -> None:
    values = [f"tenant-0000-{i:04d}-key" for i in range(300)]
    redactor = Redactor(values)
    text = " | ".join(values)
    assert redactor.redact(text) == " | ".join([REDACTED] * 300)


def test_regex_metacharacters_are_literal() -> None:
    weird = r"a.b*c+(d)[e]{f}^$|\g"
    redactor = Redactor([weird])
    assert redactor.redact(f"x{weird}y") == f"x{REDACTED}y"
    assert redactor.redact("aXb*c+(d)[e]{f}^$|\\g") == "aXb*c+(d)[e]{f}^$|\\g"


@pytest.mark.parametrize(
    "secret", ['pa"ss\\word-1', "päss-wörd-€€", "key with spaces&=+/?", "tab\there\nnl"]
)
def test_encoded_spellings_are_caught(secret: str) -> None:
    redactor = Redactor([secret])
    for shown in (
        json.dumps({"token": secret}),
        json.dumps({"token": secret}, ensure_ascii=False),
        f"GET /hook?key={quote(secret, safe='')}",
        f"POST body=key={quote_plus(secret, safe='')}",
    ):
        assert REDACTED in redactor.redact(shown), shown
    assert secret.encode() not in redactor.redact_bytes(b"x" + secret.encode() + b"y")


def test_forget_stops_redacting(redactor: Redactor, value: str) -> None:
    redactor.forget(value)
    assert redactor.redact(value) == value and redactor.size == 0


def test_registering_while_redacting_from_many_threads() -> None:
    values = [canary() for _ in range(60)]
    redactor = Redactor()
    errors: list[str] = []

    def writer() -> None:
        for item in values:
            redactor.register(item)

    def reader() -> None:
        for item in values:
            out = redactor.redact(f"x {item} y")
            if out not in (f"x {item} y", f"x {REDACTED} y"):
                errors.append(out)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(redactor.redact(item) == REDACTED for item in values)


# -- nested payloads (events, checkpoints, exports) ------------------------------------------


class Pair(NamedTuple):
    left: str
    right: str


@dataclass(frozen=True)
class Record:
    note: str
    count: int


def test_nested_event_dict_is_redacted_without_mutating_it(redactor: Redactor, value: str) -> None:
    event = {
        "type": "tool.finished",
        "run_id": "r-1",
        "output": {"headers": [("Authorization", f"Bearer {value}")], "n": 3},
        "seen": {value, "other"},
        value: "a secret used as a key",
        "raw": value.encode(),
        "pair": Pair(value, "ok"),
        "record": Record(f"note {value}", 2),
        "nothing": None,
    }
    before = repr(event)
    out = redact_payload(redactor, event)
    assert repr(event) == before  # the original is not changed
    assert value not in repr(out) and value not in json.dumps(out, default=repr)
    assert out["output"]["headers"][0] == ("Authorization", f"Bearer {REDACTED}")
    assert out["output"]["n"] == 3 and out["nothing"] is None
    assert out[REDACTED] == "a secret used as a key"
    assert out["raw"] == REDACTED.encode()
    assert isinstance(out["pair"], Pair) and out["pair"].left == REDACTED
    assert out["record"] == Record(f"note {REDACTED}", 2)
    assert out["seen"] == {REDACTED, "other"}


def test_unchanged_branches_are_shared_not_copied(redactor: Redactor, value: str) -> None:
    clean = {"messages": ["hello"] * 3}
    payload = {"clean": clean, "dirty": [value]}
    out = redact_payload(redactor, payload)
    assert out["clean"] is clean and out["dirty"] == [REDACTED]


def test_checkpoint_with_messages_serializes_without_the_value(
    redactor: Redactor, value: str
) -> None:
    checkpoint: dict[str, Any] = {
        "v": 4,
        "id": "1f0-abc",
        "channel_values": {
            "messages": [
                HumanMessage(content=f"use the key {value} please"),
                AIMessage(
                    content="",
                    tool_calls=[
                        {"name": "http", "args": {"token": value}, "id": "call_1"},
                    ],
                ),
                ToolMessage(content=f"echo: {value}", tool_call_id="call_1"),
            ],
            "result": {"status": "ok", "echo": value},
        },
        "channel_versions": {"messages": 3},
        "versions_seen": {},
    }
    writes = [("messages", AIMessage(content=f"final {value}"))]
    serde = JsonPlusSerializer()
    safe = redact_payload(redactor, checkpoint)
    safe_writes = redact_payload(redactor, writes)
    for obj in (safe, safe_writes):
        _type, blob = serde.dumps_typed(obj)
        assert value.encode() not in blob
    messages = safe["channel_values"]["messages"]
    assert isinstance(messages[1], AIMessage)
    assert messages[1].tool_calls[0]["args"] == {"token": REDACTED}
    assert messages[0].content == f"use the key {REDACTED} please"
    assert value in checkpoint["channel_values"]["messages"][0].content  # original kept
    assert isinstance(safe_writes[0], tuple) and safe_writes[0][1].content == f"final {REDACTED}"


# -- exceptions ----------------------------------------------------------------------------


def test_exception_message_is_redacted(redactor: Redactor, value: str) -> None:
    exc = ValueError(f"401 for key {value}", {"sent": value})
    exc.add_note(f"while calling with {value}")
    safe = redactor.redact_exception(exc)
    assert safe is exc
    assert value not in str(safe) and value not in repr(safe.args)
    assert safe.__notes__ == [f"while calling with {REDACTED}"]
    assert redactor.describe_exception(ValueError(value)) == f"ValueError: {REDACTED}"


class RendersFromAttributes(Exception):
    def __init__(self, url: str) -> None:
        super().__init__("request failed")
        self.url = url

    def __str__(self) -> str:
        return f"request to {self.url} failed"


def test_exception_rendering_its_own_message_is_replaced(redactor: Redactor, value: str) -> None:
    try:
        raise RendersFromAttributes(f"https://api.example/?key={value}")
    except RendersFromAttributes as exc:
        safe = redactor.redact_exception(exc)
    assert isinstance(safe, RuntimeError) and safe.__cause__ is None
    assert value not in str(safe) and "RendersFromAttributes" in str(safe)
    assert safe.__traceback__ is None


# -- logging -------------------------------------------------------------------------------


@pytest.fixture
def stream_handler() -> Iterator[tuple[logging.Handler, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s extra=%(payload)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield handler, out
    root.removeHandler(handler)
    root.setLevel(old_level)


def log_everything(value: str) -> None:
    logger = logging.getLogger("graphs.execution.child")  # propagates to the root handler
    logger.info("token=%s", value, extra={"payload": {"header": f"Bearer {value}"}})
    logger.info(f"f-string {value}", extra={"payload": "-"})
    try:
        raise RuntimeError(f"provider rejected {value}")
    except RuntimeError:
        logger.exception("call failed", extra={"payload": [value]})


def test_filter_on_a_handler_redacts_message_args_extras_and_tracebacks(
    redactor: Redactor, value: str, stream_handler: tuple[logging.Handler, io.StringIO]
) -> None:
    handler, out = stream_handler
    handler.addFilter(RedactingFilter(redactor))
    log_everything(value)
    text = out.getvalue()
    assert value not in text
    assert "token=[redacted]" in text and "f-string [redacted]" in text
    assert f"Bearer {REDACTED}" in text
    assert "Traceback" in text and f"provider rejected {REDACTED}" in text


def test_a_filter_on_the_root_logger_alone_would_miss_child_records(
    redactor: Redactor, value: str, stream_handler: tuple[logging.Handler, io.StringIO]
) -> None:
    """Why `install_log_redaction` does not just call root.addFilter (documented pitfall)."""
    _handler, out = stream_handler
    root_filter = RedactingFilter(redactor)
    logging.getLogger().addFilter(root_filter)
    try:
        logging.getLogger("some.child").info("token=%s", value, extra={"payload": "-"})
    finally:
        logging.getLogger().removeFilter(root_filter)
    assert value in out.getvalue()


def test_installed_redaction_covers_every_logger_and_later_handlers(
    value: str, stream_handler: tuple[logging.Handler, io.StringIO]
) -> None:
    redactor = Redactor()
    uninstall = install_log_redaction(redactor)
    late_out = io.StringIO()
    late = logging.StreamHandler(late_out)  # added after installation (an exporter, say)
    logging.getLogger().addHandler(late)
    try:
        redactor.register(value)  # registered when the vault resolves it
        log_everything(value)
    finally:
        logging.getLogger().removeHandler(late)
        uninstall()
    _handler, out = stream_handler
    assert value not in out.getvalue() and value not in late_out.getvalue()
    assert out.getvalue().count(REDACTED) >= 4
    assert "Traceback" in late_out.getvalue()
    logging.getLogger("after").info("token=%s", value, extra={"payload": "-"})
    assert value in out.getvalue()  # uninstalled: records pass unchanged again


def test_caplog_records_are_clean_with_redaction_installed(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    redactor = Redactor([value])
    uninstall = install_log_redaction(redactor)
    try:
        with caplog.at_level(logging.INFO):
            log_everything(value)
    finally:
        uninstall()
    assert value not in caplog.text
    for record in caplog.records:
        assert value not in record.getMessage()
        assert value not in repr(record.args) and value not in str(record.exc_text)
