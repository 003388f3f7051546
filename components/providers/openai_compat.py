"""OpenAI-compatible chat endpoints (OpenAI, vLLM, Ollama, LM Studio): provider 'openai'.

Builds LangChain's `ChatOpenAI` with ``stream_usage=True``, so token usage also arrives
when streaming. Retries are the openai SDK's: on connection errors, timeouts, 408, 409,
429 (honouring Retry-After up to two minutes) and 5xx, with exponential backoff (0.5 s
doubling, at most 8 s), at most ``max_retries`` times — ``max_retries + 1`` attempts.

What a caller catches when the last attempt fails:

- ``openai.APIStatusError`` for an HTTP error (``RateLimitError`` for 429,
  ``InternalServerError`` for 5xx…; LangChain re-raises most as subclasses that are also
  ``langchain_core.exceptions.ModelError``),
- ``openai.APITimeoutError`` when no answer came within ``timeout_s``,
- ``openai.APIConnectionError`` when the server cannot be reached or a stream breaks off,
- `IncompleteStreamError` (a ``ModelConnectionError``) when a stream ends without a finish
  reason, so a partial answer is never taken for a whole one.

`classify_failure` turns any of these into a short message that is safe to show and log:
no secrets, no request or response bodies.
"""

from __future__ import annotations

__all__ = [
    "PLACEHOLDER_API_KEY",
    "SPEC",
    "IncompleteStreamError",
    "OpenAIConfig",
    "StudioChatOpenAI",
    "build",
    "classify_failure",
    "register",
]

import functools
import http
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
from langchain_core.exceptions import ModelConnectionError
from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI
from pydantic import Field, SecretStr, field_validator

from components.base import ProviderSpec, SecretRef, SecretResolver, StrictModel
from components.errors import StudioError
from components.metering import http_event_hooks
from components.registry import Registry

logger = logging.getLogger(__name__)

PLACEHOLDER_API_KEY = "not-needed"
"""Sent when no secret is configured: local servers (Ollama, vLLM) ignore the key."""

_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class OpenAIConfig(StrictModel):
    """Settings of an OpenAI-compatible endpoint (provider 'openai')."""

    model: str = Field(
        min_length=1, max_length=200, description="Model name, e.g. 'gpt-4o-mini' or 'llama3.1'."
    )
    base_url: str = Field(
        default="https://api.openai.com/v1",
        description="API base URL ending in /v1, e.g. http://127.0.0.1:11434/v1 for Ollama.",
    )
    api_key_secret: SecretRef | None = Field(
        default=None,
        description="Name of the secret holding the API key; leave empty for local servers "
        "that need no key.",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Sampling temperature; empty for the default."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, description="Most tokens the model may write per answer."
    )
    timeout_s: float = Field(
        default=60,
        gt=0,
        le=600,
        description="Seconds to wait, per attempt, for the server to connect or to send the "
        "next part of its answer.",
    )
    max_retries: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Retries after a rate limit (429), server error (5xx), timeout or "
        "connection error.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("base_url must start with http:// or https://, e.g. https://host/v1")
        return value.rstrip("/")


class IncompleteStreamError(ModelConnectionError):
    """A streamed answer ended without a finish reason: the answer may be cut short."""


def _finished(chunk: ChatGenerationChunk) -> bool:
    info = chunk.generation_info or {}
    meta = chunk.message.response_metadata
    return bool(
        info.get("finish_reason")
        or meta.get("finish_reason")
        or meta.get("status") in ("completed", "incomplete")
    )


def _incomplete(model: str) -> IncompleteStreamError:
    return IncompleteStreamError(
        f"the stream of model {model!r} ended without a finish reason, so the answer may be "
        "cut short; check the server or proxy between the studio and the model, then retry"
    )


class StudioChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` that refuses a stream ending without a finish reason."""

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        finished = False
        for chunk in super()._stream(*args, **kwargs):
            finished = finished or _finished(chunk)
            yield chunk
        if not finished:
            raise _incomplete(self.model_name)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        finished = False
        async for chunk in super()._astream(*args, **kwargs):
            finished = finished or _finished(chunk)
            yield chunk
        if not finished:
            raise _incomplete(self.model_name)


@functools.cache
def _http_client() -> Any:
    """One pooled HTTP client for every model, logging each attempt (retries included) to
    the probe of the call in progress, so that every attempt is recorded."""
    return openai.DefaultHttpxClient(event_hooks=http_event_hooks())


def build(config: OpenAIConfig, secrets: SecretResolver) -> StudioChatOpenAI:
    """The chat model for `config`; the API key is read from the secret now, never logged."""
    key = secrets(config.api_key_secret) if config.api_key_secret else PLACEHOLDER_API_KEY
    logger.debug("building OpenAI-compatible model %r at %s", config.model, config.base_url)
    return StudioChatOpenAI(
        model=config.model,
        base_url=config.base_url,
        api_key=SecretStr(key),
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        timeout=config.timeout_s,
        max_retries=config.max_retries,
        stream_usage=True,
        http_client=_http_client(),
    )


def _attempts(request: Any) -> str:
    """' after N attempts', from the retry count the SDK puts on each request."""
    headers = getattr(request, "headers", None)
    count = headers.get("x-stainless-retry-count") if headers is not None else None
    if count is None or not str(count).isdigit():
        return ""
    attempts = int(count) + 1
    return f" after {attempts} attempt{'s' if attempts != 1 else ''}"


def _status_text(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _error_code(body: object) -> str:
    """The provider's error code or type, only if it is a short plain identifier."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if not isinstance(body, dict):
        return ""
    for key in ("code", "type"):
        value = body.get(key)
        if isinstance(value, str) and _SAFE_CODE.match(value):
            return f" ({value})"
    return ""


def _host(request: Any) -> str:
    url = getattr(request, "url", None)
    host = getattr(url, "host", None)
    if not host:
        return "the provider"
    port = getattr(url, "port", None)
    return f"{host}:{port}" if port else str(host)


def _timeout_s(request: Any) -> str:
    timeout = (getattr(request, "extensions", None) or {}).get("timeout")
    read = timeout.get("read") if isinstance(timeout, dict) else None
    return f" within {read:g} s" if isinstance(read, int | float) else ""


def _broke_off(exc: BaseException) -> bool:
    """Whether a connection error happened mid-body (a stream cut), not while connecting."""
    cause: BaseException | None = exc
    while cause is not None:
        if type(cause).__name__ in ("RemoteProtocolError", "ReadError"):
            return True
        cause = cause.__cause__
    return False


def classify_failure(exc: BaseException) -> str:
    """A short message about a failed model call, safe to show: no secrets, no bodies."""
    if isinstance(exc, StudioError | IncompleteStreamError):
        return str(exc)
    if isinstance(exc, openai.APIStatusError):
        status = _status_text(exc.status_code)
        code = _error_code(exc.body)
        return f"provider returned {status}{code}{_attempts(exc.response.request)}"
    if isinstance(exc, openai.APITimeoutError):
        request = getattr(exc, "request", None)
        return f"provider did not answer{_timeout_s(request)}{_attempts(request)}"
    if isinstance(exc, openai.APIConnectionError):
        request = getattr(exc, "request", None)
        if _broke_off(exc):
            where = _host(request)
            return f"the connection to {where} broke off mid-answer{_attempts(request)}"
        return f"could not reach {_host(request)}{_attempts(request)}"
    if isinstance(exc, openai.APIError):
        return f"provider reported an error ({type(exc).__name__})"
    return f"provider call failed ({type(exc).__name__})"


SPEC = ProviderSpec(
    name="openai",
    title="OpenAI-compatible endpoint",
    config_model=OpenAIConfig,
    build=build,
)


def register(registry: Registry) -> None:
    registry.add_provider(SPEC)
