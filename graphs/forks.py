"""Time travel: a new run from any checkpoint of another run, with edited state.

`fork_run` copies the origin's thread history up to the chosen checkpoint into a new thread
(derived on the server from the new run's id), writes the state edits as one more
checkpoint at the same step — so the calls made after it carry the same call ids as in the
origin — and queues the new run on the origin's graph version. The fork's effect ledger
falls back to its origins' records (see `graphs.ledger`): a call an origin already made is
answered from that record and never made again; a call the edits changed is a new effect.

`retry_run` is a fork without edits from the last checkpoint of a run that failed: the
failed step runs again, and whatever it had already done is answered by the ledger.

Only the root graph's checkpoints are copied: a sub-graph that was part-way through at the
chosen checkpoint starts that step again (its effects, too, are answered by the ledger).
"""

from __future__ import annotations

__all__ = ["RETRYABLE_STATUSES", "ForkInfo", "checked_edits", "fork_of", "fork_run", "retry_run"]

import re
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple, copy_checkpoint
from langgraph.checkpoint.base.id import uuid6
from sqlalchemy import select

from components.errors import Conflict, NotFound, UserError
from components.gates import canonical_json
from graphs.identity import Actor
from graphs.spec import GraphDocument
from graphs.tables import Run, RunFork

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from graphs.runs import RunManager, RunView

RETRYABLE_STATUSES = frozenset({"failed", "cancelled", "budget_exceeded"})
MAX_EDIT_BYTES = 256_000
_CHECKPOINT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "object": dict,
    "list": list,
}


@dataclass(frozen=True, slots=True)
class ForkInfo:
    """Where a run came from: its origin run and the checkpoint (step) it started at."""

    run_id: str
    origin_run_id: str
    checkpoint_id: str
    step: int
    kind: str  # "fork" | "retry"
    edits: dict[str, Any]
    created_by: str
    created_at: datetime


def fork_run(
    manager: RunManager,
    actor: Actor,
    run_id: str,
    checkpoint_id: str,
    state_edits: Mapping[str, Any] | None = None,
    *,
    stream_tokens: bool = False,
) -> str:
    """Start a new run from checkpoint `checkpoint_id` of run `run_id`, with the state fields
    in `state_edits` replaced; returns the new run's id. Needs `graph:edit` and `run:start`."""
    origin = manager.get(actor, run_id)  # scope first: a foreign run is not found
    manager.authz.require(actor, "graph:edit")
    manager.authz.require(actor, "run:start")
    return _fork(manager, actor, origin, checkpoint_id, state_edits or {}, "fork", stream_tokens)


def retry_run(
    manager: RunManager, actor: Actor, run_id: str, *, stream_tokens: bool = False
) -> str:
    """Run a failed (or cancelled, or over-budget) run again from the step it stopped at, as
    a new run; returns its id. Needs `run:start`."""
    origin = manager.get(actor, run_id)
    manager.authz.require(actor, "run:start")
    if origin.status not in RETRYABLE_STATUSES:
        raise Conflict(
            f"run {run_id!r} is {origin.status}; only a failed, cancelled or over-budget run "
            "can be retried"
        )
    head = manager.executor.checkpointer.get_tuple(_config(_thread_of(manager, origin)))
    if head is None:
        raise Conflict(f"run {run_id!r} stopped before its first step; start a new run instead")
    checkpoint_id = str(head.checkpoint["id"])
    return _fork(manager, actor, origin, checkpoint_id, {}, "retry", stream_tokens)


def fork_of(manager: RunManager, actor: Actor, run_id: str) -> ForkInfo | None:
    """The run's origin, when it was forked or retried from another run."""
    manager.get(actor, run_id)
    with manager.sessions() as session:
        row = session.scalars(
            select(RunFork).where(
                RunFork.run_id == run_id, RunFork.workspace_id == actor.workspace_id
            )
        ).first()
    if row is None:
        return None
    return ForkInfo(
        row.run_id,
        row.origin_run_id,
        row.checkpoint_id,
        row.step,
        row.kind,
        dict(row.edits or {}),
        row.created_by,
        row.created_at,
    )


def checked_edits(doc: GraphDocument, edits: Mapping[str, Any]) -> dict[str, Any]:
    """The edits, if each names one of the graph's state fields (not messages, not the
    studio's own fields) with a value of its type (or null); else a `UserError`."""
    fields = {f.name: f for f in doc.state if f.type != "messages"}
    unknown = sorted(set(edits) - set(fields))
    if unknown:
        raise UserError(
            f"cannot edit {', '.join(map(repr, unknown))}: a fork may change the graph's state "
            f"fields ({', '.join(sorted(fields)) or 'none'}), not messages or studio fields"
        )
    if len(canonical_json(dict(edits)).encode()) > MAX_EDIT_BYTES:
        raise UserError(f"the state edits are larger than {MAX_EDIT_BYTES:,} bytes")
    for name, value in edits.items():
        expected = _TYPES.get(fields[name].type)
        wrong_bool = isinstance(value, bool) and fields[name].type in ("number", "integer")
        if value is not None and expected and (wrong_bool or not isinstance(value, expected)):
            raise UserError(f"state field {name!r} must be a {fields[name].type}")
    return dict(edits)


# --- internals -----------------------------------------------------------------------------


