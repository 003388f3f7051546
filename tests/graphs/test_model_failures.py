"""Model provider faults through the whole runtime (P0): the real `openai` provider code path
against the loopback OpenAI server, plus the scripted model's scripted failure.

Every run goes through `graphs.headless.run_document`: graph version, run row, worker,
LangGraph with checkpoints, events. Retries are bounded (``max_retries + 1`` requests),
failures end the run ``failed`` with a message naming the node, malformed or unknown tool
calls are never executed, and the API key never leaves the outbound request (I-SEC).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.base import HttpPolicy
from graphs.headless import Runtime, open_runtime, run_document
from graphs.identity import Actor
from tests.conftest import question_answer_doc
from tests.loopback.http_receiver import HttpReceiver
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

SECRET_NAME = "openai_key"
SECRET_VALUE = "sk-loopback-7Hq2vX9pL4mN8rT1wZ5yB3cD6fG0jK"


def _open(tmp_path: Path, receiver: HttpReceiver, *, stream_tokens: bool) -> Any:
    # The HTTP policy is for tools only: the model client does not go through the netguard.
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
    return open_runtime(
        tmp_path / "studio.db", http=policy, lease_ttl_s=5, stream_tokens=stream_tokens
    )


@pytest.fixture(params=[True, False], ids=["watched", "unwatched"])
def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: HttpReceiver
) -> Iterator[Runtime]:
    """Both ways a model is called: streamed (someone watches tokens) and in one piece."""
    with _open(tmp_path, receiver, stream_tokens=request.param) as rt:
        yield rt


@pytest.fixture
def streaming(tmp_path: Path, receiver: HttpReceiver) -> Iterator[Runtime]:
    """A runtime that streams model answers and publishes `token` events."""
    with _open(tmp_path, receiver, stream_tokens=True) as rt:
        yield rt


@pytest.fixture
def server() -> Iterator[OpenAILoopback]:
    with openai_server() as loopback:
        yield loopback


def model_doc(
    server: OpenAILoopback,
    *,
    tools: list[dict[str, Any]] | None = None,
    name: str = "Model faults",
    **provider: Any,
) -> dict[str, Any]:
    """One llm node on the `openai` provider, pointed at the loopback server."""
    config: dict[str, Any] = {
        "provider": "openai",
        "prompt": "{{ question }}",
        "output_field": "answer",
        "provider_config": {
            "model": "gpt-loopback",
            "base_url": server.base_url,
            "max_retries": 1,
            "timeout_s": 1,
            **provider,
        },
    }
    doc = question_answer_doc(name, config, tools)
    if "api_key_secret" in provider:
        doc["secrets"] = [provider["api_key_secret"]]
    return doc


def refund_tool(receiver: HttpReceiver) -> dict[str, Any]:
    """A side-effecting tool, declared free: if it ever runs, the receiver sees a POST."""
    return {
        "name": "issue_refund",
        "type": "http",
        "tier": "free",
        "config": {
            "method": "POST",
            "url": receiver.url_for("/refunds"),
            "params": [
                {"name": "order_id", "type": "string"},
                {"name": "amount", "type": "number"},
            ],
        },
    }


def run(rt: Runtime, actor: Actor, doc: dict[str, Any], question: str = "Hello?") -> Any:
    return run_document(rt, doc, {"question": question}, actor=actor, timeout_s=30)


def events(rt: Runtime, run_id: str) -> list[Any]:
    rt.manager.events.flush()
    return rt.manager.events.history("acme", run_id)


def sent_messages(server: OpenAILoopback, index: int) -> list[dict[str, Any]]:
    return list(server.requests[index].body["messages"])


# --- a normal answer --------------------------------------------------------------------


def test_answer_with_usage_succeeds_and_records_the_reported_tokens(
    runtime: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    text = "Your order ships tomorrow."
    server.enqueue(Answer(text=text, prompt_tokens=57, completion_tokens=5))
    view = run(runtime, alice, model_doc(server), "When does it ship?")
    assert view.status == "succeeded", view.error
    assert view.output == {"answer": text}
    [request] = server.requests
    assert request.body["model"] == "gpt-loopback"
    assert request.body["messages"][-1] == {"role": "user", "content": "When does it ship?"}
    assert bool(request.body.get("stream")) is runtime.manager.stream_tokens
    [finished] = [e for e in events(runtime, view.run_id) if e.kind == "node_finished"]
    assert finished.node_id == "agent"
    assert finished.data["model"] == "gpt-loopback"
    assert (finished.data["input_tokens"], finished.data["output_tokens"]) == (57, 5)


def test_streamed_answer_with_usage_is_recorded_token_by_token(
    streaming: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    runtime = streaming
    text = "The parcel left Lyon on Tuesday and arrives Thursday."
    server.enqueue(Answer(text=text, prompt_tokens=123, completion_tokens=17))
    view = run(runtime, alice, model_doc(server), "Where is my parcel?")
    assert view.status == "succeeded", view.error
    assert view.output == {"answer": text}

    [request] = server.requests
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}

    history = events(runtime, view.run_id)
    [finished] = [e for e in history if e.kind == "node_finished" and e.node_id == "agent"]
    assert finished.data["model"] == "gpt-loopback"
    assert (finished.data["input_tokens"], finished.data["output_tokens"]) == (123, 17)
    tokens = [e for e in history if e.kind == "token"]
    assert len(tokens) > 3
    assert all(e.node_id == "agent" for e in tokens)
    assert "".join(e.data["text"] for e in tokens) == text
    seqs = [e.seq for e in tokens]
    assert seqs == sorted(seqs)
    assert max(seqs) < finished.seq


# --- retries ------------------------------------------------------------------------------


def test_rate_limit_then_success_retries_once(
    runtime: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    server.enqueue(
        HttpError(429, retry_after="0.05", message="slow down", error_type="rate_limit_exceeded"),
        Answer(text="Second time lucky.", prompt_tokens=9, completion_tokens=4),
    )
    view = run(runtime, alice, model_doc(server))
    assert view.status == "succeeded", view.error
    assert view.output == {"answer": "Second time lucky."}
    assert len(server.requests) == 2
    assert server.pending == 0
    [finished] = [e for e in events(runtime, view.run_id) if e.kind == "node_finished"]
    assert (finished.data["input_tokens"], finished.data["output_tokens"]) == (9, 4)


def test_persistent_server_error_fails_the_run_after_bounded_attempts(
    runtime: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    server.enqueue(*[HttpError(500, message="upstream exploded")] * 5)
    view = run(runtime, alice, model_doc(server, max_retries=2))
    assert view.status == "failed"
    assert len(server.requests) == 3  # max_retries + 1, never more
    assert view.error is not None
    assert "'agent'" in view.error
    assert "500" in view.error
    assert "3 attempts" in view.error
    assert "upstream exploded" not in view.error  # bodies are not echoed
    assert view.output is None
    final = [e for e in events(runtime, view.run_id) if e.kind == "run_status"][-1]
    assert final.data == {"status": "failed", "error": view.error}


def test_rate_limit_that_never_clears_is_bounded_too(
    runtime: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    server.enqueue(*[HttpError(429, retry_after="0.01")] * 5)
    view = run(runtime, alice, model_doc(server))
    assert view.status == "failed"
    assert len(server.requests) == 2
    assert view.error is not None and "429" in view.error and "'agent'" in view.error


def test_client_error_is_not_retried(
    runtime: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    server.enqueue(*[HttpError(400, message="bad request", error_type="invalid_request_error")] * 3)
    view = run(runtime, alice, model_doc(server, max_retries=3))
    assert view.status == "failed"
    assert len(server.requests) == 1
    assert view.error is not None and "400" in view.error


def test_timeout_fails_with_a_clear_message(
    runtime: Runtime, server: OpenAILoopback, alice: Actor
) -> None:
    server.enqueue(Stall(3), Stall(3), Stall(3))
    view = run(runtime, alice, model_doc(server))
    assert view.status == "failed"
    assert len(server.requests) == 2
    assert view.error is not None
    assert "'agent'" in view.error
    assert "did not answer within 1 s" in view.error
    assert "2 attempts" in view.error


# --- broken streams -----------------------------------------------------------------------


@pytest.mark.parametrize("clean", [False, True], ids=["connection-dropped", "no-finish-reason"])
def test_cut_stream_fails_instead_of_returning_a_partial_answer(
    streaming: Runtime, server: OpenAILoopback, alice: Actor, clean: bool
) -> None:
    runtime = streaming
    whole = "one two three four five six seven eight"
    server.enqueue(CutStream(Answer(text=whole), after_events=4, clean=clean))
    view = run(runtime, alice, model_doc(server))
    assert view.status == "failed", view.output
    assert view.output is None
    assert view.error is not None and "'agent'" in view.error
    if clean:
        assert "without a finish reason" in view.error
    else:
        assert "broke off" in view.error
    # the partial text streamed as tokens, but never became the node's answer
    runtime_state = runtime.manager.executor.compiled(view.version_id).graph.get_state(
        {"configurable": {"thread_id": f"run:{view.run_id}"}}
    )
    assert "answer" not in runtime_state.values
    assert not [m for m in runtime_state.values.get("messages", []) if m.type == "ai"]


def test_connection_dropped_mid_body_of_an_unstreamed_answer_fails_after_retries(
    tmp_path: Path, receiver: HttpReceiver, server: OpenAILoopback, alice: Actor
) -> None:
    """Unwatched runs read the answer in one piece: a dropped body is retried, then fails."""
    cut = CutStream(Answer(text="one two three four five"), after_events=2)
    server.enqueue(cut, cut, cut)
    with _open(tmp_path, receiver, stream_tokens=False) as runtime:
        view = run(runtime, alice, model_doc(server))
    assert view.status == "failed", view.output
    assert view.output is None
    assert len(server.requests) == 2
    assert view.error is not None and "'agent'" in view.error
    assert "broke off" in view.error, view.error


# --- tool calls the model gets wrong --------------------------------------------------------


def test_malformed_tool_call_is_never_executed_and_the_model_is_told(
    runtime: Runtime, server: OpenAILoopback, receiver: HttpReceiver, alice: Actor
) -> None:
    server.enqueue(
        Answer(tool_calls=(ToolCall("issue_refund", MALFORMED_ARGUMENTS, id="call_bad_1"),)),
        Answer(text="I could not issue the refund."),
    )
    view = run(runtime, alice, model_doc(server, tools=[refund_tool(receiver)]))
    assert view.status == "succeeded", view.error
    assert view.output == {"answer": "I could not issue the refund."}
    assert receiver.requests == []
    assert receiver.effects == []

    assert len(server.requests) == 2
    second = sent_messages(server, 1)
    [tool_message] = [m for m in second if m["role"] == "tool"]
    assert tool_message["tool_call_id"] == "call_bad_1"
    assert "malformed" in tool_message["content"]
    assert "not executed" in tool_message["content"]


def test_malformed_call_next_to_a_valid_one_runs_only_the_valid_one(
    runtime: Runtime, server: OpenAILoopback, receiver: HttpReceiver, alice: Actor
) -> None:
    server.enqueue(
        Answer(
            tool_calls=(
                ToolCall("issue_refund", {"order_id": "A-1", "amount": 5}, id="call_ok"),
                ToolCall("issue_refund", '{"order_id": "A-2", "amount": 5000,,}', id="call_bad"),
            )
        ),
        Answer(text="One refund went through."),
    )
    view = run(runtime, alice, model_doc(server, tools=[refund_tool(receiver)]))
    assert view.status == "succeeded", view.error
    [effect] = receiver.effects
    assert effect.json == {"order_id": "A-1", "amount": 5.0}
    tool_messages = {m["tool_call_id"]: m for m in sent_messages(server, 1) if m["role"] == "tool"}
    assert set(tool_messages) == {"call_ok", "call_bad"}
    assert "not executed" in tool_messages["call_bad"]["content"]
    assert json.loads(tool_messages["call_ok"]["content"])["status"] == 201


def test_unknown_tool_is_not_executed_and_the_run_continues(
    runtime: Runtime, server: OpenAILoopback, receiver: HttpReceiver, alice: Actor
) -> None:
    server.enqueue(
        Answer(tool_calls=(ToolCall("wire_money", {"to": "attacker", "amount": 1e6}),)),
        Answer(text="That tool does not exist; nothing was done."),
    )
    view = run(runtime, alice, model_doc(server, tools=[refund_tool(receiver)]))
    assert view.status == "succeeded", view.error
    assert view.output == {"answer": "That tool does not exist; nothing was done."}
    assert receiver.requests == []
    [tool_message] = [m for m in sent_messages(server, 1) if m["role"] == "tool"]
    assert "unknown tool 'wire_money'" in tool_message["content"]
    assert "not executed" in tool_message["content"]


# --- the API key (I-SEC) ----------------------------------------------------------------


def test_api_key_reaches_the_provider_and_nowhere_else(
    tmp_path: Path,
    server: OpenAILoopback,
    alice: Actor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(f"STUDIO_SECRET_{SECRET_NAME}", SECRET_VALUE)
    caplog.set_level(logging.DEBUG)
    doc = model_doc(server, api_key_secret=SECRET_NAME)
    # a success, then a failure whose error body echoes the key (as real providers do)
    server.enqueue(
        Answer(text="Authenticated answer."),
        HttpError(
            401,
            message=f"Incorrect API key provided: {SECRET_VALUE}",
            error_type="invalid_request_error",
        ),
    )
    with open_runtime(
        tmp_path / "studio.db", http=HttpPolicy(), lease_ttl_s=5, stream_tokens=True
    ) as rt:
        ok = run(rt, alice, doc, "first")
        bad = run(rt, alice, doc, "second")
        assert ok.status == "succeeded", ok.error
        assert bad.status == "failed"
        history = events(rt, ok.run_id) + events(rt, bad.run_id)
        runs = [rt.manager.get(alice, ok.run_id), rt.manager.get(alice, bad.run_id)]

    assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {SECRET_VALUE}"] * 2
    assert bad.error is not None and "401" in bad.error
    for view in runs:
        assert SECRET_VALUE not in repr(view)
    assert history
    for event in history:
        assert SECRET_VALUE not in json.dumps(event.data, default=str)
    assert caplog.records  # the runs did log (worker, HTTP client): none of it has the key
    for record in caplog.records:
        assert SECRET_VALUE not in record.getMessage()
    assert SECRET_VALUE not in caplog.text

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "studio.db" for p in files)
    assert any("checkpoints" in p.name for p in files)
    # the scan sees what the runs stored (answers, inputs), so an absent key is meaningful
    assert any(b"Authenticated answer." in p.read_bytes() for p in files)
    needle = SECRET_VALUE.encode()
    for path in files:
        data = path.read_bytes()
        assert needle not in data, f"the API key is stored in {path.name}"
        assert SECRET_VALUE.encode("utf-16-le") not in data


def test_missing_api_key_secret_fails_with_a_message_naming_the_secret(
    runtime: Runtime, server: OpenAILoopback, alice: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(f"STUDIO_SECRET_{SECRET_NAME}", raising=False)
    view = run(runtime, alice, model_doc(server, api_key_secret=SECRET_NAME))
    assert view.status == "failed"
    assert view.error is not None and SECRET_NAME in view.error
    assert server.requests == []


# --- the scripted model's scripted failure --------------------------------------------------


def test_scripted_fail_step_fails_the_run_with_a_clear_message(
    runtime: Runtime, alice: Actor
) -> None:
    doc = {
        "schema_version": 1,
        "name": "Scripted failure",
        "entry": "agent",
        "state": [{"name": "question", "type": "string", "input": True}],
        "nodes": [
            {
                "id": "agent",
                "type": "llm",
                "config": {
                    "prompt": "{{ question }}",
                    "provider_config": {"script": [{"fail": "error"}]},
                },
            }
        ],
        "edges": [],
    }
    view = run(runtime, alice, doc)
    assert view.status == "failed"
    assert view.output is None
    assert view.error is not None
    assert "scripted to fail" in view.error
    assert "turn 0" in view.error
    assert "internal error" not in view.error
    [finished] = [e for e in events(runtime, view.run_id) if e.kind == "node_finished"]
    assert finished.node_id == "agent"
    assert "scripted to fail" in finished.data["error"]


def test_scripted_failure_after_a_tool_round_keeps_the_effect_once(
    runtime: Runtime, receiver: HttpReceiver, alice: Actor
) -> None:
    """A model failure after an effect fails the run; the effect happened exactly once."""
    doc = {
        "schema_version": 1,
        "name": "Fail after refund",
        "entry": "agent",
        "state": [{"name": "question", "type": "string", "input": True}],
        "tools": [refund_tool(receiver)],
        "nodes": [
            {
                "id": "agent",
                "type": "llm",
                "config": {
                    "prompt": "{{ question }}",
                    "tools": ["issue_refund"],
                    "provider_config": {
                        "script": [
                            {
                                "tool_calls": [
                                    {
                                        "name": "issue_refund",
                                        "args": {"order_id": "A-9", "amount": 1},
                                    }
                                ]
                            },
                            {"fail": "error"},
                        ]
                    },
                },
            }
        ],
        "edges": [],
    }
    view = run(runtime, alice, doc)
    assert view.status == "failed"
    assert view.error is not None and "turn 1" in view.error
    assert len(receiver.effects) == 1


def test_provider_that_reuses_tool_call_ids_across_turns_still_gets_each_call_once(
    runtime: Runtime, server: OpenAILoopback, receiver: HttpReceiver, alice: Actor
) -> None:
    """Tool-call ids are chosen by the model's server; many OpenAI-compatible servers number
    them per message ("call_0" on every turn). Two different refunds in two turns are two
    effects, whatever ids the server picked."""
    server.enqueue(
        Answer(tool_calls=(ToolCall("issue_refund", {"order_id": "A-1", "amount": 5}, "call_0"),)),
        Answer(tool_calls=(ToolCall("issue_refund", {"order_id": "A-2", "amount": 7}, "call_0"),)),
        Answer(text="Both orders refunded."),
    )
    doc = model_doc(server, tools=[refund_tool(receiver)])
    # the refund's own HTTP answer is untrusted content; keep the second call free here
    doc["policies"] = {"untrusted_content_gates_effects": False}
    view = run(runtime, alice, doc)
    assert view.status == "succeeded", view.error
    assert sorted(e.json["order_id"] for e in receiver.effects) == ["A-1", "A-2"]
    assert len({e.idempotency_key for e in receiver.effects}) == 2
