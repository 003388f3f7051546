"""The offline scripted model: the product's default model, deterministic and keyless.

Each model turn plays one `ScriptStep` of the config's script: a text, tool calls, a call
taken from injected tool output (``obey_tool_output``, for prompt-injection tests), a
malformed tool call, or a failure. The turn is the number of AI messages since the last
human message, so an agent loop (human → AI with tool call → tool → AI …) walks the script.
Past the end, the last step repeats when it calls no tools; otherwise the model says "Done.".

Tool-call ids hash the conversation (message types, contents, tool calls) and the call's
position: the same history always gives the same id, another history never reuses one —
the runtime keys exactly-once effects by tool call id.

Every answer reports token usage from a simple deterministic tokenizer (about four
characters a token, plus per-message overhead). Streaming yields word chunks, tool calls as
``tool_call_chunks`` and the usage once, on the last chunk: ``invoke`` and ``stream`` give
the same final message. Stop sequences are ignored.
"""

from __future__ import annotations

__all__ = [
    "SPEC",
    "ScriptStep",
    "ScriptedChatModel",
    "ScriptedConfig",
    "ScriptedToolCall",
    "build",
    "count_tokens",
    "register",
]

import contextlib
import hashlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, model_validator

from components.base import ProviderSpec, SecretResolver, StrictModel
from components.errors import ModelFailure
from components.registry import Registry

logger = logging.getLogger(__name__)

DONE_TEXT = "Done."
_CHARS_PER_TOKEN = 4
_MESSAGE_OVERHEAD = 4  # role and separators of each message, as chat APIs count them
_REPLY_OVERHEAD = 3  # the priming of the assistant's reply
_TOOL_CALL_OVERHEAD = 3
_CALL_LINE = re.compile(r"^[ \t]*CALL[ \t]+([A-Za-z_][\w.-]*)[ \t]+(\{.*\})[ \t]*$", re.MULTILINE)


class ScriptedToolCall(StrictModel):
    """One tool call a scripted turn makes."""

    name: str = Field(
        min_length=1, max_length=128, description="Name of the tool to call (a tool of the graph)."
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="Arguments of the call, as a JSON object."
    )


