"""Crash tests: a real studio process is SIGKILLed at a named failpoint, then restarted.

After the restart every run ends (I-RUN), the refund receiver saw the refund exactly once
and one e-mail was queued (I-EFF), and pending approvals match live interrupts (I-APR-1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from graphs.tables import Effect, OutboxMessage, Run
from tests.conftest import support_doc
from tests.loopback.http_receiver import HttpReceiver

pytestmark = pytest.mark.crash
ROOT = Path(__file__).resolve().parents[2]


def studio_process(mode: str, *args: str, failpoints: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STUDIO_FAILPOINTS": failpoints, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tests.graphs.crash_driver", mode, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )


def rows(db: Path, query: Any) -> Any:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        result = conn.execute(query).all()
    engine.dispose()
    return result


# (failpoint, what it hits): hit counts select the e-mail (1st effect, 1st decision) or the
# refund (2nd effect, 2nd decision); checkpoint counts select a step of the first pass.
POINTS = [
    "checkpoint.before_put@2",
    "checkpoint.after_put@3",
    "approval.after_interrupt@1",
    "approval.after_row@1",
    "effect.before_execute@1",
    "effect.after_execute@1",
    "decision.after_commit@1",
    "effect.before_execute@2",
    "effect.after_execute@2",
    "decision.after_commit@2",
    "approval.after_interrupt@2",
]


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_failpoint_then_restart_keeps_every_invariant(
    tmp_path: Path, receiver: HttpReceiver, point: str
) -> None:
    db, graph = tmp_path / "studio.db", tmp_path / "support.json"
    graph.write_text(json.dumps(support_doc(receiver)))

    crashed = studio_process("drive", str(db), str(graph), receiver.host_port, failpoints=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]

    finished = studio_process("finish", str(db), receiver.host_port)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    assert summary["consistent"], summary  # I-APR-1 after reconcile
    assert summary["statuses"] == ["succeeded"], summary  # I-RUN
    refunds = [e for e in receiver.effects if e.path == "/refunds"]
    assert len(refunds) == 1  # I-EFF: exactly once  # I-EFF: exactly once
    keys = {r.headers.get("idempotency-key") for r in receiver.requests}
    assert len(keys) == 1 and None not in keys
    assert rows(db, select(func.count()).select_from(OutboxMessage))[0][0] == 1
    assert {r[0] for r in rows(db, select(Effect.status))} == {"done"}


def test_a_run_that_kills_its_worker_every_time_fails_after_k_attempts(
    tmp_path: Path, receiver: HttpReceiver
) -> None:
    db, graph = tmp_path / "studio.db", tmp_path / "support.json"
    graph.write_text(json.dumps(support_doc(receiver)))
    for _ in range(4):
        crashed = studio_process(
            "drive", str(db), str(graph), receiver.host_port, failpoints="checkpoint.before_put@1"
        )
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    finished = studio_process("finish", str(db), receiver.host_port)
    summary = json.loads(finished.stdout.strip().splitlines()[-1])
    assert summary["statuses"] == ["failed"]
    assert "stopped 4 times" in summary["errors"][0]
    assert rows(db, select(Run.status))[0][0] == "failed"
    assert receiver.effects == []
