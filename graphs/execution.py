"""Drives one run through LangGraph: claim the lease, stream, record, settle.

Each pass either finishes the run, leaves it waiting for a person (approval rows written
after the interrupt is checkpointed), or stops because it was cancelled. The same pass
serves a first start, a resume after a decision and a recovery after a crash: what to do is
read from the checkpoint, never from memory.
"""

from __future__ import annotations

__all__ = ["Executor", "enqueue_notifications"]

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.store.sqlite import SqliteStore
from langgraph.types import Command, StreamMode
from pydantic import ValidationError
from sqlalchemy import Table, bindparam, or_, update
from sqlalchemy.orm import Session

from components.base import HttpPolicy, Meter, NoMeter, RunContext, SecretResolver, Tier
from components.errors import BudgetExceeded, StudioError, UserError
from components.gates import canonical_json
from components.sqlwrites import DriverStatement
from graphs.compiler import OUTPUT_KEY, CompiledGraph, compile_document
from graphs.db import affected, checkpoint_connection, open_checkpointer
from graphs.failpoints import failpoint
from graphs.governance import NoOutbox
from graphs.identity import Actor, no_redaction
from graphs.ledger import EffectLedger
from graphs.outbox import SqlOutbox, enqueue_webhook
from graphs.spec import GraphDocument
from graphs.tables import GraphVersion, Run

if TYPE_CHECKING:
    from graphs.runs import RunManager

log = logging.getLogger(__name__)

_RUNS = cast(Table, Run.__table__)
_FINISH = (  # prebuilt: the ORM statement cost ~2 ms per run to build and compile
    update(_RUNS)
    .where(
        _RUNS.c.run_id == bindparam("p_run_id"),
        or_(_RUNS.c.status == "queued", _RUNS.c.status == "running"),  # no expanding IN
    )
    .values(
        status=bindparam("p_status"),
        output=bindparam("p_output"),
        error=bindparam("p_error"),
        attempts=0,
        finished_at=bindparam("p_finished_at"),
        lease_owner=None,
        lease_expires_at=None,
    )
)
# The final row as waiters see it (RunView's fields), returned by the UPDATE: no re-read.
_FINAL_COLUMNS = [
    _RUNS.c[name]
    for name in (
        "run_id",
        "graph_id",
        "version_id",
        "status",
        "started_by",
        "input",
        "output",
        "error",
        "created_at",
        "finished_at",
    )
]


