"""The OpenAI-compatible provider against a loopback server speaking the real HTTP API."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.exceptions import ModelError
from langchain_core.messages import AIMessageChunk, HumanMessage
from pydantic import ValidationError

from components.errors import NotFound
from components.providers import openai_compat
from components.providers.openai_compat import (
    IncompleteStreamError,
    OpenAIConfig,
    StudioChatOpenAI,
    classify_failure,
)
from components.registry import Registry
from tests.loopback.openai_server import (
    MALFORMED_ARGUMENTS,
    Answer,
    CutStream,
    HttpError,
    OpenAILoopback,
    Stall,
    ToolCall,
    openai_server,
)

SECRET = "sk-loopback-7f3a9c1e5b2d4680"


@pytest.fixture
def server() -> Iterator[OpenAILoopback]:
    with openai_server() as running:
        yield running


def secrets(name: str) -> str:
    if name == "openai-key":
        return SECRET
    raise NotFound(f"no secret named {name!r}")


def make_model(server: OpenAILoopback, **overrides: Any) -> StudioChatOpenAI:
    registry = Registry()
    openai_compat.register(registry)
    spec = registry.providers["openai"]
    raw = {
        "model": "loop-mini",
        "base_url": server.base_url,
        "api_key_secret": "openai-key",
        "timeout_s": 5,
        "max_retries": 2,
        **overrides,
    }
    built = spec.build(spec.config_model.model_validate(raw), secrets)
    assert isinstance(built, StudioChatOpenAI)
    return built


def collect(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


# --- answers -------------------------------------------------------------------------------


def test_streamed_text_tokens_arrive_in_order(server: OpenAILoopback) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    server.enqueue(Answer(text=text))
    chunks = list(make_model(server).stream([HumanMessage("tell me")]))
    pieces = [c.content for c in chunks if c.content]
    assert pieces == [
        "The",
        " quick",
        " brown",
        " fox",
        " jumps",
        " over",
        " the",
        " lazy",
        " dog.",
    ]
    [request] = server.requests
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["model"] == "loop-mini"
    assert request.body["messages"] == [{"role": "user", "content": "tell me"}]


def test_streamed_tool_calls_reassemble(server: OpenAILoopback) -> None:
    calls = (
        ToolCall("get_weather", {"city": "Zürich", "days": 3}, id="call_w"),
        ToolCall("lookup", {"query": "opening hours", "filters": {"open": True}}, id="call_l"),
    )
    server.enqueue(Answer(text="Checking.", tool_calls=calls, arg_fragment_chars=3))
    message = collect(list(make_model(server).stream("weather?")))
    assert message.content == "Checking."
    assert [(c["id"], c["name"], c["args"]) for c in message.tool_calls] == [
        ("call_w", "get_weather", {"city": "Zürich", "days": 3}),
        ("call_l", "lookup", {"query": "opening hours", "filters": {"open": True}}),
    ]
    assert message.invalid_tool_calls == []
    assert message.response_metadata["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("streaming", [False, True])
def test_usage_is_what_the_server_reported(server: OpenAILoopback, streaming: bool) -> None:
    server.enqueue(Answer(text="ok", prompt_tokens=123, completion_tokens=45, cached_tokens=100))
    m = make_model(server)
    message = collect(list(m.stream("hi"))) if streaming else m.invoke("hi")
    usage = message.usage_metadata
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (123, 45, 168)
    assert usage.get("input_token_details", {}).get("cache_read") == 100


def test_stream_carries_usage_on_one_chunk_only(server: OpenAILoopback) -> None:
    server.enqueue(Answer(text="a few words here", prompt_tokens=9, completion_tokens=4))
    chunks = list(make_model(server).stream("hi"))
    with_usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1 and with_usage[0]["total_tokens"] == 13


@pytest.mark.parametrize("streaming", [False, True])
def test_malformed_tool_call_is_invalid_not_callable(
    server: OpenAILoopback, streaming: bool
) -> None:
    server.enqueue(Answer(tool_calls=(ToolCall("refund", MALFORMED_ARGUMENTS, id="call_bad"),)))
    m = make_model(server)
    message = collect(list(m.stream("refund"))) if streaming else m.invoke("refund")
    assert message.tool_calls == []
    [bad] = message.invalid_tool_calls
    assert (bad["id"], bad["name"], bad["args"]) == ("call_bad", "refund", MALFORMED_ARGUMENTS)


def test_settings_reach_the_request(server: OpenAILoopback) -> None:
    server.enqueue(Answer(text="ok"))
    make_model(server, temperature=0.25, max_tokens=64).invoke("hi")
    body = server.requests[0].body
    assert body["temperature"] == 0.25
    assert body["max_completion_tokens"] == 64
    assert "stream" not in body or body["stream"] is False


# --- secrets -------------------------------------------------------------------------------


def test_api_key_reaches_the_header_and_no_message_or_log(
    server: OpenAILoopback, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"Incorrect API key provided: {SECRET}. Find your key at the dashboard."
    server.enqueue(Answer(text="ok"), HttpError(401, message=echo, error_type="invalid_request"))
    m = make_model(server)
    assert m.invoke("hi").content == "ok"
    with pytest.raises(openai.AuthenticationError) as failure:
        m.invoke("again")
    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {SECRET}"] * 2
    message = classify_failure(failure.value)
    assert message == "provider returned 401 Unauthorized (invalid_request) after 1 attempt"
    assert SECRET not in message and SECRET[:12] not in message
    assert SECRET not in caplog.text
    assert SECRET not in repr(m)


def test_without_a_secret_a_placeholder_key_is_sent(server: OpenAILoopback) -> None:
    server.enqueue(Answer(text="local"))
    registry = Registry()
    openai_compat.register(registry)
    spec = registry.providers["openai"]
    config = OpenAIConfig(model="llama3.1", base_url=server.base_url)

    def no_secrets(name: str) -> str:
        raise AssertionError(f"secret {name!r} must not be read")

    assert spec.build(config, no_secrets).invoke("hi").content == "local"
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


# --- failures ------------------------------------------------------------------------------


def test_rate_limit_honours_retry_after_then_succeeds(server: OpenAILoopback) -> None:
    server.enqueue(
        HttpError(429, retry_after="1", message="slow down", error_type="rate_limit_exceeded"),
        Answer(text="finally"),
    )
    started = time.monotonic()
    answer = make_model(server).invoke("hi")
    elapsed = time.monotonic() - started
    assert answer.content == "finally"
    assert len(server.requests) == 2
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]
    gap = server.requests[1].received_at - server.requests[0].received_at
    assert 0.95 <= gap < 3, "the retry must wait for Retry-After, not the 0.5 s default"
    assert elapsed < 5


@pytest.mark.parametrize("max_retries", [0, 2])
def test_persistent_5xx_fails_after_max_retries_plus_one(
    server: OpenAILoopback, max_retries: int
) -> None:
    attempts = max_retries + 1
    server.enqueue(*[HttpError(503, retry_after="0.01", message="overloaded")] * attempts)
    server.enqueue(Answer(text="never reached"))
    with pytest.raises(openai.InternalServerError) as failure:
        make_model(server, max_retries=max_retries).invoke("hi")
    assert len(server.requests) == attempts
    assert server.pending == 1
    plural = "s" if attempts > 1 else ""
    assert classify_failure(failure.value) == (
        f"provider returned 503 Service Unavailable (server_error) after {attempts} attempt{plural}"
    )
    assert isinstance(failure.value, ModelError)


def test_timeout_fails_after_bounded_attempts(server: OpenAILoopback) -> None:
    server.enqueue(Stall(5), Stall(5))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as failure:
        make_model(server, timeout_s=0.3, max_retries=1).invoke("hi")
    elapsed = time.monotonic() - started
    assert len(server.requests) == 2
    assert 0.6 <= elapsed < 3, "two 0.3 s attempts plus at most one SDK backoff"
    assert (
        classify_failure(failure.value) == "provider did not answer within 0.3 s after 2 attempts"
    )


def test_stream_cut_mid_answer_raises_instead_of_returning_a_partial_answer(
    server: OpenAILoopback,
) -> None:
    server.enqueue(CutStream(Answer(text="This answer is long and gets cut"), after_events=4))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError) as failure:
        for chunk in make_model(server).stream("hi"):
            received.append(str(chunk.content))
    assert "".join(received) == "This answer is", "the client saw only the part that arrived"
    assert len(server.requests) == 1, "a broken stream is not silently replayed"
    message = classify_failure(failure.value)
    assert message.startswith("the connection to 127.0.0.1:") and "broke off" in message


def test_stream_ending_cleanly_without_finish_reason_is_refused(server: OpenAILoopback) -> None:
    # The official SDK alone treats a clean end of body as the end of the answer:
    server.enqueue(CutStream(Answer(text="Half an answer and"), after_events=3, clean=True))
    client = openai.OpenAI(base_url=server.base_url, api_key=SECRET, max_retries=0)
    raw = client.chat.completions.create(
        model="loop-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in raw if c.choices) == "Half an"

    # ... the provider's model refuses it, sync and async:
    server.enqueue(CutStream(Answer(text="Half an answer and"), after_events=3, clean=True))
    m = make_model(server)
    with pytest.raises(IncompleteStreamError, match="'loop-mini' ended without a finish reason"):
        list(m.stream("hi"))

    async def consume() -> None:
        async for _ in m.astream("hi"):
            pass

    server.enqueue(CutStream(Answer(text="Half an answer and"), after_events=3, clean=True))
    with pytest.raises(IncompleteStreamError) as failure:
        asyncio.run(consume())
    assert "cut short" in classify_failure(failure.value)


def test_unknown_errors_are_classified_without_their_text() -> None:
    leak = ValueError(f"request body was {{'api_key': '{SECRET}'}}")
    assert classify_failure(leak) == "provider call failed (ValueError)"


# --- the official SDK against the loopback server ------------------------------------------


def test_official_sdk_accumulates_the_streamed_answer(server: OpenAILoopback) -> None:
    call = ToolCall("search", {"q": "loopback servers", "limit": 5}, id="call_s")
    server.enqueue(
        Answer(text="Searching now.", tool_calls=(call,), prompt_tokens=21, completion_tokens=8),
        Answer(text="plain", prompt_tokens=3, completion_tokens=1),
    )
    client = openai.OpenAI(base_url=server.base_url, api_key=SECRET, max_retries=0, timeout=5)
    with client.chat.completions.stream(
        model="loop-mini",
        messages=[{"role": "user", "content": "search"}],
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == "Searching now."
    [tool_call] = final.choices[0].message.tool_calls or []
    assert tool_call.id == "call_s" and tool_call.type == "function"
    assert tool_call.function.name == "search"
    assert json.loads(tool_call.function.arguments) == {"q": "loopback servers", "limit": 5}
    assert final.usage is not None and final.usage.total_tokens == 29

    plain = client.chat.completions.create(
        model="loop-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert plain.choices[0].message.content == "plain"
    assert plain.usage is not None and plain.usage.prompt_tokens == 3


# --- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"max_retries": 6}, "max_retries"),
        ({"max_retries": -1}, "max_retries"),
        ({"base_url": "127.0.0.1:11434/v1"}, "http:// or https://"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"api_key": "sk-inline"}, "api_key"),
    ],
)
def test_config_rejects_bad_settings(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        OpenAIConfig.model_validate({"model": "m", **overrides})


def test_config_bounds_reach_the_client(server: OpenAILoopback) -> None:
    m = make_model(server, max_retries=4, timeout_s=7.5)
    assert m.root_client.max_retries == 4
    assert m.request_timeout == 7.5
    assert m.stream_usage is True
    for name, field in OpenAIConfig.model_fields.items():
        assert field.description, f"OpenAIConfig.{name} has no help text"
