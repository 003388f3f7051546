"""The compress node with the real scripted model, on real checkpointers."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from pydantic import ValidationError

from components.base import BuildContext, RunContext
from components.errors import ModelFailure, RunFailure
from components.nodes import compress
from components.providers.scripted import ScriptedChatModel, ScriptedConfig
from tests.components.doubles import EchoOutbox, NoApprovals, NoSecrets, no_tool_calls

SUMMARY_TEXT = "Ada asked about eight destinations and prefers trains."


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]


class RecordingModel(ScriptedChatModel):
    """The scripted provider's model, remembering what it was asked."""

    recorder: Any = None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.recorder.seen.append(list(messages))
        return super()._generate(messages, stop, run_manager, **kwargs)


class Models:
    """A ModelFactory building the scripted model from the node's provider config."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.seen: list[list[BaseMessage]] = []

    def __call__(self, provider: str, config: Mapping[str, Any]) -> BaseChatModel:
        self.calls.append((provider, dict(config)))
        settings = ScriptedConfig.model_validate(config)
        return RecordingModel(model=settings.model, script=settings.script, recorder=self)


def context(models: Models | None) -> RunContext:
    return RunContext(
        workspace_id="ws1",
        run_id="run1",
        user_id="u1",
        secrets=NoSecrets(),
        outbox=EchoOutbox(),
        approvals=NoApprovals(),
        models=models,
    )


def compile_compress(checkpointer: Any = None, summary: str = SUMMARY_TEXT, **settings: Any) -> Any:
    config = compress.Config.model_validate(
        {"provider_config": {"script": [{"text": summary}]}, **settings}
    )
    ctx = BuildContext(
        graph_name="test",
        node_ids=frozenset({"squeeze"}),
        tools={},
        state_fields={},
        compile_subgraph=lambda doc: None,
        call_tool=no_tool_calls,
    )
    graph = StateGraph(State, context_schema=RunContext)
    graph.add_node("squeeze", compress.SPEC.build("squeeze", config, ctx).fn)
    graph.add_edge(START, "squeeze")
    graph.add_edge("squeeze", END)
    return graph.compile(checkpointer=checkpointer or InMemorySaver())


def run(app: Any, messages: Sequence[BaseMessage], models: Models | None, thread: str = "t") -> Any:
    config = {"configurable": {"thread_id": thread}}
    return app.invoke({"messages": list(messages)}, config, context=context(models))["messages"]


def conversation(system_prompt: bool) -> list[BaseMessage]:
    """25 messages (24 without the system prompt); a tool group where the naive cut lands."""
    messages: list[BaseMessage] = []
    if system_prompt:
        messages.append(SystemMessage("You are a travel agent.", id="sys"))
    for i in range(8):
        messages += [
            HumanMessage(f"question {i}", id=f"h{i}"),
            AIMessage(f"answer {i}", id=f"a{i}"),
        ]
    calls = [{"name": "search", "args": {"q": q}, "id": f"c{n}"} for n, q in enumerate("XYZ")]
    messages += [
        HumanMessage("book my trains", id="h8"),
        AIMessage("", id="ai-calls", tool_calls=calls),
        *(
            ToolMessage(f"result {n}", tool_call_id=f"c{n}", name="search", id=f"t{n}")
            for n in range(3)
        ),
        AIMessage("Booked.", id="a9"),
        HumanMessage("thanks", id="h10"),
        AIMessage("You're welcome.", id="a10"),
    ]
    return messages


def assert_tool_groups_intact(messages: Sequence[BaseMessage]) -> None:
    for index, message in enumerate(messages):
        if isinstance(message, ToolMessage):
            callers = [
                m
                for m in messages[:index]
                if isinstance(m, AIMessage)
                and message.tool_call_id in {c["id"] for c in m.tool_calls}
            ]
            assert callers, f"tool result {message.id} lost its calling AI message"


def test_a_long_conversation_becomes_summary_then_recent_messages(tmp_path: Path) -> None:
    original = conversation(system_prompt=False)
    path = tmp_path / "checkpoints.sqlite"
    models = Models()
    app = compile_compress(SqliteSaver(sqlite3.connect(path, check_same_thread=False)))

    result = run(app, original, models)

    assert len(result) < len(original)
    assert isinstance(result[0], SystemMessage)
    assert result[0].content == compress.SUMMARY_PREFIX + SUMMARY_TEXT
    kept_ids = [m.id for m in original[17:]]  # from the AI message that calls tools
    assert [m.id for m in result[1:]] == kept_ids
    assert [m.id for m in result[1:3]] == ["ai-calls", "t0"]
    assert_tool_groups_intact(result)

    ((prompt, transcript),) = models.seen
    assert prompt.content == compress.DEFAULT_PROMPT
    assert "User: question 0" in transcript.content
    assert "Assistant: answer 7" in transcript.content
    assert "thanks" not in transcript.content
    assert models.calls == [("scripted", {"script": [{"text": SUMMARY_TEXT}]})]
    usage = result[0].response_metadata["studio_summary"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0

    reopened = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    saved = reopened.get_tuple({"configurable": {"thread_id": "t"}})
    assert saved is not None
    assert [m.id for m in saved.checkpoint["channel_values"]["messages"]] == [m.id for m in result]


def test_leading_system_prompt_stays_first_and_the_summary_follows() -> None:
    result = run(compile_compress(), conversation(system_prompt=True), Models())
    assert [m.id for m in result[:3]] == ["sys", result[1].id, "ai-calls"]
    assert result[0].content == "You are a travel agent."
    assert str(result[1].id).startswith(compress.SUMMARY_ID_PREFIX)
    assert_tool_groups_intact(result)


def test_the_cut_moves_earlier_past_every_tool_result() -> None:
    result = run(compile_compress(keep_last=4), conversation(system_prompt=False), Models())
    assert [m.id for m in result[1:]] == ["ai-calls", "t0", "t1", "t2", "a9", "h10", "a10"]


def test_below_the_threshold_nothing_changes_and_no_model_is_called() -> None:
    models = Models()
    original = conversation(system_prompt=False)[:20]
    result = run(compile_compress(), original, models)
    assert [m.id for m in result] == [m.id for m in original]
    assert models.calls == []


def test_a_conversation_that_is_one_tool_group_is_left_alone() -> None:
    models = Models()
    original = conversation(system_prompt=False)[16:21]  # human, AI with 3 calls, 3 results
    app = compile_compress(max_messages=3, keep_last=2)
    assert [m.id for m in run(app, original, models)] == [m.id for m in original]
    assert models.seen == []


def test_compressing_again_folds_the_old_summary_into_one_new_summary() -> None:
    models = Models()
    app = compile_compress(max_messages=10, keep_last=3)
    first = run(app, conversation(system_prompt=False), models)
    more = [HumanMessage(f"more {i}", id=f"m{i}") for i in range(12)]
    second = run(app, more, models)

    summaries = [m for m in second if str(m.id).startswith(compress.SUMMARY_ID_PREFIX)]
    assert len(summaries) == 1
    assert second[0] is not None and second[0].id == summaries[0].id != first[0].id
    assert [m.id for m in second[1:]] == ["m9", "m10", "m11"]
    assert compress.SUMMARY_PREFIX in models.seen[1][1].content


def test_the_summary_id_is_the_same_when_the_step_runs_again() -> None:
    app = compile_compress()
    first = run(app, conversation(system_prompt=False), Models(), thread="one")
    again = run(app, conversation(system_prompt=False), Models(), thread="two")
    assert first[0].id == again[0].id


def test_split_point_never_separates_tool_calls_from_their_results() -> None:
    rng = random.Random(7)
    for _ in range(200):
        messages: list[BaseMessage] = []
        while len(messages) < 30:
            n = len(messages)
            if rng.random() < 0.3:
                calls = [
                    {"name": "t", "args": {}, "id": f"c{n}-{k}"} for k in range(rng.randint(1, 4))
                ]
                messages.append(AIMessage("", id=f"ai{n}", tool_calls=calls))
                messages += [
                    ToolMessage("r", tool_call_id=c["id"], id=f"r{c['id']}") for c in calls
                ]
            else:
                messages.append(HumanMessage("hi", id=f"h{n}"))
        for keep_last in range(1, len(messages)):
            head, cut = compress.split_point(messages, keep_last)
            assert head == 0 and cut <= len(messages) - keep_last
            assert cut == 0 or not isinstance(messages[cut], ToolMessage)
            assert_tool_groups_intact(messages[cut:])


def test_an_empty_summary_is_a_model_failure() -> None:
    with pytest.raises(ModelFailure, match=r"compress node 'squeeze'.*empty summary"):
        run(compile_compress(summary=""), conversation(system_prompt=False), Models())


def test_a_run_without_a_model_factory_fails_clearly() -> None:
    with pytest.raises(RunFailure, match="compress node 'squeeze' needs a model"):
        run(compile_compress(), conversation(system_prompt=False), None)


def test_keep_last_must_be_below_the_threshold() -> None:
    with pytest.raises(ValidationError, match="keep_last"):
        compress.Config.model_validate({"max_messages": 6, "keep_last": 6})
