"""Tool type "http": one HTTP request to a fixed service, with arguments the model fills in.

The graph fixes the URL's scheme and host; ``{{ args.name }}`` placeholders may only appear
after them and are filled with URL-encoded argument values, so an argument can never change
the host, the path's structure or the query's structure. Arguments not used in the URL go
out as query parameters (GET) or a JSON body (other methods).

Every request carries the call's ``Idempotency-Key``, goes through the network guard
(public addresses only, unless the workspace allows the host), does not follow redirects,
and is cut off past the workspace's time and size limits. Secret headers are read from the
vault at call time; their values are redacted from the result and never appear in errors.
"""

from __future__ import annotations

__all__ = ["SPEC", "ArgField", "HttpToolConfig", "build", "register"]

import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from components.base import (
    ComponentsView,
    HttpPolicy,
    SecretRef,
    StrictModel,
    TemplateStr,
    Tool,
    ToolContext,
    ToolTypeSpec,
)
from components.errors import NotFound, ToolFailure
from components.netguard import (
    REDACTED,
    EgressRefused,
    check_url,
    guarded_client,
    parse_url,
    wire_logs_redacted,
)
from components.registry import Registry
from components.templates import render

log = logging.getLogger(__name__)

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
ArgType = Literal["string", "number", "integer", "boolean"]

MAX_ARG_CHARS = 10_000
EXCERPT_CHARS = 200

_PY_TYPES: dict[str, Any] = {
    "string": Annotated[str, Field(max_length=MAX_ARG_CHARS)],
    "number": float,
    "integer": int,
    "boolean": bool,
}
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_ARG_REF = re.compile(r"args\.([A-Za-z][A-Za-z0-9_]*)")
_FIXED_ORIGIN = re.compile(r"https?://[^/?#{}\s@\\]+[/?]", re.IGNORECASE)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE_VALUE = re.compile(r"[^\x20-\x7e\t]")
_STUDIO_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "idempotency-key"}
)
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_DEFAULT_HEADERS = {
    "Accept": "application/json, text/plain;q=0.9, */*;q=0.5",
    "Accept-Encoding": "identity",
    "User-Agent": "agent-studio",
}


