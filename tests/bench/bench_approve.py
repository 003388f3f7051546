"""Approve -> run resumed: how long a decision takes to set a paused run moving again.

    python -m tests.bench.bench_approve [--runs N] [--nodes N] [--write]

Studio side: a real studio (SQLite files in a temporary folder) serves the API under `/api`
on a real uvicorn server on loopback (the same set-up as `bench_sse`). The graph is a human
approval gate followed by `--nodes` scripted model calls. `--runs` runs are started and
left waiting at the gate; then each is approved in turn through
`POST /api/approvals/{id}/decision`, and the next decision is sent once the run has
finished (an idle server: the figure is the path's own latency, not queueing). Measured from
the moment the client sends the request (same process, same clock as the server's event
timestamps):

- response: until the API answered (the decision is committed);
- resumed: until the run's worker re-entered the gate node (its `node_started` event: the
  checkpoint was read, the decision found and LangGraph resumed the thread);
- next step: until the first node after the gate started.

Baseline, measured in the same run: raw LangGraph with `SqliteSaver` on a file, the same
gate (`interrupt()`) and nodes, `durability="sync"`; a thread paused at the gate is resumed
with `stream(Command(resume=...), stream_mode="tasks")`, timed until the gate's task starts
and until the next node's task starts. The raw side has no HTTP, no decision row and no
worker hand-off, so the ratio is what the studio's whole path costs over LangGraph's resume.

`--write` appends a section to tests/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Command, interrupt

from components.providers.scripted import ScriptedChatModel, ScriptStep
from tests.bench import reporting
from tests.bench.bench_sse import WAIT_S, Bench, bench_server

COMMAND = "python -m tests.bench.bench_approve"
GOAL_MS = 50.0


@dataclass
class Timings:
    """Seconds from sending the decision (or the resume) to each point, one entry per run."""

    response: list[float] = field(default_factory=list)
    resumed: list[float] = field(default_factory=list)
    next_step: list[float] = field(default_factory=list)


# --- the studio side ------------------------------------------------------------------------
def _at(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _approval_id(bench: Bench, run_id: str) -> str:
    [gate] = bench.studio.manager.approvals.list(bench.actor, run_id=run_id)
    return gate.approval_id


def studio_side(bench: Bench, runs: int) -> Timings:
    waiting = [bench.start_waiting_run() for _ in range(runs)]
    gates = {run_id: _approval_id(bench, run_id) for run_id in waiting}
    out = Timings()
    for run_id in waiting:
        path = f"/approvals/{gates[run_id]}/decision"
        sent = time.time()
        response = bench.http.post(path, json={"decision": "approve"}, headers=bench.headers)
        answered = time.time()
        response.raise_for_status()
        view = bench.studio.manager.wait(bench.actor, run_id, timeout_s=WAIT_S)
        if view.status != "succeeded":
            raise SystemExit(f"run {run_id} ended {view.status}: {view.error}")
        resumed, next_step = _resume_points(bench, run_id)
        out.response.append(answered - sent)
        out.resumed.append(resumed - sent)
        out.next_step.append(next_step - sent)
    return out


def _resume_points(bench: Bench, run_id: str) -> tuple[float, float]:
    """When the gate node started again after the decision, and when the next node started."""
    bench.studio.manager.events.flush()
    history = bench.studio.manager.events.history(bench.actor.workspace_id, run_id)
    decided = next(e.seq for e in history if e.kind == "approval_decided")
    starts = [e for e in history if e.kind == "node_started" and e.seq > decided]
    gate = next(e for e in starts if e.node_id == "gate")
    after = next(e for e in starts if e.node_id != "gate")
    return _at(gate.at), _at(after.at)


# --- the raw LangGraph side -----------------------------------------------------------------
class RawState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]


def _gate(_state: RawState) -> dict[str, Any]:
    interrupt({"action": "Start the line?"})
    return {}


def _llm(i: int) -> Any:
    model = ScriptedChatModel(
        model="scripted-1",
        script=[ScriptStep(text=f"Step {i} is done and the next one may start.")],
    )
    prompt = f"Step {i}: say something short."

    def node(state: RawState) -> dict[str, Any]:
        new = HumanMessage(prompt)
        return {"messages": [new, model.invoke([*state.get("messages", []), new])]}

    return node


def raw_side(folder: Path, runs: int, nodes: int) -> Timings:
    conn = sqlite3.connect(str(folder / "raw-checkpoints.db"), check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    builder = StateGraph(RawState)
    builder.add_node("gate", _gate)
    ids = [f"n{i}" for i in range(1, nodes + 1)]
    for i, node_id in enumerate(ids, start=1):
        builder.add_node(node_id, _llm(i))
    for a, b in pairwise([START, "gate", *ids, END]):
        builder.add_edge(a, b)
    graph = builder.compile(checkpointer=saver)
    threads = []
    for _ in range(runs):
        cfg: Any = {"configurable": {"thread_id": str(uuid.uuid4())}}
        graph.invoke({"messages": [HumanMessage("go")]}, cfg, durability="sync")
        threads.append(cfg)
    out = Timings()
    try:
        for cfg in threads:
            sent = time.time()
            gate_at = next_at = None
            parts = graph.stream(
                Command(resume={"decision": "approve"}), cfg, durability="sync", stream_mode="tasks"
            )
            for task in parts:
                if "triggers" not in task:
                    continue
                if task["name"] == "gate" and gate_at is None:
                    gate_at = time.time()
                elif task["name"] != "gate" and next_at is None:
                    next_at = time.time()
            if gate_at is None or next_at is None:
                raise SystemExit("the raw graph did not resume through the gate")
            out.resumed.append(gate_at - sent)
            out.next_step.append(next_at - sent)
    finally:
        conn.close()
    return out


# --- report ---------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _cells(label: str, values: list[float], base: list[float] | None) -> list[str]:
    ms = 1000.0
    p50, p95 = statistics.median(values), _pct(values, 0.95)
    ratio = (
        [f"{p50 / statistics.median(base):.2f}x", f"{p95 / _pct(base, 0.95):.2f}x"]
        if base
        else ["", ""]
    )
    return [label, f"{p50 * ms:.2f}", f"{p95 * ms:.2f}", f"{max(values) * ms:.2f}", *ratio]


def report(studio: Timings, raw: Timings, args: argparse.Namespace, elapsed_s: float) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        _cells("studio: decision answered (HTTP)", studio.response, None),
        _cells("studio: run resumed (gate re-entered)", studio.resumed, raw.resumed),
        _cells("studio: next node started", studio.next_step, raw.next_step),
        _cells("raw LangGraph: run resumed", raw.resumed, None),
        _cells("raw LangGraph: next node started", raw.next_step, None),
    ]
    p95 = _pct(studio.resumed, 0.95) * 1000
    verdict = "meets" if p95 < GOAL_MS else "MISSES"
    table = reporting.markdown_table(
        [
            "measured from sending the decision",
            "p50 ms",
            "p95 ms",
            "max ms",
            "p50 vs raw",
            "p95 vs raw",
        ],
        "|---|---:|---:|---:|---:|---:|",
        rows,
    )
    machine = reporting.machine(("langgraph", "uvicorn", "httpx"), sqlite=True)
    lines = [
        f"## Approve -> run resumed — {now}",
        "",
        f"Command: `{COMMAND} --runs {args.runs} --nodes {args.nodes}`  ",
        f"Machine: {machine}  ",
        f"Workload: {args.runs} runs of a human-approval gate + {args.nodes} scripted `llm` "
        "nodes, all paused at the gate, then approved one at a time through the REST API on "
        "uvicorn (loopback), each after the previous run finished; raw LangGraph (SqliteSaver "
        'file, `durability="sync"`) resumes as many paused threads in the same run; whole '
        f"benchmark {elapsed_s:.0f} s.",
        "",
        table,
        "",
        f"**approve -> run resumed: p95 {p95:.1f} ms** — goal < {GOAL_MS:.0f} ms: {verdict}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="append to tests/bench/RESULTS.md")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raw = raw_side(folder, args.runs, args.nodes)
        with bench_server(folder / "studio", args.nodes) as bench:
            studio = studio_side(bench, args.runs)
    section = report(studio, raw, args, time.perf_counter() - began)
    print(section)
    if args.write:
        reporting.append_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