class ScriptStep(StrictModel):
    """What the scripted model does on one turn."""

    text: str = Field(default="", max_length=100_000, description="Text of the answer.")
    tool_calls: list[ScriptedToolCall] = Field(
        default_factory=list, max_length=32, description="Tool calls made on this turn."
    )
    obey_tool_output: bool = Field(
        default=False,
        description="Obey the latest tool output (prompt-injection tests): call the tool it "
        "names on a line 'CALL <tool> <json object>'; answer with the text if there is none.",
    )
    malformed_tool_call: bool = Field(
        default=False,
        description="Send this turn's tool calls with arguments that are not JSON; they land "
        "in invalid_tool_calls and must never run.",
    )
    fail: Literal[None, "error"] = Field(
        default=None,
        description="'error': this turn fails with a model failure (to test failure paths).",
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.malformed_tool_call and not self.tool_calls:
            raise ValueError(
                "malformed_tool_call needs at least one entry in tool_calls to send malformed"
            )
        if self.obey_tool_output and self.tool_calls:
            raise ValueError(
                "obey_tool_output takes its call from the tool output; leave tool_calls empty"
            )
        return self

    @property
    def may_call_tools(self) -> bool:
        return bool(self.tool_calls) or self.obey_tool_output


class ScriptedConfig(StrictModel):
    """Settings of the offline scripted model (provider 'scripted')."""

    model: str = Field(
        default="scripted-1",
        min_length=1,
        max_length=200,
        description="Model name reported in responses and cost records.",
    )
    script: list[ScriptStep] = Field(
        default_factory=list,
        max_length=1_000,
        description="One step per model turn. Past the end the last step repeats, or the "
        "model answers 'Done.' when that step calls tools.",
    )
    stream_chunk_words: int = Field(
        default=1, ge=1, le=1_000, description="Words per chunk when the answer is streamed."
    )


@dataclass(frozen=True, slots=True)
class _Call:
    call_id: str
    name: str
    args: dict[str, Any]
    args_json: str
    valid: bool


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str
    calls: tuple[_Call, ...]
    usage: UsageMetadata
    metadata: dict[str, Any]


def count_tokens(text: str) -> int:
    """Deterministic token estimate: about four characters a token."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


def _content_text(content: str | list[str | dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        else:
            parts.append(json.dumps(block, sort_keys=True, default=str))
    return "\n".join(parts)


def _call_tokens(name: str, args_json: str) -> int:
    return _TOOL_CALL_OVERHEAD + count_tokens(name + args_json)


def _message_tokens(message: BaseMessage) -> int:
    tokens = _MESSAGE_OVERHEAD + count_tokens(_content_text(message.content))
    if isinstance(message, AIMessage):
        tokens += sum(_call_tokens(c["name"], json.dumps(c["args"])) for c in message.tool_calls)
        tokens += sum(
            _call_tokens(c.get("name") or "", c.get("args") or "")
            for c in message.invalid_tool_calls
        )
    return tokens


def _usage(
    messages: Sequence[BaseMessage], tools: Sequence[Any], text: str, calls: Sequence[_Call]
) -> UsageMetadata:
    input_tokens = _REPLY_OVERHEAD + sum(_message_tokens(m) for m in messages)
    if tools:
        input_tokens += count_tokens(json.dumps(list(tools), sort_keys=True, default=str))
    output_tokens = count_tokens(text) + sum(_call_tokens(c.name, c.args_json) for c in calls)
    output_tokens = max(output_tokens, 1)
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def _history_key(messages: Sequence[BaseMessage]) -> str:
    """Canonical serialization of (type, content, tool calls) of each message (no ids)."""
    rows = [
        [
            "ai" if isinstance(m, AIMessage) else m.type,
            m.content,
            [[c["name"], c["args"], c["id"]] for c in getattr(m, "tool_calls", None) or []],
        ]
        for m in messages
    ]
    return json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _call_id(history_key: str, index: int) -> str:
    digest = hashlib.sha256(f"{history_key}#{index}".encode()).hexdigest()
    return "call_" + digest[:20]


def _turn_index(messages: Sequence[BaseMessage]) -> int:
    turn = 0
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, AIMessage):
            turn += 1
    return turn


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _injected_call(messages: Sequence[BaseMessage]) -> ScriptedToolCall | None:
    """The first 'CALL <tool> <json object>' line of the latest tool output (JSON unwrapped)."""
    latest = next((m for m in reversed(messages) if isinstance(m, ToolMessage)), None)
    if latest is None:
        return None
    text = _content_text(latest.content)
    texts = [text]
    with contextlib.suppress(ValueError):
        texts.extend(_strings(json.loads(text)))
    for candidate in texts:
        for match in _CALL_LINE.finditer(candidate):
            try:
                args = json.loads(match.group(2))
            except ValueError:
                continue
            if isinstance(args, dict):
                return ScriptedToolCall(name=match.group(1), args=args)
    return None


def _malformed(args: dict[str, Any]) -> str:
    """Arguments that are not JSON, not even a prefix of it (like a model's broken output)."""
    return json.dumps(args, sort_keys=True)[:-1].rstrip() + ",, }"


def _text_chunks(text: str, words_per_chunk: int) -> list[str]:
    """Chunks of `words_per_chunk` words (with their spacing); they concatenate to `text`."""
    words = re.findall(r"\s*\S+\s*|\s+", text)
    return [
        "".join(words[start : start + words_per_chunk])
        for start in range(0, len(words), words_per_chunk)
    ]


class ScriptedChatModel(BaseChatModel):
    """A deterministic chat model that plays a script; supports tools and streaming."""

    model: str = "scripted-1"
    script: list[ScriptStep] = Field(default_factory=list)
    stream_chunk_words: int = Field(default=1, ge=1)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tool schemas; they count as input tokens, the script decides the calls."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _step(self, turn: int) -> ScriptStep | None:
        if turn < len(self.script):
            return self.script[turn]
        if self.script and not self.script[-1].may_call_tools:
            return self.script[-1]
        return None

    def _plan(
        self, step: ScriptStep | None, messages: Sequence[BaseMessage]
    ) -> tuple[str, list[ScriptedToolCall]]:
        if step is None:
            return DONE_TEXT, []
        if step.obey_tool_output:
            injected = _injected_call(messages)
            return ("", [injected]) if injected else (step.text, [])
        return step.text, list(step.tool_calls)

    def _reply(self, messages: Sequence[BaseMessage], tools: Sequence[Any]) -> _Reply:
        turn = _turn_index(messages)
        step = self._step(turn)
        if step is not None and step.fail == "error":
            raise ModelFailure(
                f"scripted model {self.model!r}: turn {turn} is scripted to fail "
                "(fail='error'); remove 'fail' from that step to let the turn answer"
            )
        text, planned = self._plan(step, messages)
        malformed = step is not None and step.malformed_tool_call
        key = _history_key(messages) if planned else ""
        calls = tuple(
            _Call(
                call_id=_call_id(key, index),
                name=call.name,
                args=call.args,
                args_json=_malformed(call.args) if malformed else json.dumps(call.args),
                valid=not malformed,
            )
            for index, call in enumerate(planned)
        )
        metadata = {
            "model_name": self.model,
            "model_provider": "scripted",
            "finish_reason": "tool_calls" if calls else "stop",
        }
        usage = _usage(messages, tools, text, calls)
        logger.debug("scripted model %r turn %d: %d tool call(s)", self.model, turn, len(calls))
        return _Reply(text=text, calls=calls, usage=usage, metadata=metadata)

    def _message(self, reply: _Reply) -> AIMessage:
        return AIMessage(
            content=reply.text,
            tool_calls=[
                tool_call(name=c.name, args=c.args, id=c.call_id) for c in reply.calls if c.valid
            ],
            invalid_tool_calls=[
                invalid_tool_call(name=c.name, args=c.args_json, id=c.call_id, error=None)
                for c in reply.calls
                if not c.valid
            ],
            usage_metadata=reply.usage,
            response_metadata=dict(reply.metadata),
        )

    def _chunks(self, reply: _Reply) -> Iterator[ChatGenerationChunk]:
        for piece in _text_chunks(reply.text, self.stream_chunk_words):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        for index, call in enumerate(reply.calls):
            chunk = tool_call_chunk(
                name=call.name, args=call.args_json, id=call.call_id, index=index
            )
            yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[chunk]))
        last = AIMessageChunk(
            content="",
            usage_metadata=reply.usage,
            response_metadata=dict(reply.metadata),
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=last)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply = self._reply(messages, kwargs.get("tools") or [])
        return ChatResult(generations=[ChatGeneration(message=self._message(reply))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(self._reply(messages, kwargs.get("tools") or []))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, **kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._stream(messages, stop, **kwargs):
            yield chunk


def build(config: ScriptedConfig, secrets: SecretResolver) -> ScriptedChatModel:
    """The scripted model for `config` (it needs no secrets)."""
    del secrets
    return ScriptedChatModel(
        model=config.model,
        script=list(config.script),
        stream_chunk_words=config.stream_chunk_words,
    )


SPEC = ProviderSpec(
    name="scripted",
    title="Scripted model (offline)",
    config_model=ScriptedConfig,
    build=build,
    reusable=True,
)


def register(registry: Registry) -> None:
    registry.add_provider(SPEC)
