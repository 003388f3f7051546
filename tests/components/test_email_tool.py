"""The "email" tool: validated arguments, domain allow-list, one outbox row per effect key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from components.base import HttpPolicy, Tool, ToolContext
from components.errors import NotFound, ToolFailure
from components.registry import Registry
from components.tools import email as email_tool
from graphs.outbox import OutboxDispatcher, SmtpSettings, SqlOutbox
from graphs.tables import Base, OutboxMessage
from tests.loopback.smtp_receiver import SmtpReceiver

KEY = "0f" * 32


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'studio.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _no_secrets(name: str) -> str:
    raise NotFound(f"no secret {name!r}")


def make_tool(**config: Any) -> Tool:
    registry = Registry()
    email_tool.register(registry)
    spec = registry.tool_types["email"]
    return spec.build("notify_customer", spec.config_model(**config), registry)


def context(session: Session, *, key: str = KEY, workspace: str = "ws-1") -> ToolContext:
    return ToolContext(
        workspace_id=workspace,
        run_id="run-1",
        user_id="user-1",
        node_id="agent",
        tool_call_id="call-1",
        idempotency_key=key,
        secrets=_no_secrets,
        outbox=SqlOutbox(session, workspace_id=workspace, run_id="run-1"),
        http=HttpPolicy(),
    )


def call(
    engine: Engine, tool: Tool, args: dict[str, Any], *, key: str = KEY, workspace: str = "ws-1"
) -> Any:
    """Validate and invoke like the runtime does, committing the effect's transaction."""
    parsed = tool.args_model.model_validate(args)
    with Session(engine) as session, session.begin():
        return tool.invoke(parsed, context(session, key=key, workspace=workspace))


def rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.scalars(select(OutboxMessage)))


def test_invoke_queues_one_email_row_with_the_effect_key(engine: Engine) -> None:
    tool = make_tool(subject_prefix="[Shop] ")
    result = call(engine, tool, {"to": "ana@example.com", "subject": "Refund", "body": "Done.\n"})

    assert result == {"queued": KEY, "to": "ana@example.com"}
    [row] = rows(engine)
    assert (row.message_id, row.channel, row.status) == (KEY, "email", "queued")
    assert (row.workspace_id, row.run_id, row.attempts) == ("ws-1", "run-1", 0)
    assert (row.recipient, row.subject, row.body) == ("ana@example.com", "[Shop] Refund", "Done.\n")


def test_tool_is_a_confirm_tier_side_effect_with_trusted_output() -> None:
    tool = make_tool(allowed_domains=["example.com"])
    assert tool.name == "notify_customer"
    assert (tool.side_effect, tool.default_tier, tool.untrusted_output) == (True, "confirm", False)
    assert "example.com" in tool.description
    assert set(tool.json_schema()["properties"]) == {"to", "subject", "body"}


def test_same_idempotency_key_twice_gives_one_row(engine: Engine) -> None:
    tool = make_tool()
    args = {"to": "ana@example.com", "subject": "Hi", "body": "x"}
    first = call(engine, tool, args)
    second = call(engine, tool, args)
    third = call(engine, tool, args, key="1a" * 32)

    assert first["queued"] == second["queued"] == KEY
    assert third["queued"] == "1a" * 32
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 2


@pytest.mark.parametrize(
    "field, value",
    [
        ("to", "ana@example.com\r\nBcc: loot@evil.example"),
        ("to", "ana@example.com\nBcc: loot@evil.example"),
        ("to", "ana@example.com\r"),
        ("to", "ana@example.com\n"),
        ("to", "ana@example.com\x00"),
        ("subject", "Hello\r\nBcc: loot@evil.example"),
        ("subject", "Hello\nContent-Type: text/html"),
        ("subject", "Hello\rX-Injected: 1"),
        ("subject", "Hello\u2028Bcc: loot@evil.example"),
        ("subject", "Hello\x85Bcc: loot@evil.example"),
        ("subject", "tab\tinside"),
    ],
)
def test_header_injection_is_refused_before_anything_is_queued(
    engine: Engine, field: str, value: str
) -> None:
    args = {"to": "ana@example.com", "subject": "Hi", "body": "x", field: value}
    with pytest.raises(ValidationError, match="line breaks or control characters"):
        call(engine, make_tool(), args)
    assert rows(engine) == []