def _fork(
    manager: RunManager,
    actor: Actor,
    origin: RunView,
    checkpoint_id: str,
    edits: Mapping[str, Any],
    kind: str,
    stream_tokens: bool,
) -> str:
    compiled = manager.executor.compiled(origin.version_id)
    checked = checked_edits(compiled.document, edits)
    saver = manager.executor.checkpointer
    chain = _history_to(saver, _thread_of(manager, origin), checkpoint_id, origin.run_id)
    head = chain[-1]
    state = compiled.graph.get_state(head.config)
    if not state.next and not state.tasks:
        raise Conflict(f"run {origin.run_id!r} ended at that checkpoint; pick an earlier step")
    run_id = str(uuid.uuid4())
    thread = f"run:{run_id}"
    _copy(saver, thread, chain)
    if checked:
        _put_edits(saver, thread, head, checked)
    step = int(head.metadata.get("step", -1))
    _store(manager, actor, origin, run_id, thread, checkpoint_id, step, kind, checked)
    manager.events.begin(run_id)
    manager.events.publish(
        actor.workspace_id,
        run_id,
        "run_status",
        data={"status": "queued", "origin_run_id": origin.run_id, "step": step, "kind": kind},
    )
    details = {"origin_run_id": origin.run_id, "step": step, "edited": sorted(checked)}
    manager.audit(actor, f"run.{'forked' if kind == 'fork' else 'retried'}", run_id, details)
    manager.submit(run_id, stream_tokens=stream_tokens)
    return run_id


def _thread_of(manager: RunManager, origin: RunView) -> str:
    with manager.sessions() as session:
        thread = session.scalar(select(Run.thread_id).where(Run.run_id == origin.run_id))
    if thread is None:
        raise NotFound(f"run {origin.run_id!r} not found")
    return thread


def _config(thread: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _history_to(
    saver: BaseCheckpointSaver[Any], thread: str, checkpoint_id: str, run_id: str
) -> list[CheckpointTuple]:
    """The checkpoints from the thread's first one to `checkpoint_id`, oldest first."""
    missing = NotFound(f"run {run_id!r} has no checkpoint {checkpoint_id!r}")
    if not isinstance(checkpoint_id, str) or not _CHECKPOINT_ID.match(checkpoint_id):
        raise missing
    chain: list[CheckpointTuple] = []
    found = saver.get_tuple(_config(thread, checkpoint_id))
    while found is not None:
        chain.append(found)
        parent = (found.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        found = saver.get_tuple(_config(thread, parent)) if parent else None
    if not chain:
        raise missing
    return chain[::-1]


def _copy(saver: BaseCheckpointSaver[Any], thread: str, chain: Sequence[CheckpointTuple]) -> None:
    """Write the checkpoints into `thread`, each with the writes its step made — except the
    last one's, so that the step after it runs again in the fork."""
    parent: str | None = None
    for index, item in enumerate(chain):
        saved = saver.put(_config(thread, parent), item.checkpoint, item.metadata, {})
        if index < len(chain) - 1:
            by_task: dict[str, list[tuple[str, Any]]] = defaultdict(list)
            for task_id, channel, value in item.pending_writes or []:
                by_task[task_id].append((channel, value))
            for task_id, writes in by_task.items():
                saver.put_writes(saved, writes, task_id)
        parent = str(item.checkpoint["id"])


def _put_edits(
    saver: BaseCheckpointSaver[Any],
    thread: str,
    head: CheckpointTuple,
    edits: Mapping[str, Any],
) -> None:
    """One more checkpoint after the copied head: its state with `edits` applied, at the
    same step and with the same tasks to run next."""
    step = int(head.metadata.get("step", -1))
    checkpoint = copy_checkpoint(head.checkpoint)
    versions = checkpoint["channel_versions"]
    version = saver.get_next_version(max(versions.values(), default=None), None)
    for name, value in edits.items():
        checkpoint["channel_values"][name] = value
        versions[name] = version
    checkpoint["id"] = str(uuid6(clock_seq=step))
    checkpoint["ts"] = datetime.now(UTC).isoformat()
    # LangGraph looks for the next tasks among the nodes the updated channels trigger: keep
    # the head's (its pending branch channels), or nothing would run
    checkpoint["updated_channels"] = sorted({*(checkpoint.get("updated_channels") or ()), *edits})
    metadata: Any = {"source": "update", "step": step, "parents": head.metadata.get("parents", {})}
    parent = _config(thread, str(head.checkpoint["id"]))
    saver.put(parent, checkpoint, metadata, dict.fromkeys(edits, version))


def _store(
    manager: RunManager,
    actor: Actor,
    origin: RunView,
    run_id: str,
    thread: str,
    checkpoint_id: str,
    step: int,
    kind: str,
    edits: dict[str, Any],
) -> None:
    """The new run's row (queued; `started_at` set, so the worker continues its thread
    instead of starting from the input) and its fork record, in one transaction."""
    now = datetime.now(UTC)
    with manager.sessions() as session:
        session.add(
            Run(
                run_id=run_id,
                workspace_id=actor.workspace_id,
                graph_id=origin.graph_id,
                version_id=origin.version_id,
                thread_id=thread,
                status="queued",
                started_by=actor.user_id,
                input=dict(origin.input),
                notify={},
                attempts=0,
                created_at=now,
                started_at=now,
            )
        )
        session.flush()  # the fork row refers to it
        session.add(
            RunFork(
                run_id=run_id,
                workspace_id=actor.workspace_id,
                origin_run_id=origin.run_id,
                checkpoint_id=checkpoint_id,
                step=step,
                kind=kind,
                edits=edits,
                created_by=actor.user_id,
                created_at=now,
            )
        )
        session.commit()