class Executor:
    def __init__(
        self,
        manager: RunManager,
        checkpoint_path: Path,
        *,
        secrets: Callable[[str], SecretResolver],
        http: HttpPolicy,
        tier_floor: Callable[[str, str], Tier],
        meter: Meter | None = None,
    ) -> None:
        self.m = manager
        self.meter: Meter = meter or NoMeter()
        self._numbers: dict[str, int] = {}  # version id → version number (usage records)
        redact = None if manager.redact is no_redaction else manager.redact
        self.checkpointer = open_checkpointer(checkpoint_path, redact)
        store_path = checkpoint_path.with_name(checkpoint_path.stem + "-store.db")
        self._store_conn = checkpoint_connection(store_path, autocommit=True)
        self.store = SqliteStore(self._store_conn)
        self.store.setup()
        self.ledger = EffectLedger(manager.sessions)
        self.secrets = secrets
        self.http = http
        self.tier_floor = tier_floor
        self._compiled: dict[str, CompiledGraph] = {}
        self._settled_here: set[str] = set()  # runs whose settling UPDATE dropped our lease
        self._models: dict[tuple[str, str], Any] = {}  # reusable (secret-free) models
        self._model_of_config: dict[int, tuple[str, Mapping[str, Any], Any]] = {}
        self._compile_lock = threading.Lock()
        dialect = manager.engine.dialect
        returning = _FINAL_COLUMNS if dialect.update_returning else ()  # SQLite >= 3.35, PG
        self._finish_run = DriverStatement(
            _FINISH.returning(*returning) if returning else _FINISH, dialect, returning=returning
        )

    def close(self) -> None:
        self.checkpointer.conn.close()
        self._store_conn.close()
        self.meter.close()

    # --- compilation -----------------------------------------------------------------
    def compiled(self, version_id: str) -> CompiledGraph:
        with self._compile_lock:
            if version_id not in self._compiled:
                with self.m.sessions() as session:
                    row = session.get(GraphVersion, version_id)
                    assert row is not None
                    doc = GraphDocument.model_validate(row.document)
                    self._numbers[version_id] = row.number
                self._compiled[version_id] = compile_document(
                    doc,
                    self.m.registry,
                    self.ledger,
                    checkpointer=self.checkpointer,
                    store=self.store,
                )
            return self._compiled[version_id]

    def arg_validator(self, version_id: str) -> Callable[[str, Mapping[str, Any]], dict[str, Any]]:
        tools = self.compiled(version_id).tools

        def validate(action: str, args: Mapping[str, Any]) -> dict[str, Any]:
            tool = tools.get(action)
            if tool is None:
                raise UserError(f"{action!r} is not a tool; its arguments cannot be edited")
            try:
                return tool.args_model.model_validate(dict(args)).model_dump(mode="json")
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise UserError(
                    f"edited arguments for {action!r}: {where}: {first['msg']}"
                ) from None

        return validate

    def _context(self, run: Run) -> RunContext:
        registry = self.m.registry
        secrets = self.secrets(run.workspace_id)
        workspace, floor = run.workspace_id, self.tier_floor
        starter = Actor(run.workspace_id, run.started_by)

        def models(provider: str, config: Mapping[str, Any]) -> Any:
            spec = registry.providers.get(provider)
            if spec is None:
                raise UserError(
                    f"unknown model provider {provider!r}; use one of "
                    f"{', '.join(sorted(registry.providers))}"
                )
            if not spec.reusable:
                return spec.build(spec.config_model.model_validate(dict(config)), secrets)
            seen = self._model_of_config.get(id(config))  # the same (untemplated) config
            if seen is not None and seen[0] == provider and seen[1] is config:
                return seen[2]
            key = (provider, canonical_json(config))
            model = self._models.get(key)
            if model is None:
                model = spec.build(spec.config_model.model_validate(dict(config)), secrets)
                if len(self._models) >= 256:
                    self._models.clear()
                self._models[key] = model
            if len(self._model_of_config) >= 256:
                self._model_of_config.clear()
            self._model_of_config[id(config)] = (provider, config, model)  # alive: ids unique
            return model

        return RunContext(
            workspace_id=run.workspace_id,
            run_id=run.run_id,
            user_id=run.started_by,
            secrets=secrets,
            outbox=NoOutbox(),
            approvals=self.m.approvals,
            http=self.http,
            models=models,
            tier_floor=lambda tool: floor(workspace, tool),
            starter_may_act=lambda: self.m.authz.require(starter, "run:start"),
            graph_id=run.graph_id,
            graph_version=self._numbers.get(run.version_id, 0),
            meter=self.meter,
        )

    # --- one pass over a run ---------------------------------------------------------
    def drive(
        self,
        run_id: str,
        cancel: threading.Event,
        fresh: Run | None = None,
        leased: bool = False,
    ) -> bool:
        """One pass; True when the run should get another pass at once.

        `fresh` is the caller's copy of a run it has just stored: used as is when it was
        stored under our lease (`leased`) or the claim shows nobody has claimed it yet,
        which saves reading the row back (and, for the first, the claim)."""
        first = False
        if fresh is not None and (leased or self.m.leases.claim_unstarted(run_id)):
            run, recovering, first = fresh, False, True
        else:
            with self.m.sessions() as session:
                found = session.get(Run, run_id)
            if found is None or found.status not in ("queued", "running"):
                return False
            run, recovering = found, found.status == "running"
            if not self.m.leases.claim(run, recovering=recovering):
                return False
        try:
            # cancelled before this pass began (a new run is stored running before its
            # worker picks it up)
            if cancel.is_set():
                return False
            if recovering and run.attempts + 1 > self.m.max_crash_attempts:
                self._finish(
                    run,
                    "failed",
                    error=(
                        f"the worker stopped {run.attempts + 1} times while running this run; "
                        "it was given up"
                    ),
                )
                return False
            return self._pass(run, cancel, first=first or run.started_at is None)
        except Exception as exc:
            self._fail(run, exc)
            return False
        finally:
            self.m.leases.release(run_id, still_held=run_id not in self._settled_here)
            self._settled_here.discard(run_id)

    def _pass(self, run: Run, cancel: threading.Event, *, first: bool) -> bool:
        """One pass over the run's graph; `first`: its first ever, so no checkpoint exists."""
        compiled = self.compiled(run.version_id)
        cfg: RunnableConfig = {
            "configurable": {"thread_id": run.thread_id},
            "recursion_limit": compiled.recursion_limit,
        }
        if first:
            graph_input: Any = _initial_state(compiled.document, run.input)
        else:
            state = compiled.graph.get_state(cfg)
            live = _live_interrupts(state)
            if live:
                resume = self._decided(live)
                if not resume:
                    return self._wait_for_people(run, live)
                graph_input = Command(resume=resume)
            elif state.created_at is None:
                graph_input = _initial_state(compiled.document, run.input)
            elif state.next or state.tasks:  # tasks with saved writes are not in `next`
                graph_input = None
            else:
                self._succeed(run, state.values)
                return False
        self.m.events.publish(
            run.workspace_id, run.run_id, "run_status", data={"status": "running"}
        )
        seen = self._stream(compiled, run, cfg, graph_input, cancel)
        if seen is None:
            return False
        if seen.clean and seen.output is not None:  # ended at an output node: no read needed
            self._finish(run, "succeeded", output=seen.output)
            return False
        if seen.clean and seen.values is not None:  # ended: its last values are the final state
            self._succeed(run, seen.values)
            return False
        state = compiled.graph.get_state(cfg)
        live = _live_interrupts(state)
        if live:
            failpoint("approval.after_interrupt")
            return self._wait_for_people(run, live)
        if not state.next and not state.tasks:
            self._succeed(run, state.values)
        return False

    def _stream(
        self,
        compiled: CompiledGraph,
        run: Run,
        cfg: RunnableConfig,
        graph_input: Any,
        cancel: threading.Event,
    ) -> _Seen | None:
        """Stream one pass; None when it stopped because the run was cancelled."""
        seen = _Seen()
        publish = self.m.events.publish
        ws, rid = run.workspace_id, run.run_id
        modes: list[StreamMode] = ["tasks", "values"]
        if self.m.wants_tokens(rid):
            modes.append("messages")
        parts: Iterator[Any] = compiled.graph.stream(
            graph_input, cfg, context=self._context(run), durability="sync", stream_mode=modes
        )
        for mode, chunk in parts:
            if mode == "values":  # the state after each step (no copy): saves a final read
                seen.values = chunk
            elif mode == "messages":
                message, meta = chunk
                if isinstance(message, AIMessageChunk) and message.content:
                    publish(ws, rid, "token", meta.get("langgraph_node"), {"text": message.text})
            else:
                _task_event(publish, ws, rid, chunk, seen)
            if cancel.is_set():
                return None
        return seen

    def _decided(self, live: list[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
        resume = {}
        for interrupt_id, payload in live:
            if self.m.approvals.decision_for(str(payload["approval_id"])) is not None:
                resume[interrupt_id] = {"approval_id": payload["approval_id"]}
        return resume

    def _wait_for_people(self, run: Run, live: list[tuple[str, Mapping[str, Any]]]) -> bool:
        with self.m.sessions() as session:
            current = session.get(Run, run.run_id)
            assert current is not None
            new_ids = self.m.approvals.record_interrupts(session, current, live)
            session.commit()
        failpoint("approval.after_row")
        if self._decided(live):  # decided while we were writing: go on at once
            return True
        changed = self._set_status(
            run, "waiting_approval", attempts=0, lease_owner=None, lease_expires_at=None
        )
        if changed:
            for approval_id in new_ids:
                self.m.events.publish(
                    run.workspace_id,
                    run.run_id,
                    "approval_requested",
                    data={"approval_id": approval_id},
                )
            self.m.events.publish(
                run.workspace_id, run.run_id, "run_status", data={"status": "waiting_approval"}
            )
        return False

    def _succeed(self, run: Run, values: Mapping[str, Any]) -> None:
        output = values.get(OUTPUT_KEY)
        if output is None:
            output = _fallback_output(values)
        self._finish(run, "succeeded", output=output)

    def _fail(self, run: Run, exc: BaseException) -> None:
        if isinstance(exc, GraphRecursionError):
            message = "the run reached its step limit (policies.max_steps)"
        elif isinstance(exc, StudioError):
            message = str(exc)
        else:
            log.error("run %s failed", run.run_id, exc_info=exc)
            message = f"internal error ({type(exc).__name__}); see the server log"
        status = "budget_exceeded" if isinstance(exc, BudgetExceeded) else "failed"
        self._finish(run, status, error=self.m.redact(message))

    def _finish(
        self, run: Run, status: str, *, output: Any = None, error: str | None = None
    ) -> None:
        params = {
            "p_run_id": run.run_id,
            "p_status": status,
            "p_output": output,
            "p_error": error,
            "p_finished_at": datetime.now(UTC),
        }
        row = None
        with self.m.run_writes.begin() as conn:  # no ORM session to set up, no pool
            changed, row = self._finish_run.execute(conn, params)
            if changed and run.notify:
                with Session(bind=conn) as session:  # joins the transaction, never commits it
                    enqueue_notifications(session, run, status)
                    session.flush()
        if row is not None:
            self.m.note_final(row)
        if changed:
            self._settled_here.add(run.run_id)
        if changed:
            data = {"status": status, **({"error": error} if error else {})}
            self.m.events.publish(run.workspace_id, run.run_id, "run_status", data=data)

    def _set_status(self, run: Run, status: str, **values: Any) -> bool:
        with self.m.sessions() as session:
            changed = affected(
                session,
                update(Run)
                .where(Run.run_id == run.run_id, Run.status.in_(("queued", "running")))
                .values(status=status, **values),
            )
            session.commit()
        if changed and values.get("lease_owner", "kept") is None:
            self._settled_here.add(run.run_id)
        return bool(changed)


def _live_interrupts(state: Any) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (i.id, i.value)
        for task in state.tasks
        for i in task.interrupts
        if isinstance(i.value, Mapping) and "approval_id" in i.value
    ]


def _initial_state(doc: GraphDocument, values: Mapping[str, Any]) -> dict[str, Any]:
    state = {f.name: f.default for f in doc.state if f.default is not None}
    state.update({k: v for k, v in values.items() if k != "messages"})
    messages = values.get("messages")
    if isinstance(messages, str):
        messages = [messages]
    if messages:
        state["messages"] = [HumanMessage(str(m)) for m in messages]
    return state


def _fallback_output(values: Mapping[str, Any]) -> dict[str, Any]:
    messages = values.get("messages") or []
    last = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    return {"answer": last.text} if last is not None else {}


@dataclass(slots=True)
class _Seen:
    """What one pass's task events showed: open tasks, whether any paused or failed, the
    run output an output node wrote, and the state after the last step."""

    started: dict[str, float] = field(default_factory=dict)
    troubled: bool = False
    output: Any = None
    values: Any = None

    @property
    def clean(self) -> bool:
        return not self.troubled and not self.started


def _task_event(publish: Any, ws: str, rid: str, chunk: Mapping[str, Any], seen: _Seen) -> None:
    name, task_id = chunk.get("name"), chunk.get("id", "")
    if "triggers" in chunk:
        seen.started[task_id] = time.perf_counter()
        publish(ws, rid, "node_started", name, {"task": task_id})
        return
    elapsed = time.perf_counter() - seen.started.pop(task_id, time.perf_counter())
    data: dict[str, Any] = {"task": task_id, "ms": round(elapsed * 1000, 3)}
    if chunk.get("error"):
        data["error"] = str(chunk["error"])[:500]
        seen.troubled = True
    if chunk.get("interrupts"):
        data["paused"] = True
        seen.troubled = True
    result = chunk.get("result")
    if isinstance(result, Mapping) and result.get(OUTPUT_KEY) is not None:
        seen.output = result[OUTPUT_KEY]
    usage = _usage(chunk.get("result") or [])
    if usage:
        data.update(usage)
    publish(ws, rid, "node_finished", name, data)


def _usage(writes: Any) -> dict[str, Any]:
    """Token usage and model of the AI messages a node wrote (missing stays missing)."""
    pairs = list(writes.items()) if isinstance(writes, Mapping) else list(writes or [])
    for channel, value in pairs:
        if channel != "messages":
            continue
        for message in value if isinstance(value, list) else [value]:
            if isinstance(message, AIMessage):
                usage = message.usage_metadata
                return {
                    "model": message.response_metadata.get("model_name"),
                    "input_tokens": usage["input_tokens"] if usage else None,
                    "output_tokens": usage["output_tokens"] if usage else None,
                    "tool_calls": [c["name"] for c in message.tool_calls],
                    **_cost(message),
                }
    return {}


def _cost(message: AIMessage) -> dict[str, Any]:
    """What the run's meter said the answer cost (cost_usd None: unknown or unmetered)."""
    metered = message.response_metadata.get("studio_usage")
    return {"cost": metered} if isinstance(metered, Mapping) else {}


def enqueue_notifications(session: Any, run: Run, status: str) -> None:
    """Queue the run's end-of-run notices in the caller's transaction (once per run).

    Targets were checked when the run started; should one still be refused, the run ends
    anyway and the refusal is logged.
    """
    try:
        _enqueue_notifications(session, run, status)
    except StudioError:
        log.exception("run %s: could not queue its notification", run.run_id)


def _enqueue_notifications(session: Any, run: Run, status: str) -> None:
    notify = run.notify or {}
    payload = {"run_id": run.run_id, "status": status, "graph_id": run.graph_id}
    key = f"notify_{run.run_id}"
    if notify.get("webhook"):
        enqueue_webhook(
            session,
            workspace_id=run.workspace_id,
            run_id=run.run_id,
            url=notify["webhook"],
            payload=payload,
            idempotency_key=key,
        )
    if notify.get("email"):
        SqlOutbox(session, workspace_id=run.workspace_id, run_id=run.run_id).enqueue_email(
            to=notify["email"],
            subject=f"Run {run.run_id} {status}",
            body=f"Run {run.run_id} of graph {run.graph_id} ended: {status}.",
            idempotency_key=key + "_email",
        )
