"""A run's timeline: one entry per step, built from its checkpoints and its events.

Per step: the node(s) that ran, the state they started from, what each wrote, the state
change, for a model call the messages the model saw, tokens, cost, latency and errors. A
fork's copied steps take their events from the origin run. Everything is plain JSON-safe
data (messages become dicts): pages show it as text, never as markup.
"""

from __future__ import annotations

__all__ = ["StepView", "TaskView", "Timeline", "plain", "run_timeline"]

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import RunnableConfig
from sqlalchemy import select

from components.errors import StudioError
from components.templates import render
from graphs.forks import ForkInfo, fork_of
from graphs.identity import Actor
from graphs.spec import GraphDocument
from graphs.tables import Run

if TYPE_CHECKING:
    from graphs.runs import RunManager

MAX_STEPS = 2_000


@dataclass(frozen=True, slots=True)
class TaskView:
    """One node execution within a step."""

    task_id: str
    node: str
    output: Any
    error: str | None
    interrupted: bool
    latency_ms: float | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: str | None  # None: not metered or unknown (never shown as 0)
    tool_calls: list[dict[str, Any]]
    messages_seen: list[dict[str, Any]] | None


@dataclass(frozen=True, slots=True)
class StepView:
    index: int
    step: int
    checkpoint_id: str  # the checkpoint the step started from: fork from here
    kind: str  # "step" | "edit" (state edited by a fork)
    at: str | None
    inputs: dict[str, Any]
    change: dict[str, dict[str, Any]]  # field → {"before": ..., "after": ...}
    tasks: tuple[TaskView, ...]
    inherited: bool  # copied from the origin run

    @property
    def nodes(self) -> list[str]:
        return [t.node for t in self.tasks]


@dataclass(frozen=True, slots=True)
class Timeline:
    run_id: str
    steps: list[StepView]
    path: list[str]
    fork: ForkInfo | None
    editable: list[str]  # state fields a fork may change
    values: dict[str, Any]  # the latest state


def run_timeline(manager: RunManager, actor: Actor, run_id: str) -> Timeline:
    """Every step of the run so far (live or finished); needs `run:read`."""
    run = manager.get(actor, run_id)
    info = fork_of(manager, actor, run_id)
    compiled = manager.executor.compiled(run.version_id)
    cfg: RunnableConfig = {"configurable": {"thread_id": _thread(manager, run_id)}}
    snapshots = list(compiled.graph.get_state_history(cfg, limit=MAX_STEPS))[::-1]
    events = _task_events(manager, actor, run_id)
    fork_index = next(
        (
            i
            for i, s in enumerate(snapshots)
            if info is not None and s.config["configurable"]["checkpoint_id"] == info.checkpoint_id
        ),
        -1,
    )
    steps: list[StepView] = []
    for i, snapshot in enumerate(snapshots):
        if not snapshot.next:
            continue
        after = snapshots[i + 1] if i + 1 < len(snapshots) else None
        edit = after is not None and (after.metadata or {}).get("source") == "update"
        steps.append(
            StepView(
                index=len(steps),
                step=int((snapshot.metadata or {}).get("step", -1)),
                checkpoint_id=str(snapshot.config["configurable"]["checkpoint_id"]),
                kind="edit" if edit else "step",
                at=snapshot.created_at,
                inputs=plain(_public(snapshot.values)),
                change=_change(snapshot.values, after.values if after else None),
                tasks=() if edit else _tasks(compiled.document, snapshot, events),
                inherited=i < fork_index,
            )
        )
    path = [t.node for s in steps for t in s.tasks if t.node != "__start__"]
    values = plain(_public(snapshots[-1].values)) if snapshots else {}
    editable = [f.name for f in compiled.document.state if f.type != "messages"]
    return Timeline(run_id, steps, path, info, editable, values)


def plain(value: Any, depth: int = 0) -> Any:
    """JSON-safe data: messages become dicts, unknown objects their text."""
    if depth > 40:
        return "…"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, BaseMessage):
        return _message(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v, depth + 1) for v in value]
    return str(value)


# --- internals -----------------------------------------------------------------------------


