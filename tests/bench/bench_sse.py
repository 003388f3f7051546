"""Server-Sent Events fan-out: many clients on one run, each must get every event.

    python -m tests.bench.bench_sse [--clients N] [--nodes N] [--repeat N] [--write]

A real studio (SQLite files in a temporary folder) serves the API mounted at `/api` on a
real uvicorn server on loopback, with production SSE settings. The graph is a human
approval gate followed by `--nodes` scripted model calls in a line, so listeners connect
while the run waits and every later event is live. The clients live in another process
(asyncio + httpx), so their parsing does not share the server's GIL.

Per round (`--repeat` rounds, sides in turn): a run with no listener, with one, and with
`--clients`. Measured:

- run time: from the server's `approval_decided` event to its final `run_status` event
  (what listeners cost the run itself), and the ratio to the same run with no listener;
- server CPU (this process: run worker, pumps, uvicorn) per run;
- fan-out latency: client receipt time minus the event's publish time, over every live event
  of every client (p50 / p95 / max);
- connect time: until each client has its first line; peak threads of the server;
- correctness: each client's event ids must equal the stored events 1..N, none missing, none
  twice; after the streams end, no stream, pump thread or subscription is left.

`--write` appends a section to tests/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from auth.actions import ACTIONS
from graphs.identity import Actor
from studio.api import build_api
from studio.context import Studio, open_studio
from studio.settings import Settings
from tests.bench import reporting
from tests.studio.api.support import LiveServer, SseEvent, asse_items, gated_line_document, mounted

RESULTS = Path(__file__).with_name("RESULTS.md")
COMMAND = "python -m tests.bench.bench_sse"
WORKSPACE = "bench"
WAIT_S = 120.0

Received = tuple[int, str, str, float]  # (seq, kind, published at ISO, received at epoch s)


# --- the clients (a child process) ------------------------------------------------------------
async def _listen(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], ready: asyncio.Event
) -> tuple[float, list[Received]]:
    began = time.perf_counter()
    connect_s = -1.0
    got: list[Received] = []
    async with client.stream("GET", path, headers=headers) as response:
        response.raise_for_status()
        async for item in asse_items(response.aiter_lines()):
            if connect_s < 0:
                connect_s = time.perf_counter() - began
                ready.set()
            if isinstance(item, SseEvent) and item.id is not None:
                body = item.json
                got.append((item.seq, item.event, body["at"], time.time()))
        if connect_s < 0:
            connect_s = time.perf_counter() - began
    return connect_s, got


async def _clients(url: str, token: str, run_id: str, count: int, out: Any) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=count + 8, max_keepalive_connections=count + 8)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S, limits=limits) as client:
        readies = [asyncio.Event() for _ in range(count)]
        tasks = [
            asyncio.create_task(_listen(client, f"/api/runs/{run_id}/events", headers, r))
            for r in readies
        ]
        await asyncio.gather(*(r.wait() for r in readies))
        out.put(("ready", None))
        out.put(("done", await asyncio.gather(*tasks)))


def clients_main(url: str, token: str, run_id: str, count: int, out: Any) -> None:
    asyncio.run(_clients(url, token, run_id, count, out))


# --- the server side --------------------------------------------------------------------------
@dataclass
class Round:
    listeners: int
    run_s: float
    cpu_s: float
    latencies_s: list[float] = field(default_factory=list)
    connects_s: list[float] = field(default_factory=list)
    events: int = 0
    peak_threads: int = 0
    wrong_clients: int = 0


@dataclass
class Bench:
    studio: Studio
    http: httpx.Client
    url: str
    token: str
    graph_id: str
    api: Any

    def start_waiting_run(self) -> str:
        response = self.http.post("/runs", json={"graph_id": self.graph_id}, headers=self.headers)
        response.raise_for_status()
        run_id: str = response.json()["run_id"]
        view = self.studio.manager.wait(self.actor, run_id, timeout_s=WAIT_S)
        assert view.status == "waiting_approval", view
        return run_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def actor(self) -> Actor:
        return self.studio.token_actor(self.token)

    def approve_gate(self, run_id: str) -> None:
        [gate] = self.studio.manager.approvals.list(self.actor, run_id=run_id)
        path = f"/approvals/{gate.approval_id}/decision"
        self.http.post(path, json={"decision": "approve"}, headers=self.headers).raise_for_status()

    def stored(self, run_id: str) -> list[tuple[int, str, datetime]]:
        self.studio.manager.events.flush()
        events = self.studio.manager.events.history(WORKSPACE, run_id)
        return [(e.seq, e.kind, e.at) for e in events]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _run_seconds(stored: list[tuple[int, str, datetime]]) -> tuple[float, datetime]:
    decided = next(at for _, kind, at in stored if kind == "approval_decided")
    final = stored[-1]
    assert final[1] == "run_status", final
    return (_utc(final[2]) - _utc(decided)).total_seconds(), _utc(decided)


def one_round(bench: Bench, listeners: int) -> Round:
    run_id = bench.start_waiting_run()
    child, out = None, None
    if listeners:
        out = mp.get_context("spawn").Queue()
        child = mp.get_context("spawn").Process(
            target=clients_main, args=(bench.url, bench.token, run_id, listeners, out)
        )
        child.start()
        assert out.get(timeout=WAIT_S)[0] == "ready"
        deadline = time.monotonic() + WAIT_S
        while bench.api.state.sse_slots.active < listeners:
            assert time.monotonic() < deadline, "not every client got a stream"
            time.sleep(0.01)
    peak = threading.active_count()
    cpu = time.process_time()
    bench.approve_gate(run_id)
    view = bench.studio.manager.wait(bench.actor, run_id, timeout_s=WAIT_S)
    assert view.status == "succeeded", view
    results: list[tuple[float, list[Received]]] = []
    if child is not None and out is not None:
        while True:  # sample the server's threads while the streams drain
            peak = max(peak, threading.active_count())
            try:
                _, results = out.get(timeout=0.05)
                break
            except Exception:  # queue.Empty from a multiprocessing queue
                continue
        child.join(timeout=WAIT_S)
    cpu_s = time.process_time() - cpu
    stored = bench.stored(run_id)
    run_s, decided_at = _run_seconds(stored)
    result = Round(listeners, run_s, cpu_s, events=len(stored), peak_threads=peak)
    expected = [(seq, kind) for seq, kind, _ in stored]
    for connect_s, got in results:
        result.connects_s.append(connect_s)
        if [(seq, kind) for seq, kind, _, _ in got] != expected:
            result.wrong_clients += 1
        for _, _, at, received in got:
            published = datetime.fromisoformat(at)
            if published >= decided_at:
                result.latencies_s.append(received - published.timestamp())
    _assert_freed(bench, run_id)
    return result


def _assert_freed(bench: Bench, run_id: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pumps = [t for t in threading.enumerate() if t.name.startswith("sse-")]
        subscribed = bench.studio.manager.events.has_subscribers(run_id)
        if bench.api.state.sse_slots.active == 0 and not pumps and not subscribed:
            return
        time.sleep(0.05)
    raise AssertionError("streams, pump threads or subscriptions were left behind")


@contextmanager
def bench_server(tmp: Path, nodes: int) -> Iterator[Bench]:
    with open_studio(Settings(data_dir=tmp), max_concurrency=4) as studio:
        user = studio.accounts.create_user("bench@example.com", None, "Bench").user_id
        studio.accounts.create_workspace("Bench", owner_user_id=user, workspace_id=WORKSPACE)
        studio.rbac.assign_role(WORKSPACE, user, "admin")
        token, _ = studio.tokens.create_token(
            Actor(WORKSPACE, user), name="bench", actions=sorted(ACTIONS)
        )
        api = build_api(lambda: studio)
        with (
            LiveServer(mounted(api)) as live,
            httpx.Client(base_url=f"{live.url}/api", timeout=WAIT_S) as http,
        ):
            imported = http.post(
                "/graphs/import",
                json=gated_line_document(nodes),
                headers={"Authorization": f"Bearer {token}"},
            )
            imported.raise_for_status()
            yield Bench(studio, http, live.url, token, imported.json()["graph_id"], api)


# --- report -------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def _row(rounds: list[Round], base_run_s: float) -> list[str]:
    run_s = statistics.median(r.run_s for r in rounds)
    cpu_s = statistics.median(r.cpu_s for r in rounds)
    lat = [x for r in rounds for x in r.latencies_s]
    con = [x for r in rounds for x in r.connects_s]
    ms = 1000.0
    cells = [
        str(rounds[0].listeners),
        f"{run_s * ms:,.1f}",
        f"{run_s / base_run_s:.2f}x",
        f"{cpu_s * ms:,.0f}",
        f"{_pct(lat, 0.5) * ms:,.1f}" if lat else "n/a",
        f"{_pct(lat, 0.95) * ms:,.1f}" if lat else "n/a",
        f"{max(lat) * ms:,.1f}" if lat else "n/a",
        f"{_pct(con, 0.5) * ms:,.1f}" if con else "n/a",
        f"{_pct(con, 0.95) * ms:,.1f}" if con else "n/a",
        str(max(r.peak_threads for r in rounds)),
        f"{rounds[0].events}",
        f"{sum(r.wrong_clients for r in rounds)} of {sum(len(r.connects_s) for r in rounds)}",
    ]
    return cells


def machine() -> str:
    return reporting.machine(("uvicorn", "starlette", "fastapi", "httpx"))


def report(by_side: dict[int, list[Round]], args: argparse.Namespace, elapsed_s: float) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    base = statistics.median(r.run_s for r in by_side[0])
    head = [
        "listeners",
        "run ms (median)",
        "run vs none",
        "server CPU ms/run",
        "latency p50 ms",
        "latency p95 ms",
        "latency max ms",
        "connect p50 ms",
        "connect p95 ms",
        "peak threads",
        "events/run",
        "clients missing or repeating an event",
    ]
    lines = [
        f"## SSE fan-out — {now}",
        "",
        f"Command: `{COMMAND} --clients {args.clients} --nodes {args.nodes} "
        f"--repeat {args.repeat}`  ",
        f"Machine: {machine()}  ",
        f"Workload: a human-approval gate, then {args.nodes} scripted `llm` nodes in a line; "
        f"listeners connect while the run waits at the gate (stored events replayed), then the "
        f"gate is approved and every later event is live. Clients in a separate process "
        f"(asyncio + httpx), server = studio API under `/api` on uvicorn (loopback), production "
        f"SSE settings; {args.repeat} rounds of each side; peak server RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB; whole benchmark "
        f"{elapsed_s:.0f} s.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---:|" * len(head),
    ]
    for listeners in sorted(by_side):
        lines.append("| " + " | ".join(_row(by_side[listeners], base)) + " |")
    many = by_side[args.clients]
    wrong = sum(r.wrong_clients for r in many)
    lat = [x for r in many for x in r.latencies_s]
    lines += [
        "",
        f"**{args.clients} clients: {len(many) * args.clients - wrong} of "
        f"{len(many) * args.clients} streams got every event exactly once; fan-out latency "
        f"p95 {_pct(lat, 0.95) * 1000:,.1f} ms; the run took "
        f"{statistics.median(r.run_s for r in many) / base:.2f}x its time with no listener.** "
        "Latency = receipt in the client process minus the event's publish time (same clock). "
        "Listeners make the run stream model tokens (`token` events), which a run nobody "
        "watches skips; that is part of the run-time ratio.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append to tests/bench/RESULTS.md")
    args = parser.parse_args(argv)
    began = time.monotonic()
    by_side: dict[int, list[Round]] = {0: [], 1: [], args.clients: []}
    with tempfile.TemporaryDirectory() as tmp, bench_server(Path(tmp), args.nodes) as bench:
        one_round(bench, 1)  # warm-up: compile the graph, open connections
        for _ in range(args.repeat):
            for listeners in by_side:
                by_side[listeners].append(one_round(bench, listeners))
    section = report(by_side, args, time.monotonic() - began)
    print(section)
    if args.write:
        reporting.append_section(section)
    wrong = sum(r.wrong_clients for rounds in by_side.values() for r in rounds)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
