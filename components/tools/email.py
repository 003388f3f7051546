"""Tool type "email": queues one e-mail in the run's outbox (delivered later, exactly once).

The tool never talks to a mail server. It validates the recipient and the header fields
(no CR/LF anywhere, so no header injection), checks the workspace's domain allow-list and
writes the message to the outbox in the caller's effect transaction, keyed by the call's
idempotency key.
"""

from __future__ import annotations

__all__ = ["SPEC", "EmailArgs", "EmailConfig", "build", "is_email_address", "register"]

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from components.base import ComponentsView, StrictModel, Tool, ToolContext, ToolTypeSpec
from components.errors import ToolFailure
from components.registry import Registry

MAX_ADDRESS_LEN = 254
MAX_SUBJECT_LEN = 200
MAX_BODY_LEN = 100_000

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}"
_ADDRESS = re.compile(rf"(?P<local>{_LOCAL})@(?P<domain>{_DOMAIN})")
_DOMAIN_ONLY = re.compile(_DOMAIN)
# Line breaks of every kind, and any other control character, are refused in header fields.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def is_email_address(value: str) -> bool:
    """A conservative check: dot-atom local part (≤ 64), a dotted ASCII domain, ≤ 254 chars."""
    found = _ADDRESS.fullmatch(value)
    return found is not None and len(value) <= MAX_ADDRESS_LEN and len(found["local"]) <= 64


def _header_safe(value: str, what: str) -> str:
    if _HEADER_UNSAFE.search(value):
        raise ValueError(f"{what} must not contain line breaks or control characters")
    return value


class EmailConfig(StrictModel):
    """Settings of one declared e-mail tool."""

    allowed_domains: list[str] = Field(
        default_factory=list,
        description=(
            "Recipient domains this tool may write to (subdomains included), for example "
            "'example.com'. Empty: any domain."
        ),
    )
    subject_prefix: str = Field(
        default="",
        max_length=50,
        description="Text put in front of every subject, for example '[Support] '.",
    )

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, domains: list[str]) -> list[str]:
        cleaned = [d.strip().lower().rstrip(".") for d in domains]
        for domain in cleaned:
            if not _DOMAIN_ONLY.fullmatch(domain):
                raise ValueError(f"{domain!r} is not a domain name like 'example.com'")
        return cleaned

    @field_validator("subject_prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        return _header_safe(prefix, "subject_prefix")


class EmailArgs(BaseModel):
    """Arguments the model fills in."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(
        max_length=MAX_ADDRESS_LEN, description="One recipient address, e.g. ana@example.com."
    )
    subject: str = Field(max_length=MAX_SUBJECT_LEN, description="A one-line subject.")
    body: str = Field(max_length=MAX_BODY_LEN, description="The plain-text message body.")

    @field_validator("to")
    @classmethod
    def _to(cls, to: str) -> str:
        _header_safe(to, "to")
        if not is_email_address(to):
            raise ValueError(f"{to!r} is not a single e-mail address like ana@example.com")
        return to

    @field_validator("subject")
    @classmethod
    def _subject(cls, subject: str) -> str:
        return _header_safe(subject, "subject")


def _domain_allowed(address: str, allowed: list[str]) -> bool:
    domain = address.rsplit("@", 1)[1].lower()
    return not allowed or any(domain == d or domain.endswith("." + d) for d in allowed)


def build(tool_name: str, config: EmailConfig, view: ComponentsView) -> Tool:
    """An e-mail tool bound to one declaration's settings."""

    def invoke(raw: BaseModel, ctx: ToolContext) -> dict[str, Any]:
        args = EmailArgs.model_validate(raw.model_dump())  # checked again, however it was built
        if not _domain_allowed(args.to, config.allowed_domains):
            raise ToolFailure(
                f"tool {tool_name!r} may not write to {args.to!r}: allowed domains are "
                f"{', '.join(config.allowed_domains)}; pick a recipient in one of them"
            )
        message_id = ctx.outbox.enqueue_email(
            to=args.to,
            subject=config.subject_prefix + args.subject,
            body=args.body,
            idempotency_key=ctx.idempotency_key,
        )
        return {"queued": message_id, "to": args.to}

    domains = ", ".join(config.allowed_domains) or "any domain"
    return Tool(
        name=tool_name,
        description=(
            "Send one plain-text e-mail to a single recipient (allowed: "
            f"{domains}). The message is queued and delivered once; the result gives "
            "the queued message id."
        ),
        args_model=EmailArgs,
        invoke=invoke,
        side_effect=True,
        default_tier="confirm",
        untrusted_output=False,
    )


SPEC = ToolTypeSpec(
    type_name="email",
    title="E-mail",
    description="Queues a plain-text e-mail in the outbox; delivered exactly once by SMTP.",
    config_model=EmailConfig,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_tool_type(SPEC)
