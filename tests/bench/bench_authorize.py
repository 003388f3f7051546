"""`Rbac.authorize()` with 1,000 workspaces x 100 users: repeated, cold, and after a change.

    python -m tests.bench.bench_authorize [--workspaces N] [--users N] [--repeat N] [--write]

The policy (role templates + one ``g`` line per user) is bulk-inserted through
`Rbac.assign_roles` into a real SQLite file in a temporary folder. Users get the five roles in
turn. Measured, in this order, on one `Rbac`:

- cold, workspace not loaded: the first decision in a workspace (one indexed query loads its
  enforcer, then pycasbin decides);
- cold, workspace loaded: a (user, action) not asked before (pycasbin's matcher over the
  template lines);
- repeated: random decisions over a warmed working set (the decision cache; the cheap
  cross-process version poll runs every 0.1 s as in production);
- fresh: ``authorize(..., fresh=True)`` as the approval authority calls it (one version query
  per decision);
- after a change: revoke or grant a role, then decide at once — the decision must follow the
  change (correctness is counted, latency of the write and of the next decision reported);
  also seen through a second `Rbac` on its own engine (another process) with ``fresh=True``;
- for context, plain pycasbin: one enforcer over the whole policy via the stock adapter.

Goal: repeated decisions >= 20,000/s. `--write` appends a section to tests/bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import casbin
from sqlalchemy import Engine
from sqlalchemy_adapter import Adapter

from auth.actions import ACTIONS, ROLE_NAMES, role_actions
from auth.rbac import MODEL, CasbinRule, Rbac, Resource, create_tables
from graphs.db import make_engine
from graphs.identity import Actor
from tests.bench import reporting

GOAL = 20_000
RESULTS = Path(__file__).with_name("RESULTS.md")
COMMAND = "python -m tests.bench.bench_authorize"
NAMES = list(ACTIONS)


@dataclass(frozen=True, slots=True)
class Row:
    measure: str
    decisions: int
    seconds: float
    latencies_us: list[float]
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.decisions / self.seconds if self.seconds else 0.0

    def cells(self) -> list[str]:
        lat = sorted(self.latencies_us)
        p50 = f"{statistics.median(lat):,.1f}" if lat else "n/a"
        p95 = f"{lat[min(len(lat) - 1, int(len(lat) * 0.95))]:,.1f}" if lat else "n/a"
        return [self.measure, f"{self.decisions:,}", f"{self.per_second:,.0f}", p50, p95, self.note]


def ws(i: int) -> str:
    return f"ws-{i:04d}"


def user(j: int) -> str:
    return f"user-{j:03d}"


def role_of(j: int) -> str:
    return ROLE_NAMES[j % len(ROLE_NAMES)]


def expected(j: int, action: str) -> bool:
    return action in role_actions(role_of(j))


def timed(
    call: Callable[..., object], args: Sequence[tuple[Any, ...]]
) -> tuple[float, list[float]]:
    """Total seconds and per-call latencies (µs) of `call(*a)` for each `a` in `args`."""
    latencies = []
    started = time.perf_counter()
    for a in args:
        t0 = time.perf_counter()
        call(*a)
        latencies.append((time.perf_counter() - t0) * 1e6)
    return time.perf_counter() - started, latencies


def ask(rbac: Rbac) -> Callable[[int, int, str], object]:
    return lambda i, j, action: rbac.authorize(Actor(ws(i), user(j)), action)


def populate(engine: Engine, workspaces: int, users: int) -> tuple[Rbac, float]:
    rbac = Rbac(engine)
    started = time.perf_counter()
    rbac.sync_role_templates()
    assignments = [(ws(i), user(j), role_of(j)) for i in range(workspaces) for j in range(users)]
    for k in range(0, len(assignments), 20_000):
        rbac.assign_roles(assignments[k : k + 20_000])
    return rbac, time.perf_counter() - started


def bench_cold(rbac: Rbac, workspaces: int, users: int, rng: random.Random) -> list[Row]:
    sample = rng.sample(range(workspaces), min(200, workspaces))
    first = [(i, rng.randrange(users), rng.choice(NAMES)) for i in sample]
    seconds, lat = timed(ask(rbac), first)
    rows = [Row("cold: workspace not loaded", len(first), seconds, lat, "load + enforce")]
    asked = {(i, j, a) for i, j, a in first}
    fresh: list[tuple[int, int, str]] = []
    while len(fresh) < 2_000:
        key = (rng.choice(sample), rng.randrange(users), rng.choice(NAMES))
        if key not in asked:
            asked.add(key)
            fresh.append(key)
    seconds, lat = timed(ask(rbac), fresh)
    rows.append(
        Row("cold: workspace loaded, decision new", len(fresh), seconds, lat, "pycasbin matcher")
    )
    return rows


def bench_repeated(
    rbac: Rbac, workspaces: int, users: int, repeat: int, rng: random.Random
) -> tuple[list[Row], int]:
    working = [
        (i, j, a)
        for i in range(workspaces)
        for j in rng.sample(range(users), 2)
        for a in rng.sample(NAMES, 3)
    ]
    actors = {(i, j): Actor(ws(i), user(j)) for i, j, _ in working}
    for i, j, a in working:  # warm-up
        rbac.authorize(actors[i, j], a)
    picks = [rng.choice(working) for _ in range(repeat)]
    requests = [(actors[i, j], a) for i, j, a in picks]
    wrong = 0
    started = time.perf_counter()
    for actor, action in requests:
        rbac.authorize(actor, action)
    seconds = time.perf_counter() - started
    for (_, j, a), (actor, action) in zip(picks[:20_000], requests[:20_000], strict=True):
        wrong += rbac.authorize(actor, action).allowed is not expected(j, a)
    sample = requests[:20_000]
    _, lat = timed(rbac.authorize, sample)
    note = f"working set {len(working):,} keys in {workspaces:,} workspaces"
    rows = [Row("repeated (cached)", repeat, seconds, lat, note)]
    with_resource = [
        (actor, a, Resource(ACTIONS[a].kind, actor.workspace_id, "obj-1"))
        for actor, a in requests[:50_000]
    ]
    started = time.perf_counter()
    for actor, action, res in with_resource:
        rbac.authorize(actor, action, res)
    rows.append(
        Row(
            "repeated, with a Resource",
            len(with_resource),
            time.perf_counter() - started,
            [],
            "same-workspace resource check; no per-call timing",
        )
    )
    few = requests[:2_000]
    seconds, lat = timed(lambda actor, a: rbac.authorize(actor, a, fresh=True), few)
    rows.append(Row("fresh=True (approvals)", len(few), seconds, lat, "one version query each"))
    return rows, wrong


def bench_changes(
    rbac: Rbac, other: Rbac, workspaces: int, users: int, rng: random.Random
) -> tuple[list[Row], int, int]:
    """Revoke/grant then decide at once, in this process and through another engine."""
    write_lat: list[float] = []
    next_lat: list[float] = []
    other_lat: list[float] = []
    wrong = checks = 0
    for _ in range(200):
        i, j = rng.randrange(workspaces), rng.randrange(users)
        actor, role = Actor(ws(i), user(j)), role_of(j)
        action = rng.choice(sorted(role_actions(role)))
        rbac.authorize(actor, action)
        other.authorize(actor, action)  # both cached before the change
        for allowed in (False, True):
            t0 = time.perf_counter()
            if allowed:
                rbac.assign_role(ws(i), user(j), role)
            else:
                rbac.revoke_role(ws(i), user(j), role)
            t1 = time.perf_counter()
            got = rbac.authorize(actor, action).allowed
            t2 = time.perf_counter()
            seen = other.authorize(actor, action, fresh=True).allowed
            t3 = time.perf_counter()
            write_lat.append((t1 - t0) * 1e6)
            next_lat.append((t2 - t1) * 1e6)
            other_lat.append((t3 - t2) * 1e6)
            checks += 2
            wrong += (got is not allowed) + (seen is not allowed)
    n = len(write_lat)
    rows = [
        Row(
            "change: revoke/grant (write txn)",
            n,
            sum(write_lat) / 1e6,
            write_lat,
            "g line + version bump, one transaction",
        ),
        Row(
            "first decision after the change",
            n,
            sum(next_lat) / 1e6,
            next_lat,
            "reloads the workspace",
        ),
        Row(
            "same, other process, fresh=True",
            n,
            sum(other_lat) / 1e6,
            other_lat,
            "version query + reload",
        ),
    ]
    return rows, wrong, checks


def bench_plain_casbin(engine: Engine, users: int, rng: random.Random) -> list[Row]:
    started = time.perf_counter()
    stock = casbin.Enforcer(
        casbin.Enforcer.new_model(text=MODEL),
        Adapter(engine, db_class=CasbinRule, create_table=False),
    )
    load = time.perf_counter() - started
    asks = [
        (user(rng.randrange(users)), ws(rng.randrange(10)), rng.choice(NAMES)) for _ in range(300)
    ]
    seconds, lat = timed(lambda u, w, a: stock.enforce(u, w, ACTIONS[a].kind, a), asks)
    return [
        Row(
            "plain pycasbin, one enforcer, no cache",
            len(asks),
            seconds,
            lat,
            f"whole policy loaded in {load:.1f} s",
        )
    ]


def markdown(rows: list[Row]) -> str:
    head = ["measure", "decisions", "decisions/s", "p50 µs", "p95 µs", "notes"]
    return reporting.markdown_table(
        head, "|---|---:|---:|---:|---:|---|", (row.cells() for row in rows)
    )


def machine() -> str:
    return reporting.machine(("pycasbin", "sqlalchemy-adapter", "SQLAlchemy"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workspaces", type=int, default=1_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=500_000, help="repeated decisions")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action="store_true", help=f"append results to {RESULTS}")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'rbac.db'}")
        create_tables(engine)
        rbac, setup = populate(engine, args.workspaces, args.users)
        lines = args.workspaces * args.users
        print(f"policy: {lines:,} g lines + templates inserted in {setup:.1f} s", file=sys.stderr)
        rows = bench_cold(rbac, args.workspaces, args.users, rng)
        repeated, wrong_repeated = bench_repeated(
            rbac, args.workspaces, args.users, args.repeat, rng
        )
        rows += repeated
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        other_engine = make_engine(f"sqlite:///{Path(tmp) / 'rbac.db'}")
        changed, wrong_changes, checks = bench_changes(
            rbac, Rbac(other_engine), args.workspaces, args.users, rng
        )
        rows += changed
        rows += bench_plain_casbin(engine, args.users, rng)
        other_engine.dispose()
        engine.dispose()
    best = next(r for r in rows if r.measure == "repeated (cached)").per_second
    verdict = "MEETS" if best >= GOAL else "MISSES"
    summary = (
        f"**repeated decisions: {best:,.0f}/s** — goal ≥ {GOAL:,}/s: {verdict}. "
        f"Wrong decisions: {wrong_repeated} of 20,000 checked repeated decisions; "
        f"{wrong_changes} of {checks} checked right after a change "
        f"(this process and another engine with fresh=True)."
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            f"## authorize() — {stamp}",
            "",
            f"Command: `{COMMAND} --workspaces {args.workspaces} --users {args.users} "
            f"--repeat {args.repeat}`  ",
            f"Machine: {machine()}  ",
            f"Workload: {args.workspaces:,} workspaces x {args.users} users ({lines:,} `g` lines, "
            f"bulk-inserted in {setup:.1f} s), roles in turn; SQLite file; peak RSS "
            f"{rss_mb:,.0f} MB after warming every workspace; whole benchmark "
            f"{time.perf_counter() - began:.0f} s.",
            "",
            markdown(rows),
            "",
            summary,
        ]
    )
    print(section)
    if args.write:
        reporting.append_section(section)
        print(f"\nappended to {RESULTS}")
    return 0 if best >= GOAL and not wrong_repeated and not wrong_changes else 1


if __name__ == "__main__":
    sys.exit(main())
