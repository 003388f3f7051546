"""Named failpoints for crash tests: ``STUDIO_FAILPOINTS="effect.after_execute@2,..."``.

When armed, reaching a failpoint for the N-th time (default the first) kills the process
with SIGKILL — no cleanup, no flush — exactly like a power cut. Unarmed, a failpoint is one
set look-up. The names are documented in `POINTS`.
"""

from __future__ import annotations

__all__ = ["POINTS", "armed", "failpoint"]

import os
import signal
import threading

POINTS = {
    "checkpoint.before_put": "before LangGraph writes a checkpoint",
    "checkpoint.after_put": "after a checkpoint is written",
    "effect.before_execute": "ledger row 'started' written, tool not yet called",
    "effect.after_execute": "tool call made, ledger row not yet marked done",
    "approval.after_interrupt": "interrupt checkpointed, approval row not yet written",
    "approval.after_row": "approval row written, run not yet marked waiting",
    "decision.after_commit": "decision recorded, run not yet resumed",
}


def _parse(spec: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, nth = item.partition("@")
        armed[name] = int(nth) if nth else 1
    return armed


_ARMED = _parse(os.environ.get("STUDIO_FAILPOINTS", ""))
_HITS: dict[str, int] = {}
_LOCK = threading.Lock()


def armed() -> bool:
    return bool(_ARMED)


def failpoint(name: str) -> None:
    if name not in _ARMED:
        return
    with _LOCK:
        _HITS[name] = _HITS.get(name, 0) + 1
        if _HITS[name] == _ARMED[name]:
            os.kill(os.getpid(), signal.SIGKILL)
