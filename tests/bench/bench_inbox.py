"""Approval inbox with thousands of pending approvals: service queries and first-page render.

    python -m tests.bench.bench_inbox [--pending N] [--decided N] [--repeat N] [--write]

A seeded studio (the page tests' seed) gets `--pending` pending approvals in workspace
`acme`, as many in the foreign workspace `evil` (they must cost nothing), and `--decided`
decided ones in `acme` (the history tab), spread over 1,000 paused runs per workspace. The
web app runs in-process under NiceGUI's user simulation (the `user` fixture's machinery).
Rows are inserted after the app started, so the start-up reconciler leaves them alone.

Measured, `--repeat` times each (after 3 warm-up calls), as the approver `ap`:

- the service calls a page makes: the first inbox page (25 cards, with e-mails and the
  may-I-decide hint per card), the same page 40 pages deep (keyset paging), the history's
  first page, and the stamp the page polls every 3 s (pending count, newest, last decision);
- first page render: from `user.open("/approvals")` until the newest approval's card is on
  the page (served, built, first page loaded and rendered); the graph library page until its
  one graph shows, as a reference for the page shell;
- the same first-page service call without the inbox indexes (dropped at the end), to show
  what `0003_approval_inbox` buys.

Goal: first page render < 300 ms (p95) with 10,000 pending approvals. `--write` appends a
section to tests/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nicegui import app
from nicegui.element_filter import ElementFilter
from nicegui.storage import Storage
from nicegui.testing.user import User
from nicegui.testing.user_simulation import user_simulation
from sqlalchemy import insert, text, update

from graphs.identity import Actor
from graphs.tables import Approval, Run
from studio import approval_inbox
from studio.context import Studio, open_studio
from studio.settings import Settings
from studio.web_auth import SESSION_COOKIE
from tests.bench import reporting
from tests.conftest import example
from tests.studio.web_fixtures import Seeded, add_pending_approvals, seed

COMMAND = "python -m tests.bench.bench_inbox"
RESULTS = Path(__file__).with_name("RESULTS.md")
MAIN = Path(__file__).resolve().parents[1] / "studio" / "web_main.py"
GOAL_MS = 300.0
RUNS_PER_WORKSPACE = 1_000


@dataclass
class Row:
    measure: str
    samples: list[float]  # ms
    notes: str = ""

    def cells(self) -> list[str]:
        ordered = sorted(self.samples)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return [
            self.measure,
            str(len(ordered)),
            f"{statistics.median(ordered):,.1f}",
            f"{p95:,.1f}",
            f"{ordered[-1]:,.1f}",
            self.notes,
        ]


def timed(call: Callable[[], Any], repeat: int) -> list[float]:
    for _ in range(3):
        call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def add_runs(studio: Studio, actor: Actor, count: int) -> list[str]:
    """`count` paused runs of the support agent (rows only: nothing will drive them)."""
    version = studio.manager.library.create(actor, example("support_agent"))
    now = datetime.now(UTC)
    rows = []
    for _ in range(count):
        run_id = str(uuid.uuid4())
        rows.append(
            {
                "run_id": run_id,
                "workspace_id": actor.workspace_id,
                "graph_id": version.graph_id,
                "version_id": version.version_id,
                "thread_id": f"run:{run_id}",
                "status": "waiting_approval",
                "started_by": actor.user_id,
                "input": {"order_id": "A-1"},
                "notify": {},
                "attempts": 1,
                "created_at": now,
            }
        )
    with studio.engine.begin() as conn:
        conn.execute(insert(Run.__table__), rows)
    return [str(r["run_id"]) for r in rows]


def fill(studio: Studio, seeded: Seeded, pending: int, decided: int) -> str:
    """Pending approvals in both workspaces, decided ones in acme; the newest pending id."""
    acme = add_runs(studio, seeded.actor("ed"), RUNS_PER_WORKSPACE)
    evil = add_runs(studio, seeded.actor("mallory"), RUNS_PER_WORKSPACE)
    start = datetime.now(UTC) - timedelta(days=2)
    old = add_pending_approvals(
        studio.engine, workspace_id="acme-old", run_ids=acme, count=decided, start=start
    )
    with studio.engine.begin() as conn:  # the history: decided by the admin, one a minute
        conn.execute(
            update(Approval)
            .where(Approval.approval_id.in_(old))
            .values(
                workspace_id="acme",
                status="approved",
                decision="approve",
                decided_by=seeded.users["ad"],
                decided_at=Approval.created_at,
            )
        )
    add_pending_approvals(
        studio.engine, workspace_id="evil", run_ids=evil, count=pending, start=start
    )
    mine = add_pending_approvals(
        studio.engine, workspace_id="acme", run_ids=acme, count=pending, start=start
    )
    with studio.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return mine[-1]


async def until_seen(user: User, marker: str | None, content: str | None) -> None:
    for _ in range(20_000):
        with user.client:
            if list(ElementFilter(marker=marker, content=content, local_scope=False)):
                return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never saw {marker or content!r}")


async def page_samples(
    user: User, path: str, seen: Callable[[], Awaitable[None]], repeat: int
) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (this process, every thread) milliseconds per page open."""
    samples, cpu = [], []
    for attempt in range(repeat + 3):
        started, started_cpu = time.perf_counter(), time.process_time()
        await user.open(path)
        await seen()
        if attempt >= 3:
            samples.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        user.client.delete()  # one page at a time, like one browser tab
        await asyncio.sleep(0.05)  # let the deleted page's tasks end
    return samples, cpu