def _thread(manager: RunManager, run_id: str) -> str:
    with manager.sessions() as session:
        return session.scalar(select(Run.thread_id).where(Run.run_id == run_id)) or ""


def _public(values: Mapping[str, Any]) -> dict[str, Any]:
    """State without the studio's bookkeeping channels."""
    return {k: v for k, v in values.items() if not k.startswith(("studio_", "branch:"))}


def _message(message: BaseMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"type": message.type, "content": plain(message.content, 1)}
    if message.name:
        out["name"] = message.name
    if isinstance(message, AIMessage) and message.tool_calls:
        out["tool_calls"] = [_call(c) for c in message.tool_calls]
    return out


def _call(call: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": call.get("name"), "args": plain(call.get("args"), 1)}


def _change(
    before: Mapping[str, Any], after: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    if after is None:
        return {}
    old, new = _public(before), _public(after)
    return {
        key: {"before": plain(old.get(key)), "after": plain(new.get(key))}
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    }


def _task_events(manager: RunManager, actor: Actor, run_id: str) -> dict[str, dict[str, Any]]:
    """Finished-task data by LangGraph task id: this run's own events win over those of
    the runs it was forked from (a fork's copied steps ran there)."""
    runs = [run_id]
    info = fork_of(manager, actor, run_id)
    while info is not None and len(runs) < 16 and info.origin_run_id not in runs:
        runs.append(info.origin_run_id)
        try:
            info = fork_of(manager, actor, info.origin_run_id)
        except StudioError:
            break
    found: dict[str, dict[str, Any]] = {}
    for source in reversed(runs):  # nearest last, so it wins
        for event in manager.events.history(actor.workspace_id, source):
            task = event.data.get("task") if event.kind == "node_finished" else None
            if isinstance(task, str):
                found[task] = event.data
    return found


def _tasks(
    doc: GraphDocument, snapshot: Any, events: Mapping[str, Mapping[str, Any]]
) -> tuple[TaskView, ...]:
    tasks = []
    for task in snapshot.tasks:
        data = events.get(task.id, {})
        output = plain(task.result) if task.result is not None else None
        metered = data.get("cost")
        cost: Mapping[str, Any] = metered if isinstance(metered, Mapping) else {}
        tasks.append(
            TaskView(
                task_id=task.id,
                node=task.name,
                output=output,
                error=_text(data.get("error")) or _text(task.error),  # ours: no repr
                interrupted=bool(task.interrupts) or bool(data.get("paused")),
                latency_ms=_number(data.get("ms")),
                model=_text(data.get("model")),
                input_tokens=_int(data.get("input_tokens")),
                output_tokens=_int(data.get("output_tokens")),
                cost_usd=_text(cost.get("cost_usd")),
                tool_calls=_tool_calls(task.result),
                messages_seen=_seen(doc, task.name, snapshot.values, task.result),
            )
        )
    return tuple(tasks)


def _tool_calls(result: Any) -> list[dict[str, Any]]:
    messages = result.get("messages") if isinstance(result, Mapping) else None
    calls: list[dict[str, Any]] = []
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, AIMessage):
            calls += [_call(c) for c in message.tool_calls]
    return calls


def _seen(
    doc: GraphDocument, node_id: str, state: Mapping[str, Any], result: Any
) -> list[dict[str, Any]] | None:
    """For a model call: the system prompt, the conversation so far and what the node
    added before the answer — as the LLM node builds them."""
    written = result.get("messages") if isinstance(result, Mapping) else None
    if not isinstance(written, list) or not any(isinstance(m, AIMessage) for m in written):
        return None
    history: Sequence[Any] = state.get("messages") or []
    before = [m for m in written if not isinstance(m, AIMessage)]
    seen = [_message(m) for m in [*history, *before] if isinstance(m, BaseMessage)]
    system = _system_prompt(doc, node_id, state)
    return ([{"type": "system", "content": system}] if system else []) + seen


def _system_prompt(doc: GraphDocument, node_id: str, state: Mapping[str, Any]) -> str | None:
    node = next((n for n in doc.nodes if n.id == node_id), None)
    template = (node.config.get("system_prompt") if node else None) or ""
    if not isinstance(template, str) or not template:
        return None
    try:
        return render(template, state)
    except StudioError:
        return template


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
