"""The "http" tool against a loopback receiver: guarded, idempotent, bounded, secret-safe."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from components.base import HttpPolicy, Tool, ToolContext
from components.errors import NotFound, ToolFailure
from components.netguard import EgressRefused
from components.registry import Registry
from components.tools import http as http_tool
from tests.loopback.http_receiver import HttpReceiver

SECRET = "sk_live_7Hq2-very-secret-value"
KEY = "effect-key-0001"


class _NoOutbox:
    def enqueue_email(self, *, to: str, subject: str, body: str, idempotency_key: str) -> str:
        raise AssertionError("the http tool never writes e-mail")


def _secrets(name: str) -> str:
    if name == "shop_key":
        return SECRET
    raise NotFound(f"no secret {name!r}")


def context(
    receiver: HttpReceiver | None = None, *, key: str = KEY, secrets: Any = _secrets, **policy: Any
) -> ToolContext:
    if receiver is not None:
        policy.setdefault("allow_hosts", frozenset({receiver.host_port}))
    return ToolContext(
        workspace_id="ws-1",
        run_id="run-1",
        user_id="user-1",
        node_id="agent",
        tool_call_id="call-1",
        idempotency_key=key,
        secrets=secrets,
        outbox=_NoOutbox(),
        http=HttpPolicy(**policy),
    )


def make_tool(name: str = "shop", **config: Any) -> Tool:
    registry = Registry()
    http_tool.register(registry)
    spec = registry.tool_types["http"]
    return spec.build(name, spec.config_model(**config), registry)


def call(tool: Tool, args: dict[str, Any], ctx: ToolContext) -> Any:
    """Validate and invoke like the runtime does."""
    return tool.invoke(tool.args_model.model_validate(args), ctx)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as running:
        yield running


ORDER_PARAMS = [{"name": "order_id", "description": "The order's id."}]


def order_tool(receiver: HttpReceiver, **config: Any) -> Tool:
    config.setdefault("url", receiver.url + "/orders/{{ args.order_id }}")
    config.setdefault("params", ORDER_PARAMS)
    return make_tool(**config)


# -- the tool's declaration -------------------------------------------------------------------


def test_registers_as_the_http_tool_type() -> None:
    registry = Registry()
    http_tool.register(registry)
    assert registry.tool_types["http"] is http_tool.SPEC
    assert registry.tool_types["http"].config_model is http_tool.HttpToolConfig


def test_get_is_a_free_read_and_other_methods_need_confirmation() -> None:
    read = make_tool(url="https://api.example.com/orders")
    assert (read.side_effect, read.default_tier, read.untrusted_output) == (False, "free", True)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        write = make_tool(method=method, url="https://api.example.com/orders")
        assert (write.side_effect, write.default_tier) == (True, "confirm")
        assert write.untrusted_output is True


def test_args_default_to_query_for_get_and_json_otherwise() -> None:
    config = http_tool.HttpToolConfig
    assert config(url="https://a.example/x").args_placement == "query"
    assert config(method="POST", url="https://a.example/x").args_placement == "json"
    assert config(
        method="POST", url="https://a.example/x", send_args_as="query"
    ).args_placement == ("query")


def test_the_argument_schema_comes_from_params() -> None:
    tool = make_tool(
        url="https://api.example.com/orders/{{ args.order_id }}",
        params=[
            {"name": "order_id", "description": "The order's id."},
            {"name": "limit", "type": "integer", "required": False},
        ],
        description="Look up one order.",
    )
    schema = tool.json_schema()
    assert schema["required"] == ["order_id"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["order_id"]["description"] == "The order's id."
    assert tool.description == "Look up one order."


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"url": "https://{{ args.host }}/x"}, "fixed http(s)://host/"),
        ({"url": "https://api.example.com{{ args.host }}"}, "fixed http(s)://host/"),
        ({"url": "https://api.{{ args.host }}.com/x"}, "fixed http(s)://host/"),
        ({"url": "{{ args.host }}"}, "fixed http(s)://host/"),
        ({"url": "https://a.example/{{ args.other }}"}, "not in params"),
        ({"url": "https://a.example/{{ state.secret }}"}, "must look like"),
        ({"url": "https://a.example/{{ args.order_id | upper }}"}, "must look like"),
        ({"url": "https://a.example/{{ args.order_id }"}, "unbalanced"),
        ({"url": "ftp://a.example/{{ args.order_id }}"}, "fixed http(s)://host/"),
        ({"url": "ftp://a.example/x"}, "scheme 'ftp'"),
        ({"url": "https://user:pw@a.example/x"}, "user name or password"),
        ({"params": [{"name": "order_id"}, {"name": "order_id"}]}, "same name"),
        ({"params": [{"name": "json"}]}, "reserved"),
        ({"params": [{"name": "model_config"}]}, "reserved"),
        ({"params": [{"name": "1st"}]}, "pattern"),
        ({"params": [{"name": "order_id", "required": False}]}, "make it required"),
        ({"headers": {"Idempotency-Key": "fixed"}}, "set by the studio"),
        ({"headers": {"Host": "evil.example"}}, "set by the studio"),
        ({"headers": {"Authorization": "Bearer abc"}}, "move it to secret_headers"),
        ({"headers": {"X-Note": "a\r\nX-Injected: 1"}}, "without line breaks"),
        ({"headers": {"Bad Name": "v"}}, "not a valid HTTP header name"),
        ({"headers": {"X-Key": "v"}, "secret_headers": {"x-key": "shop_key"}}, "given twice"),
        ({"method": "TRACE"}, "method"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_bad_declarations_are_rejected_with_a_reason(config: dict[str, Any], problem: str) -> None:
    full = {"url": "https://a.example/orders/{{ args.order_id }}", "params": ORDER_PARAMS}
    with pytest.raises(ValidationError, match=re.escape(problem)):
        http_tool.HttpToolConfig(**{**full, **config})


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"order_id": "A1", "extra": "x"},
        {"order_id": 17},
        {"order_id": "A1", "limit": "5"},
        {"order_id": "A1", "limit": 5.5},
        {"order_id": "A1", "limit": True},
        {"order_id": "A1", "express": "true"},
        {"order_id": "A1", "express": 1},
        {"order_id": "A1", "amount": "9.99"},
        {"order_id": "x" * 10_001},
    ],
)
def test_unknown_missing_and_wrong_typed_arguments_are_rejected(args: dict[str, Any]) -> None:
    tool = make_tool(
        url="https://a.example/orders/{{ args.order_id }}",
        params=[
            {"name": "order_id"},
            {"name": "limit", "type": "integer", "required": False},
            {"name": "express", "type": "boolean", "required": False},
            {"name": "amount", "type": "number", "required": False},
        ],
    )
    with pytest.raises(ValidationError):
        tool.args_model.model_validate(args)
    ok = tool.args_model.model_validate({"order_id": "A1", "limit": 5, "amount": 2})
    assert ok.model_dump() == {"order_id": "A1", "limit": 5, "express": None, "amount": 2.0}


# -- requests and results ---------------------------------------------------------------------


def test_get_sends_remaining_args_as_query_and_returns_parsed_json(receiver: HttpReceiver) -> None:
    receiver.route("/orders/A-17", body={"order": "A-17", "total": 12.5})
    tool = order_tool(
        receiver,
        url=receiver.url + "/orders/{{ args.order_id }}?fields=all",
        params=[
            *ORDER_PARAMS,
            {"name": "express", "type": "boolean", "required": False},
            {"name": "note", "required": False},
        ],
    )
    result = call(tool, {"order_id": "A-17", "express": True}, context(receiver))
    assert result == {"status": 200, "body": {"order": "A-17", "total": 12.5}}
    (seen,) = receiver.requests
    assert (seen.method, seen.path) == ("GET", "/orders/A-17")
    assert seen.query == {"fields": ["all"], "express": ["true"]}
    assert seen.body == b""


def test_post_sends_remaining_args_as_json(receiver: HttpReceiver) -> None:
    receiver.route("/orders/A-17/refunds", status=201, body={"refund": "r_1"})
    tool = order_tool(
        receiver,
        method="POST",
        url=receiver.url + "/orders/{{ args.order_id }}/refunds",
        params=[*ORDER_PARAMS, {"name": "amount", "type": "number"}],
    )
    result = call(tool, {"order_id": "A-17", "amount": 9.99}, context(receiver))
    assert result == {"status": 201, "body": {"refund": "r_1"}}
    (seen,) = receiver.requests
    assert seen.json == {"amount": 9.99}
    assert seen.headers["content-type"] == "application/json"
    assert seen.query == {}


def test_post_with_query_placement_sends_no_body(receiver: HttpReceiver) -> None:
    receiver.route("/search", body=[])
    tool = make_tool(
        method="POST",
        url=receiver.url + "/search",
        params=[{"name": "q"}],
        send_args_as="query",
    )
    call(tool, {"q": "red shoes"}, context(receiver))
    (seen,) = receiver.requests
    assert seen.query == {"q": ["red shoes"]}
    assert seen.body == b""


def test_text_answers_come_back_as_text(receiver: HttpReceiver) -> None:
    receiver.route("/orders/A1", body=b"plain words", content_type="text/plain; charset=utf-8")
    assert call(order_tool(receiver), {"order_id": "A1"}, context(receiver)) == {
        "status": 200,
        "body": "plain words",
    }


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("../admin", "/orders/..%2Fadmin/items"),
        ("..", "/orders/%2E%2E/items"),
        (".", "/orders/%2E/items"),
        ("a/b", "/orders/a%2Fb/items"),
        ("1?admin=true", "/orders/1%3Fadmin%3Dtrue/items"),
        ("1#frag", "/orders/1%23frag/items"),
        ("%2e%2e", "/orders/%252e%252e/items"),
        ("ü 1", "/orders/%C3%BC%201/items"),
        ("a\r\nHost: evil", "/orders/a%0D%0AHost%3A%20evil/items"),
    ],
)
def test_url_arguments_cannot_change_the_path_or_query_structure(
    receiver: HttpReceiver, value: str, path: str
) -> None:
    receiver.route(path, body={"ok": True})
    receiver.route("/admin", body={"admin": True})
    tool = order_tool(receiver, url=receiver.url + "/orders/{{ args.order_id }}/items")
    assert call(tool, {"order_id": value}, context(receiver))["body"] == {"ok": True}
    (seen,) = receiver.requests
    assert seen.path == path
    assert seen.query == {}


def test_query_arguments_in_the_template_stay_one_value(receiver: HttpReceiver) -> None:
    receiver.route("/search", body=[])
    tool = make_tool(url=receiver.url + "/search?q={{ args.q }}&page=1", params=[{"name": "q"}])
    call(tool, {"q": "shoes&page=999&admin=1#x"}, context(receiver))
    (seen,) = receiver.requests
    assert seen.query == {"q": ["shoes&page=999&admin=1#x"], "page": ["1"]}


def test_an_empty_url_argument_is_refused(receiver: HttpReceiver) -> None:
    with pytest.raises(ToolFailure, match="'order_id' is empty"):
        call(order_tool(receiver), {"order_id": ""}, context(receiver))
    assert receiver.requests == []


# -- idempotency ----------------------------------------------------------------------------


def test_every_request_carries_the_idempotency_key(receiver: HttpReceiver) -> None:
    receiver.route("/orders/A1", body={})
    call(order_tool(receiver), {"order_id": "A1"}, context(receiver, key="k-get"))
    call(order_tool(receiver, method="DELETE"), {"order_id": "A1"}, context(receiver, key="k-del"))
    assert [r.headers["idempotency-key"] for r in receiver.requests] == ["k-get", "k-del"]


def test_a_repeated_key_is_one_effect_with_the_same_answer(receiver: HttpReceiver) -> None:
    receiver.route("/refunds", status=201, body={"refund": "r_1"})
    tool = make_tool(
        method="POST", url=receiver.url + "/refunds", params=[{"name": "amount", "type": "number"}]
    )
    first = call(tool, {"amount": 5}, context(receiver, key="refund-1"))
    again = call(tool, {"amount": 5}, context(receiver, key="refund-1"))
    other = call(tool, {"amount": 5}, context(receiver, key="refund-2"))
    assert first == again == other == {"status": 201, "body": {"refund": "r_1"}}
    assert [e.idempotency_key for e in receiver.effects] == ["refund-1", "refund-2"]
    assert len(receiver.requests) == 3
    assert receiver.requests[1].headers["idempotency-key"] == "refund-1"


def test_receiver_applies_one_effect_per_key_under_concurrency(receiver: HttpReceiver) -> None:
    receiver.route("/refunds", status=201, body={"refund": "r_1"})
    statuses: list[int] = []
    start = threading.Barrier(24)

    def post(client: httpx.Client, key: str) -> None:
        start.wait()
        answer = client.post(receiver.url_for("/refunds"), headers={"Idempotency-Key": key})
        statuses.append(answer.status_code)

    with httpx.Client(trust_env=False, limits=httpx.Limits(max_connections=24)) as client:
        threads = [threading.Thread(target=post, args=(client, f"k{i % 3}")) for i in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [201] * 24
    assert sorted(e.idempotency_key or "" for e in receiver.effects) == ["k0", "k1", "k2"]
    assert len(receiver.requests) == 24


def test_receiver_replays_are_marked_and_reads_are_not_effects(receiver: HttpReceiver) -> None:
    receiver.route("/refunds", status=201, body={"refund": "r_1"})
    url = receiver.url_for("/refunds")
    with httpx.Client(trust_env=False) as client:
        first = client.post(url, headers={"Idempotency-Key": "k"})
        replay = client.post(url, headers={"Idempotency-Key": "k"})
        client.get(url, headers={"Idempotency-Key": "k2"})
        client.post(receiver.url_for("/missing"), headers={"Idempotency-Key": "k3"})
    assert "idempotent-replayed" not in first.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert [(e.method, e.path) for e in receiver.effects] == [("POST", "/refunds")]


# -- secrets --------------------------------------------------------------------------------


def test_secret_header_reaches_the_receiver_and_nowhere_else(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.route(
        "/orders/A1",
        body={"echo": f"key={SECRET}", SECRET: [SECRET]},
        headers=(("X-Echo-Key", SECRET),),
    )
    receiver.route("/orders/bad", status=401, body={"error": f"bad key {SECRET}"})
    tool = order_tool(receiver, secret_headers={"X-Api-Key": "shop_key"})
    result = call(tool, {"order_id": "A1"}, context(receiver))
    with pytest.raises(ToolFailure) as failed:
        call(tool, {"order_id": "bad"}, context(receiver))
    assert [r.headers["x-api-key"] for r in receiver.requests] == [SECRET, SECRET]
    assert SECRET not in repr(result)
    assert result["body"]["echo"] == "key=[redacted]"
    assert "401" in str(failed.value)
    assert SECRET not in str(failed.value)
    assert caplog.records, "expected the request to be logged"
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert SECRET not in caplog.text


def test_secret_never_appears_in_timeout_or_refusal_messages(
    receiver: HttpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.route("/orders/slow", delay_s=1.0)
    tool = order_tool(receiver, secret_headers={"X-Api-Key": "shop_key"})
    failures = []
    for ctx, order in [(context(receiver, timeout_s=0.2), "slow"), (context(), "A1")]:
        with pytest.raises(ToolFailure) as failed:
            call(tool, {"order_id": order}, ctx)
        failures.append(str(failed.value))
    assert "timed out" in failures[0]
    assert "may not reach" in failures[1]
    assert all(SECRET not in failure for failure in failures)
    assert SECRET not in caplog.text


def test_a_missing_secret_is_named_and_nothing_is_sent(receiver: HttpReceiver) -> None:
    tool = order_tool(receiver, secret_headers={"X-Api-Key": "gone_key"})
    with pytest.raises(ToolFailure, match="secret 'gone_key' for header 'X-Api-Key' is not set"):
        call(tool, {"order_id": "A1"}, context(receiver))
    assert receiver.requests == []


def test_a_secret_that_cannot_be_a_header_is_refused_without_showing_it(
    receiver: HttpReceiver,
) -> None:
    tool = order_tool(receiver, secret_headers={"X-Api-Key": "shop_key"})
    bad = "line1\r\nX-Injected: yes"
    with pytest.raises(ToolFailure, match="cannot carry") as failed:
        call(tool, {"order_id": "A1"}, context(receiver, secrets=lambda name: bad))
    assert "line1" not in str(failed.value)
    assert receiver.requests == []


# -- limits and failures ------------------------------------------------------------------


def test_loopback_is_refused_unless_the_workspace_allows_it(receiver: HttpReceiver) -> None:
    tool = order_tool(receiver)
    with pytest.raises(EgressRefused, match=r"tool 'shop'.*allowed hosts"):
        call(tool, {"order_id": "A1"}, context())
    assert receiver.requests == []


@pytest.mark.parametrize("declare_length", [True, False])
def test_responses_past_the_size_limit_are_cut_off(
    receiver: HttpReceiver, declare_length: bool
) -> None:
    receiver.route("/orders/big", huge_body_bytes=5_000_000, declare_length=declare_length)
    receiver.route("/orders/fits", huge_body_bytes=9_000, content_type="text/plain")
    tool = order_tool(receiver)
    started = time.monotonic()
    with pytest.raises(ToolFailure, match="more than 10000 bytes"):
        call(tool, {"order_id": "big"}, context(receiver, max_response_bytes=10_000))
    assert time.monotonic() - started < 2.0
    fits = call(tool, {"order_id": "fits"}, context(receiver, max_response_bytes=10_000))
    assert fits["body"] == "x" * 9_000


def test_a_slow_service_times_out_and_a_retry_does_not_repeat_the_effect(
    receiver: HttpReceiver,
) -> None:
    receiver.route("/refunds", status=201, delay_s=1.5, body={"refund": "r_1"})
    tool = make_tool(method="POST", url=receiver.url + "/refunds")
    started = time.monotonic()
    with pytest.raises(ToolFailure, match=r"timed out after 0\.3s"):
        call(tool, {}, context(receiver, timeout_s=0.3))
    assert time.monotonic() - started < 1.4
    assert len(receiver.effects) == 1  # the effect happened although the caller gave up
    receiver.route("/refunds", status=201, body={"refund": "r_2"})
    assert call(tool, {}, context(receiver))["body"] == {"refund": "r_1"}
    assert len(receiver.effects) == 1


@pytest.mark.parametrize("status", [400, 404, 409, 500, 503])
def test_non_2xx_answers_fail_naming_the_status(receiver: HttpReceiver, status: int) -> None:
    receiver.route("/orders/A1", status=status, body={"error": "E" * 5_000})
    with pytest.raises(ToolFailure) as failed:
        call(order_tool(receiver), {"order_id": "A1"}, context(receiver))
    message = str(failed.value)
    assert f"answered {status}" in message
    assert "tool 'shop'" in message
    assert "EEEE" in message
    assert len(message) < 600


def test_redirects_are_not_followed(receiver: HttpReceiver) -> None:
    with HttpReceiver() as target:
        target.route("/orders/A1", body={"moved": True})
        receiver.route("/orders/A1", status=307, redirect_to=target.url_for("/orders/A1"))
        ctx = context(receiver, allow_hosts=frozenset({receiver.host_port, target.host_port}))
        with pytest.raises(ToolFailure, match=r"answered 307.*not followed"):
            call(order_tool(receiver, method="POST"), {"order_id": "A1"}, ctx)
        assert target.requests == []
    assert receiver.effects == []


def test_an_unreachable_service_fails_with_advice() -> None:
    with HttpReceiver() as gone:
        host_port, url = gone.host_port, gone.url
    tool = make_tool(url=url + "/orders")
    with pytest.raises(ToolFailure, match="check the url and that the service is up"):
        call(tool, {}, context(allow_hosts=frozenset({host_port}), timeout_s=2))