@pytest.mark.parametrize(
    "to",
    [
        "not-an-address",
        "ana@localhost",
        "ana@[127.0.0.1]",
        "ana@127.0.0.1",
        "Ana <ana@example.com>",
        "ana@example.com, bob@example.com",
        "ana@example.com;bob@example.com",
        "ana..b@example.com",
        ".ana@example.com",
        "ana@-example.com",
        "ana@example..com",
        "ana@@example.com",
        "ana@exämple.com",
        "a" * 65 + "@example.com",
        "a" * 59 + "@" + ".".join(["b" * 63] * 3) + ".com",  # 255 characters
        "",
    ],
)
def test_malformed_recipients_are_refused(engine: Engine, to: str) -> None:
    with pytest.raises(ValidationError):
        call(engine, make_tool(), {"to": to, "subject": "Hi", "body": "x"})
    assert rows(engine) == []


def test_invoke_revalidates_arguments_built_without_validation(engine: Engine) -> None:
    tool = make_tool()
    forged = tool.args_model.model_construct(
        to="a@example.com\r\nBcc: x@evil.example", subject="s", body="b"
    )
    with Session(engine) as session, pytest.raises(ValidationError):
        tool.invoke(forged, context(session))
    assert rows(engine) == []


def test_length_limits_are_enforced() -> None:
    args_model = make_tool().args_model
    longest = "a" * 58 + "@" + ".".join(["b" * 63] * 3) + ".com"
    assert len(longest) == 254
    assert args_model.model_validate({"to": longest, "subject": "", "body": ""}).to == longest
    ok = {"to": "ana@example.com", "subject": "s" * 200, "body": "b" * 100_000}
    args_model.model_validate(ok)
    for field, value in (("subject", "s" * 201), ("body", "b" * 100_001)):
        with pytest.raises(ValidationError):
            args_model.model_validate({**ok, field: value})
    with pytest.raises(ValidationError):
        args_model.model_validate({**ok, "cc": "loot@evil.example"})


@pytest.mark.parametrize(
    "to, allowed",
    [
        ("ana@example.com", True),
        ("ana@EXAMPLE.com", True),
        ("ana@support.example.com", True),
        ("ana@partner.org", True),
        ("ana@example.com.evil.net", False),
        ("ana@notexample.com", False),
        ("ana@example.org", False),
    ],
)
def test_allowed_domains_refuse_other_recipients(engine: Engine, to: str, allowed: bool) -> None:
    tool = make_tool(allowed_domains=["Example.com", "partner.org."])
    args = {"to": to, "subject": "Hi", "body": "x"}
    if allowed:
        assert call(engine, tool, args)["to"] == to
        assert len(rows(engine)) == 1
    else:
        with pytest.raises(ToolFailure, match=r"allowed domains are example\.com, partner\.org"):
            call(engine, tool, args)
        assert rows(engine) == []


@pytest.mark.parametrize(
    "config",
    [
        {"allowed_domains": ["not a domain"]},
        {"allowed_domains": ["@example.com"]},
        {"subject_prefix": "[x]\r\nBcc: loot@evil.example"},
        {"unknown": 1},
    ],
)
def test_bad_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        email_tool.EmailConfig(**config)


def test_queued_email_reaches_a_real_smtp_server_with_its_key(engine: Engine) -> None:
    tool = make_tool(subject_prefix="[Shop] ")
    call(engine, tool, {"to": "ana@example.com", "subject": "Refund", "body": "Refunded.\n"})
    with SmtpReceiver() as smtp:
        dispatcher = OutboxDispatcher(
            engine,
            smtp=SmtpSettings(smtp.host, smtp.port, "studio@shop.example"),
            http=HttpPolicy(),
            signing_key=b"k" * 32,
        )
        assert dispatcher.deliver_pending() == 1
        [mail] = smtp.mails
    assert mail.rcpt_tos == ("ana@example.com",)
    assert (mail.subject, mail.body) == ("[Shop] Refund", "Refunded.\n")
    assert mail.idempotency_key == KEY
    assert mail.message_id == f"<{KEY}@shop.example>"
