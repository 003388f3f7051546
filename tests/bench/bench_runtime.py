"""Studio runtime vs raw LangGraph + SqliteSaver: the same 10-node graph, measured in one run.

    python -m tests.bench.bench_runtime [--runs N] [--warmup N] [--block N] [--write]
                                        [--no-stream-baseline]

Both sides run a line of 10 nodes; each node adds a short user prompt and makes one real call
to the offline `ScriptedChatModel` (one scripted text turn, with token usage). No tools, so
no approvals. Runs are sequential, on real SQLite files in a temporary folder.

- studio: a graph document of 10 `llm` nodes (provider `scripted`), run through
  `graphs.headless.open_runtime` (max_concurrency=1) with `RunManager.start_run` + `wait`,
  i.e. everything a headless run pays: run row, lease, streaming, events, final status.
- raw: a `StateGraph` with the same 10 nodes calling `ScriptedChatModel` with the same
  messages, compiled with `SqliteSaver` on a file, `invoke(..., durability="sync")`, a fresh
  thread id per run. This is the baseline of the goal (studio/raw <= 1.15 per run).
- raw+stream (context only): the same raw graph driven the way the studio drives a run
  nobody watches, `stream(..., stream_mode=["tasks", "values"], durability="sync")`. The gap
  raw -> raw+stream is LangGraph's streaming cost; raw+stream -> studio is the studio's own
  code (run row, lease, events, final status, the nodes' governance).
- studio+meter (context only, `--metered`): the studio side with the analytics meter, as the
  web studio runs graphs: every model call is priced and recorded in the database.

Sides alternate in blocks (default 5 runs, ~0.1 s) after a warm-up, so machine noise hits all
alike: this machine's speed drifts over seconds (the raw side's median moved between 13 and
18 ms from one run of the benchmark to the next), and with blocks of 20 runs (~0.3 s) the drift
moved studio/raw by ±3% between runs of the same code; with blocks of 5 and 400 runs a side,
by ±1% (tests/bench/RESULTS.md, 2026-11-27 09:00).
`--write` appends a section to tests/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from components.providers.scripted import ScriptedChatModel, ScriptStep
from graphs.headless import Runtime, checkpoint_path_for, open_runtime
from graphs.identity import Actor
from tests.bench import reporting

NODES = 10
SIDE_ORDER = ("raw", "raw+stream", "studio", "studio+meter")
GOAL = 1.15
COMMAND = "python -m tests.bench.bench_runtime"
RUN_INPUT = "Benchmark run: please work through the ten steps."


def _prompt(i: int) -> str:
    return f"Step {i}: summarize the previous steps in one short sentence."


def _answer(i: int) -> str:
    return f"Step {i} is done and everything before it looks fine."


# --- the two graphs ------------------------------------------------------------------
def studio_document() -> dict[str, Any]:
    ids = [f"n{i}" for i in range(1, NODES + 1)]
    nodes = [
        {
            "id": node_id,
            "type": "llm",
            "config": {
                "provider": "scripted",
                "prompt": _prompt(i),
                "provider_config": {"model": "scripted-1", "script": [{"text": _answer(i)}]},
            },
        }
        for i, node_id in enumerate(ids, start=1)
    ]
    edges = [{"source": a, "target": b} for a, b in pairwise(ids)]
    edges.append({"source": ids[-1], "target": "__end__"})
    return {
        "schema_version": 1,
        "name": "Bench line of ten",
        "description": "Ten scripted model calls in a line (benchmark).",
        "entry": ids[0],
        "nodes": nodes,
        "edges": edges,
    }


class RawState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]


def _raw_node(i: int) -> Any:
    model = ScriptedChatModel(model="scripted-1", script=[ScriptStep(text=_answer(i))])
    prompt = _prompt(i)

    def node(state: RawState) -> dict[str, Any]:
        new = HumanMessage(prompt)
        answer = model.invoke([*state.get("messages", []), new])
        return {"messages": [new, answer]}

    return node


def raw_graph(checkpointer: SqliteSaver) -> Any:
    builder = StateGraph(RawState)
    ids = [f"n{i}" for i in range(1, NODES + 1)]
    for i, node_id in enumerate(ids, start=1):
        builder.add_node(node_id, _raw_node(i))
    builder.add_edge(START, ids[0])
    for a, b in pairwise(ids):
        builder.add_edge(a, b)
    builder.add_edge(ids[-1], END)
    return builder.compile(checkpointer=checkpointer)


# --- sides ---------------------------------------------------------------------------
@dataclass
class Side:
    name: str
    run_once: Callable[[], str]  # returns the thread id it wrote
    checkpoint_file: Path
    times: list[float] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)

    def timed(self, record: bool) -> None:
        start = time.perf_counter()
        thread_id = self.run_once()
        elapsed = time.perf_counter() - start
        if record:
            self.times.append(elapsed)
            self.threads.append(thread_id)


def studio_side(rt: Runtime, db: Path, name: str = "studio") -> Side:
    actor = Actor("local", "bench")
    manager = rt.manager
    version = manager.library.create(actor, studio_document())

    def run_once() -> str:
        run_id = manager.start_run(
            actor, version_id=version.version_id, input={"messages": [RUN_INPUT]}
        )
        view = manager.wait(actor, run_id, timeout_s=60)
        if view.status != "succeeded":
            raise SystemExit(f"studio run {run_id} ended {view.status}: {view.error}")
        return f"run:{run_id}"

    return Side(name, run_once, checkpoint_path_for(db))


def raw_side(folder: Path, *, stream: bool) -> tuple[Side, sqlite3.Connection]:
    path = folder / "raw-checkpoints.db"
    conn = sqlite3.connect(str(path), check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    graph = raw_graph(saver)

    def run_once() -> str:
        thread_id = str(uuid.uuid4())
        cfg = {"configurable": {"thread_id": thread_id}}
        inp = {"messages": [HumanMessage(RUN_INPUT)]}
        if stream:
            for _ in graph.stream(inp, cfg, durability="sync", stream_mode=["tasks", "values"]):
                pass
            return thread_id
        out = graph.invoke(inp, cfg, durability="sync")
        if len(out["messages"]) != 1 + 2 * NODES:
            raise SystemExit(f"raw run wrote {len(out['messages'])} messages")
        return thread_id

    return Side("raw+stream" if stream else "raw", run_once, path), conn


# --- measurement ---------------------------------------------------------------------
def checkpoint_counts(side: Side) -> tuple[float, float, float]:
    """Mean checkpoints, checkpoint writes and stored KB per measured run of a side."""
    conn = sqlite3.connect(f"file:{side.checkpoint_file}?mode=ro", uri=True)
    try:
        checkpoints = writes = size = 0
        for thread_id in side.threads:
            count, blob = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) "
                "FROM checkpoints WHERE thread_id = ?",
                (thread_id,),
            ).fetchone()
            checkpoints += count
            size += blob
            count, blob = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(value)), 0) FROM writes WHERE thread_id = ?",
                (thread_id,),
            ).fetchone()
            writes += count
            size += blob
    finally:
        conn.close()
    n = max(len(side.threads), 1)
    return checkpoints / n, writes / n, size / n / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Stats:
    name: str
    median_ms: float
    p95_ms: float
    mean_ms: float
    runs_per_s: float
    checkpoints: float
    writes: float
    kb: float


def stats(side: Side) -> Stats:
    times = side.times
    checkpoints, writes, kb = checkpoint_counts(side)
    return Stats(
        side.name,
        statistics.median(times) * 1000,
        percentile(times, 0.95) * 1000,
        statistics.fmean(times) * 1000,
        len(times) / sum(times),
        checkpoints,
        writes,
        kb,
    )


def measure(sides: list[Side], runs: int, warmup: int, block: int) -> None:
    for side in sides:
        for _ in range(warmup):
            side.timed(record=False)
    done = 0
    while done < runs:
        size = min(block, runs - done)
        for side in sides:
            for _ in range(size):
                side.timed(record=True)
        done += size


def machine() -> str:
    return reporting.machine(("langgraph", "langgraph-checkpoint-sqlite"), sqlite=True)


def table(rows: list[Stats], raw: Stats) -> str:
    lines = [
        "| side | median ms/run | p95 ms/run | mean ms/run | runs/s | median vs raw "
        "| mean vs raw | checkpoints/run | checkpoint writes/run | checkpoint KB/run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        lines.append(
            f"| {s.name} | {s.median_ms:.2f} | {s.p95_ms:.2f} | {s.mean_ms:.2f} "
            f"| {s.runs_per_s:.1f} | {s.median_ms / raw.median_ms:.3f}x "
            f"| {s.mean_ms / raw.mean_ms:.3f}x | {s.checkpoints:.1f} | {s.writes:.1f} "
            f"| {s.kb:.1f} |"
        )
    return "\n".join(lines)


def report(rows: list[Stats], args: argparse.Namespace, elapsed_s: float) -> str:
    by_name = {s.name: s for s in rows}
    raw, studio = by_name["raw"], by_name["studio"]
    ratio_median = studio.median_ms / raw.median_ms
    ratio_mean = studio.mean_ms / raw.mean_ms
    verdict = "meets" if max(ratio_median, ratio_mean) <= GOAL else "MISSES"
    per_step = (studio.median_ms - raw.median_ms) / NODES
    flags = "".join(
        f" --{name}"
        for name in ("metered", "no-stream-baseline")
        if getattr(args, name.replace("-", "_"))
    )
    lines = [
        f"Command: `{COMMAND} --runs {args.runs} --warmup {args.warmup} --block {args.block}"
        f"{flags}`  ",
        f"Machine: {machine()}  ",
        f"Workload: {NODES} `llm` nodes in a line, scripted model, one text turn each; "
        f"{args.runs} measured runs per side after {args.warmup} warm-up runs, sides "
        f"alternating in blocks of {args.block}; whole benchmark {elapsed_s:.0f} s.",
        "",
        table(rows, raw),
        "",
        f"**studio / raw: {ratio_median:.3f}x (medians), {ratio_mean:.3f}x (means)** — "
        f"goal ≤ {GOAL}x: {verdict}. Extra per step (median): {per_step:.2f} ms.",
    ]
    if "raw+stream" in by_name:
        rs = by_name["raw+stream"]
        lines.append(
            f"Of the gap, LangGraph streaming (`stream_mode=[tasks, values]` instead of "
            f"`invoke`) accounts for {rs.median_ms - raw.median_ms:.2f} ms/run; the studio's "
            f"own code for {studio.median_ms - rs.median_ms:.2f} ms/run (medians)."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=400, help="measured runs per side")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured runs per side")
    parser.add_argument("--block", type=int, default=5, help="runs per side per block")
    parser.add_argument(
        "--no-stream-baseline", action="store_true", help="skip the raw+stream context side"
    )
    parser.add_argument(
        "--metered",
        action="store_true",
        help="also run the studio with the analytics meter, as the web studio does (every "
        "model call priced and recorded; a context row, not the goal)",
    )
    parser.add_argument("--write", action="store_true", help="append to tests/bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.block < 1:
        parser.error("--runs and --block must be positive, --warmup not negative")

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        folder = Path(tmp)
        db = folder / "studio" / "studio.db"
        (folder / "raw").mkdir()
        (folder / "raw-stream").mkdir()
        with ExitStack() as stack:
            rt = stack.enter_context(open_runtime(db, max_concurrency=1))
            studio = studio_side(rt, db)
            raw, raw_conn = raw_side(folder / "raw", stream=False)
            stack.callback(raw_conn.close)
            sides = [studio, raw]
            if not args.no_stream_baseline:
                raw_stream, stream_conn = raw_side(folder / "raw-stream", stream=True)
                stack.callback(stream_conn.close)
                sides.append(raw_stream)
            if args.metered:
                from analytics.meter import open_meter

                mdb = folder / "metered" / "studio.db"
                mrt = stack.enter_context(open_runtime(mdb, max_concurrency=1, meter=open_meter))
                sides.append(studio_side(mrt, mdb, "studio+meter"))
            gc.collect()
            measure(sides, args.runs, args.warmup, args.block)
            order = sorted(sides, key=lambda side: SIDE_ORDER.index(side.name))
            rows = [stats(side) for side in order]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"## Runtime vs raw LangGraph — {stamp}\n\n"
    section += report(rows, args, time.perf_counter() - began)
    print(section)
    if args.write:
        reporting.append_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
