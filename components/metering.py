"""Watching model calls for the meter: call sites, attempts, first tokens, reported usage.

A provider that speaks HTTP installs `http_event_hooks()` on its client. The hooks log every
request it sends — the SDK's own retries included — into the `AttemptProbe` of the model
invocation running in the current context. The probe is also a LangChain callback handler
that notes when the first streamed token arrived. `AttemptProbe.attempts()` then turns what
it saw into one `ModelAttempt` per attempt: every retry is recorded, and costed when the
provider reported usage for it.
"""

from __future__ import annotations

__all__ = ["AttemptProbe", "call_site", "failure_kind", "http_event_hooks", "usage_of"]

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, var_child_runnable_config

from components.base import AttemptOutcome, CallSite, ModelAttempt, RunContext, TokenUsage
from components.errors import ModelFailure

_CURRENT: ContextVar[AttemptProbe | None] = ContextVar("studio_attempt_probe", default=None)


def call_site(ctx: RunContext, node_id: str) -> CallSite:
    """The call site of `node_id` in the run of `ctx` (node path inside sub-graphs)."""
    return CallSite(
        ctx.workspace_id,
        ctx.run_id,
        ctx.graph_id,
        ctx.graph_version,
        ctx.user_id,
        ctx.node_path + node_id,
    )


def usage_of(answer: AIMessage | None) -> TokenUsage | None:
    """The usage the provider reported with `answer` (None when it reported none)."""
    usage = answer.usage_metadata if answer is not None else None
    if not usage:
        return None
    cached = (usage.get("input_token_details") or {}).get("cache_read") or 0
    return TokenUsage(usage["input_tokens"], usage["output_tokens"], int(cached))


def failure_kind(status: int | None, exc: BaseException | None) -> str:
    """A short, stable name for why an attempt failed (for records and dashboards)."""
    if status == 429:
        return "rate_limited"
    if status is not None and status >= 500:
        return "server_error"
    if status is not None and status >= 400:
        return "client_error"
    if status is not None:
        return "incomplete"  # the answer began, then the stream broke or ended early
    if exc is None:
        return "no_response"
    if isinstance(exc, ModelFailure):
        return "model_error"
    name = type(exc).__name__
    if "Timeout" in name:
        return "timeout"
    return "connection" if "Connection" in name else "error"


@dataclass(slots=True)
class _Try:
    started: float
    status: int | None = None
    answered_at: float | None = None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class AttemptProbe(BaseCallbackHandler):
    """What one model invocation did: its HTTP attempts and its first streamed token."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.perf_counter()
        self.tries: list[_Try] = []
        self.first_token: float | None = None

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to note (defined so LangChain does not fall back to `on_llm_start`, which
        first turns every message of the prompt into one string)."""

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    @contextmanager
    def watching(self, model: Any) -> Iterator[RunnableConfig | None]:
        """Watch invocations of `model` in this block; yields the config to invoke it with:
        None (the caller's own) unless the call will stream, else the caller's callbacks
        (so LangGraph's token streaming) plus this probe, to time the first token. A call
        that does not stream has no first token to time, and a handler costs every call."""
        token = _CURRENT.set(self)
        try:
            yield with_handler(ensure_config(), self) if will_stream(model) else None
        finally:
            _CURRENT.reset(token)

    def attempts(
        self,
        *,
        first: int,
        model: str,
        usage: TokenUsage | None,
        failure: BaseException | None,
        failed_outcome: AttemptOutcome,
    ) -> list[ModelAttempt]:
        """One record per attempt: earlier ones were retried, the last one ended the call."""
        end = time.perf_counter()
        tries = self.tries or [_Try(self.started, None if failure else 200, end)]
        records = [
            ModelAttempt(
                first + index,
                "retry",
                model,
                None,
                _ms((attempt.answered_at or tries[index + 1].started) - attempt.started),
                error_kind=failure_kind(attempt.status, None),
            )
            for index, attempt in enumerate(tries[:-1])
        ]
        last = tries[-1]
        token_at = self.first_token
        ttft = _ms(token_at - last.started) if token_at and token_at >= last.started else None
        records.append(
            ModelAttempt(
                first + len(tries) - 1,
                "ok" if failure is None else failed_outcome,
                model,
                usage if failure is None else None,
                _ms(end - last.started),
                ttft,
                None if failure is None else failure_kind(last.status, failure),
                answered=last.status is not None and 200 <= last.status < 300,
            )
        )
        return records


def will_stream(model: Any) -> bool:
    """Whether `model.invoke` will stream under the caller's config, by LangChain's rule: the
    model is set to stream, or a streaming callback handler (one with `tap_output_iter`, as
    LangGraph's token streaming) is attached."""
    target = getattr(model, "bound", model)  # a model with tools bound: the model itself
    if getattr(target, "__dict__", {}).get("streaming") is True:  # a field, or nothing
        return True
    config = var_child_runnable_config.get() or {}
    callbacks = config.get("callbacks")
    handlers = callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else callbacks
    return any(hasattr(h, "tap_output_iter") for h in handlers or ())


def with_handler(config: RunnableConfig, handler: BaseCallbackHandler) -> RunnableConfig:
    """`config` (a copy of its own, as `ensure_config` returns) with `handler` added to its
    callbacks in place: `merge_configs` would copy the callback manager once more."""
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        callbacks.add_handler(handler, inherit=True)
    else:
        config["callbacks"] = [*(callbacks or []), handler]
    return config


def _on_request(_request: Any) -> None:
    probe = _CURRENT.get()
    if probe is not None:
        probe.tries.append(_Try(time.perf_counter()))


def _on_response(response: Any) -> None:
    probe = _CURRENT.get()
    if probe is not None and probe.tries:
        probe.tries[-1].status = int(response.status_code)
        probe.tries[-1].answered_at = time.perf_counter()


def http_event_hooks() -> dict[str, list[Callable[[Any], None]]]:
    """httpx `event_hooks` for a provider's (sync) client: log each attempt to the probe."""
    return {"request": [_on_request], "response": [_on_response]}