class ArgField(StrictModel):
    """One argument of the tool, filled in by the model."""

    name: str = Field(
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",
        description="Argument name (letters, digits, underscores), e.g. order_id.",
    )
    type: ArgType = Field(default="string", description="The argument's JSON type.")
    description: str = Field(
        default="", max_length=500, description="What the argument means; shown to the model."
    )
    required: bool = Field(default=True, description="Whether the model must give it.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith("model_") or hasattr(BaseModel, name):
            raise ValueError(f"argument name {name!r} is reserved; pick another name")
        return name


class HttpToolConfig(StrictModel):
    """Settings of one declared HTTP tool."""

    method: Method = Field(
        default="GET",
        description="HTTP method. GET only reads (free tier); other methods change things "
        "and need a confirmation by default.",
    )
    url: TemplateStr = Field(
        description="Request URL, e.g. https://api.example.com/orders/{{ args.order_id }}. "
        "Placeholders may only follow the host; their values are URL-encoded."
    )
    description: str = Field(
        default="", max_length=1_000, description="What the tool does; shown to the model."
    )
    params: list[ArgField] = Field(
        default_factory=list, max_length=50, description="The arguments the model fills in."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Fixed request headers (never credentials)."
    )
    secret_headers: dict[str, SecretRef] = Field(
        default_factory=dict,
        description="Header name → secret name, e.g. X-Api-Key → shop_api_key. The value is "
        "read from the workspace's secrets at call time.",
    )
    send_args_as: Literal["json", "query"] | None = Field(
        default=None,
        description="Where arguments not used in the URL go: the query string or a JSON "
        "body. Empty: query for GET, JSON for the other methods.",
    )

    @property
    def args_placement(self) -> Literal["json", "query"]:
        if self.send_args_as is not None:
            return self.send_args_as
        return "query" if self.method == "GET" else "json"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        params = {p.name: p for p in self.params}
        if len(params) != len(self.params):
            raise ValueError("params has two arguments with the same name; rename one")
        _check_url_template(self.url, params)
        _check_headers(self.headers, self.secret_headers)
        return self


def _url_arg_names(url: str) -> list[str]:
    names = []
    for match in _PLACEHOLDER.finditer(url):
        ref = _ARG_REF.fullmatch(match.group(1))
        if ref is None:
            raise ValueError(
                f"url placeholder {match.group(0)!r} must look like {{{{ args.name }}}}"
            )
        names.append(ref.group(1))
    return names


def _check_url_template(url: str, params: dict[str, ArgField]) -> None:
    first = _PLACEHOLDER.search(url)
    if first is not None and not _FIXED_ORIGIN.match(url[: first.start()]):
        raise ValueError(
            "url must start with a fixed http(s)://host/ before any placeholder, e.g. "
            "https://api.example.com/orders/{{ args.order_id }}"
        )
    filled = _PLACEHOLDER.sub("x", url)
    if "{{" in filled or "}}" in filled:
        raise ValueError("url has an unbalanced '{{' or '}}'; write {{ args.name }}")
    for name in _url_arg_names(url):
        if name not in params:
            raise ValueError(f"url uses args.{name}, which is not in params; declare it")
        if not params[name].required:
            raise ValueError(f"url uses optional argument {name!r}; make it required")
    try:
        parse_url(filled)
    except EgressRefused as exc:
        raise ValueError(f"url: {exc}") from None


def _check_headers(headers: dict[str, str], secret_headers: dict[str, str]) -> None:
    seen: set[str] = set()
    for name in [*headers, *secret_headers]:
        lower = name.lower()
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if lower in _STUDIO_HEADERS:
            raise ValueError(f"header {name!r} is set by the studio; remove it")
        if lower in seen:
            raise ValueError(f"header {name!r} is given twice; keep one")
        seen.add(lower)
    for name, value in headers.items():
        if name.lower() in _CREDENTIAL_HEADERS:
            raise ValueError(f"header {name!r} carries credentials; move it to secret_headers")
        if _UNSAFE_VALUE.search(value):
            raise ValueError(f"header {name!r} must be printable ASCII without line breaks")


def _args_model(tool_name: str, params: list[ArgField]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for param in params:
        py_type = _PY_TYPES[param.type]
        text = param.description or None
        if param.required:
            fields[param.name] = (py_type, Field(description=text))
        else:
            fields[param.name] = (py_type | None, Field(default=None, description=text))
    config = ConfigDict(extra="forbid", strict=True)
    return create_model(f"{tool_name}_args", __config__=config, **fields)


@dataclass(frozen=True, slots=True)
class _Call:
    """One prepared request (secrets kept only to send and to redact)."""

    tool: str
    method: str
    url: httpx.URL
    headers: httpx.Headers = field(repr=False)
    body: dict[str, Any] | None = field(repr=False)
    policy: HttpPolicy
    secrets: tuple[str, ...] = field(repr=False)

    @property
    def where(self) -> str:
        path = self.url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
        return f"{self.method} {self.url.scheme}://{self.url.netloc.decode()}{path}"

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def fail(self, message: str) -> ToolFailure:
        return ToolFailure(self.redact(f"tool {self.tool!r}: {self.where} {message}"))


def _url_value(tool: str, name: str, value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if not text:
        raise ToolFailure(f"tool {tool!r}: argument {name!r} is empty, but the url needs it")
    encoded = quote(text, safe="")
    return encoded.replace(".", "%2E") if set(encoded) == {"."} else encoded


def _target(
    config: HttpToolConfig, tool: str, values: dict[str, Any]
) -> tuple[httpx.URL, dict[str, Any] | None]:
    """The request URL and JSON body: URL arguments encoded, the rest placed as configured."""
    used = set(_url_arg_names(config.url))
    filled = {name: _url_value(tool, name, values[name]) for name in used}
    url = parse_url(render(config.url, {"args": filled}))
    rest = {name: value for name, value in values.items() if name not in used}
    if config.args_placement == "json":
        return url, rest
    return (url.copy_merge_params(rest) if rest else url), None


def _secret(ctx: ToolContext, tool: str, header: str, secret_name: str) -> str:
    try:
        value = ctx.secrets(secret_name)
    except (NotFound, KeyError):
        raise ToolFailure(
            f"tool {tool!r}: secret {secret_name!r} for header {header!r} is not set; "
            "add it to the workspace's secrets"
        ) from None
    if not value or _UNSAFE_VALUE.search(value):
        raise ToolFailure(
            f"tool {tool!r}: secret {secret_name!r} for header {header!r} is empty or has "
            "characters a header cannot carry (line breaks, control or non-ASCII); store "
            "it again without them"
        )
    return value


def _prepare(config: HttpToolConfig, tool: str, args: BaseModel, ctx: ToolContext) -> _Call:
    url, body = _target(config, tool, args.model_dump(exclude_none=True))
    headers = httpx.Headers(_DEFAULT_HEADERS)
    headers.update(config.headers)
    secrets = []
    for header, secret_name in config.secret_headers.items():
        headers[header] = value = _secret(ctx, tool, header, secret_name)
        secrets.append(value)
    headers["Idempotency-Key"] = ctx.idempotency_key
    return _Call(tool, config.method, url, headers, body, ctx.http, tuple(secrets))


@contextmanager
def _translated(call: _Call) -> Iterator[None]:
    """Turn transport errors into `ToolFailure`s that name the tool and hold no secret."""
    try:
        yield
    except EgressRefused as exc:
        raise EgressRefused(call.redact(f"tool {call.tool!r}: {exc}")) from None
    except httpx.TimeoutException:
        raise call.fail(
            f"timed out after {call.policy.timeout_s:g}s; try again later or ask a "
            "workspace admin for a longer timeout"
        ) from None
    except httpx.HTTPError as exc:
        raise call.fail(
            f"failed ({type(exc).__name__}: {exc}); check the url and that the service is up"
        ) from None


def _too_big(call: _Call) -> ToolFailure:
    return call.fail(
        f"answered with more than {call.policy.max_response_bytes} bytes, the workspace's "
        "limit; ask for less data (filters, paging) or raise the limit"
    )


def _read_limited(call: _Call, response: httpx.Response, deadline: float) -> bytes:
    limit = call.policy.max_response_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_big(call)
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > limit:
            raise _too_big(call)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the response took longer than the time limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(raw: bytes, response: httpx.Response) -> Any:
    try:
        text = raw.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    if "json" in response.headers.get("content-type", "").lower():
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _redact_value(call: _Call, value: Any) -> Any:
    if isinstance(value, str):
        return call.redact(value)
    if isinstance(value, list):
        return [_redact_value(call, item) for item in value]
    if isinstance(value, dict):
        return {call.redact(str(k)): _redact_value(call, v) for k, v in value.items()}
    return value


def _refusal(call: _Call, response: httpx.Response, raw: bytes) -> ToolFailure:
    status = f"answered {response.status_code} {response.reason_phrase}".rstrip()
    if response.is_redirect:
        location = response.headers.get("location", "")[:EXCERPT_CHARS]
        return call.fail(
            f"{status} (redirect to {location!r}); redirects are not followed: point the "
            "tool's url at the final address"
        )
    excerpt = call.redact(raw[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace"))
    excerpt = excerpt[:EXCERPT_CHARS] + ("…" if len(excerpt) > EXCERPT_CHARS else "")
    return call.fail(f"{status}: {excerpt!r}")


def _send(call: _Call) -> dict[str, Any]:
    deadline = time.monotonic() + call.policy.timeout_s
    with _translated(call), wire_logs_redacted(call.secrets):
        check_url(call.url, call.policy)
        with (
            guarded_client(call.policy) as client,
            client.stream(call.method, call.url, headers=call.headers, json=call.body) as reply,
        ):
            raw = _read_limited(call, reply, deadline)
    log.info(
        "tool %r: %s answered %d (%d bytes)", call.tool, call.where, reply.status_code, len(raw)
    )
    if not reply.is_success:
        raise _refusal(call, reply, raw)
    return {"status": reply.status_code, "body": _redact_value(call, _decode(raw, reply))}


def build(tool_name: str, config: HttpToolConfig, view: ComponentsView) -> Tool:
    """An HTTP tool bound to one declaration's settings."""

    def invoke(args: BaseModel, ctx: ToolContext) -> dict[str, Any]:
        return _send(_prepare(config, tool_name, args, ctx))

    reads_only = config.method == "GET"
    return Tool(
        name=tool_name,
        description=config.description or f"{config.method} {config.url}",
        args_model=_args_model(tool_name, config.params),
        invoke=invoke,
        side_effect=not reads_only,
        default_tier="free" if reads_only else "confirm",
        untrusted_output=True,
    )


SPEC = ToolTypeSpec(
    type_name="http",
    title="HTTP request",
    description="Calls one HTTP endpoint; public addresses only unless the workspace "
    "allows the host. Every call carries its idempotency key.",
    config_model=HttpToolConfig,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_tool_type(SPEC)