def service_rows(studio: Studio, actor: Actor, repeat: int, label: str = "") -> list[Row]:
    first = approval_inbox.inbox_page(studio, actor)
    assert len(first.cards) == approval_inbox.PAGE_SIZE
    cursor = first.next_cursor
    for _ in range(39):
        assert cursor is not None
        cursor = approval_inbox.inbox_page(studio, actor, before=cursor).next_cursor
    deep = cursor
    return [
        Row(
            f"service: first inbox page{label}",
            timed(lambda: approval_inbox.inbox_page(studio, actor), repeat),
            "25 cards + e-mails + may-decide hint (fresh RBAC per tier and starter)",
        ),
        Row(
            f"service: page 41{label}",
            timed(lambda: approval_inbox.inbox_page(studio, actor, before=deep), repeat),
            "keyset cursor: as cheap as the first",
        ),
        Row(
            f"service: history first page{label}",
            timed(lambda: approval_inbox.inbox_page(studio, actor, history=True), repeat),
            "latest decisions first",
        ),
        Row(
            f"service: poll stamp{label}",
            timed(lambda: approval_inbox.inbox_stamp(studio, actor), repeat),
            "count + newest + last decision; every 3 s per open inbox",
        ),
    ]


def simulate_like_pytest(tmp: Path) -> None:
    """What NiceGUI's pytest plugin sets up before `user_simulation` (storage in `tmp`)."""
    os.environ["PYTEST_CURRENT_TEST"] = "tests/bench/bench_inbox.py::main"
    Storage.path = tmp / "nicegui-storage"
    app.storage = Storage()


async def measure(seeded: Seeded, repeat: int, pending: int, decided: int) -> list[Row]:
    async with user_simulation(main_file=MAIN) as user:
        with open_studio(Settings(data_dir=seeded.data_dir), resume=False) as studio:
            newest = fill(studio, seeded, pending, decided)
            actor = seeded.actor("ap")
            assert approval_inbox.inbox_stamp(studio, actor).pending == pending
            rows = service_rows(studio, actor, repeat)
            user.http_client.cookies.set(SESSION_COOKIE, seeded.session_cookie("ap"))
            inbox, inbox_cpu = await page_samples(
                user,
                "/approvals",
                lambda: until_seen(user, f"approval-{newest}", None),
                repeat,
            )
            library, library_cpu = await page_samples(
                user, "/graphs", lambda: until_seen(user, None, "Ticket triage"), repeat
            )
            rows += [
                Row(
                    "page: /approvals first page render",
                    inbox,
                    "open → newest card on the page (user simulation, in-process)",
                ),
                Row("page: /approvals, CPU time", inbox_cpu, "this process, all threads"),
                Row("page: /graphs (reference)", library, "open → the one graph listed"),
                Row("page: /graphs, CPU time", library_cpu, "this process, all threads"),
            ]
            with studio.engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_approvals_inbox"))
                conn.execute(text("DROP INDEX ix_approvals_history"))
                conn.execute(text("ANALYZE"))
            rows += service_rows(studio, actor, max(5, repeat // 3), " — without the indexes")
    return rows


def markdown(rows: list[Row]) -> str:
    head = ["measure", "samples", "p50 ms", "p95 ms", "max ms", "notes"]
    return reporting.markdown_table(
        head, "|---|---:|---:|---:|---:|---|", (row.cells() for row in rows)
    )


def machine() -> str:
    return reporting.machine(("nicegui", "SQLAlchemy"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pending", type=int, default=10_000, help="per workspace")
    parser.add_argument("--decided", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--write", action="store_true", help=f"append results to {RESULTS}")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        seeded = seed(data_dir)
        os.environ["STUDIO_TEST_DATA_DIR"] = str(data_dir)
        simulate_like_pytest(Path(tmp))
        rows = asyncio.run(measure(seeded, args.repeat, args.pending, args.decided))
    render = next(r for r in rows if r.measure.startswith("page: /approvals"))
    p95 = float(render.cells()[3].replace(",", ""))
    verdict = "MEETS" if p95 < GOAL_MS else "MISSES"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            f"## Approval inbox — {stamp}",
            "",
            f"Command: `{COMMAND} --pending {args.pending} --decided {args.decided} "
            f"--repeat {args.repeat}`  ",
            f"Machine: {machine()}  ",
            f"Workload: {args.pending:,} pending approvals in the approver's workspace, "
            f"{args.pending:,} in another workspace, {args.decided:,} decided ones, over "
            f"{RUNS_PER_WORKSPACE:,} paused runs per workspace; SQLite file; whole benchmark "
            f"{time.perf_counter() - began:.0f} s.",
            "",
            markdown(rows),
            "",
            f"**first page render p95: {p95:,.0f} ms** — goal < {GOAL_MS:,.0f} ms: {verdict}.",
        ]
    )
    print(section)
    if args.write:
        reporting.append_section(section)
    return 0 if p95 < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
