"""Run graph files without the web app: `graphs` + `components` alone.

    from graphs import open_runtime, run_file
    with open_runtime("./data/studio.db") as rt:
        view = run_file(rt, "graphs/examples/support_agent.json", {"order_id": "A-1001"})

Runs started here belong to the local workspace and the OS user (see `local_actor`).
Headless runs never approve anything by themselves: a gated call leaves the run waiting.
"""

from __future__ import annotations

__all__ = [
    "Runtime",
    "checkpoint_path_for",
    "local_actor",
    "open_runtime",
    "read_graph_file",
    "run_document",
    "run_file",
    "signing_key_for",
]

import getpass
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from components.base import HttpPolicy, Meter
from components.errors import UserError
from components.registry import Registry, default_registry
from graphs.db import make_engine, migrate
from graphs.identity import Actor
from graphs.outbox import OutboxDispatcher, SmtpSettings
from graphs.runs import RunManager, RunView, checked_input
from graphs.validation import MAX_DOCUMENT_BYTES, load_document

LOCAL_WORKSPACE = "local"


def local_actor(user: str | None = None) -> Actor:
    return Actor(LOCAL_WORKSPACE, user or os.environ.get("STUDIO_USER") or getpass.getuser())


@dataclass(frozen=True, slots=True)
class Runtime:
    engine: Engine
    manager: RunManager


def checkpoint_path_for(db_path: Path) -> Path:
    """Checkpoints live beside the database: studio.db → studio-checkpoints.db."""
    return db_path.with_name(f"{db_path.stem}-checkpoints{db_path.suffix or '.db'}")


def key_file_secret(key_file: Path) -> bytes:
    """A random secret kept in `key_file`, created on first use with mode 0600."""
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_bytes().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return key_file.read_bytes().strip()


def signing_key_for(db_path: Path) -> bytes:
    """The webhook signing key: STUDIO_WEBHOOK_SECRET, else a key file beside the database
    created on first use with mode 0600."""
    if secret := os.environ.get("STUDIO_WEBHOOK_SECRET"):
        return secret.encode()
    return key_file_secret(db_path.with_name(f"{db_path.stem}-webhook.key"))


@contextmanager
def open_runtime(
    db_path: str | Path,
    *,
    registry: Registry | None = None,
    http: HttpPolicy | None = None,
    smtp: SmtpSettings | None = None,
    resume: bool = True,
    meter: Callable[[Engine], Meter] | None = None,
    **manager_options: Any,
) -> Iterator[Runtime]:
    """Open (creating if needed) a studio database file and its checkpoint file.

    Outgoing e-mail (when `smtp` is given) and webhook notices are delivered by a background
    dispatcher, and once more when the runtime closes. `meter` builds the meter of model and
    tool calls on the engine (e.g. `analytics.meter.open_meter`); without it nothing is metered.
    """
    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    policy = http or HttpPolicy()
    outbox = OutboxDispatcher(engine, smtp=smtp, http=policy, signing_key=signing_key_for(path))
    manager = RunManager(
        engine,
        checkpoint_path_for(path),
        registry or default_registry(),
        http=policy,
        outbox=outbox,
        meter=meter(engine) if meter is not None else None,
        **manager_options,
    )
    if resume:
        manager.start()
    try:
        yield Runtime(engine, manager)
    finally:
        manager.close()
        engine.dispose()


def read_graph_file(path: str | Path) -> str:
    file = Path(path)
    if file.stat().st_size > MAX_DOCUMENT_BYTES:
        raise UserError(f"{file.name!r} is larger than {MAX_DOCUMENT_BYTES} bytes")
    return file.read_text(encoding="utf-8")


def run_file(
    runtime: Runtime,
    path: str | Path,
    input: Mapping[str, Any] | None = None,
    *,
    actor: Actor | None = None,
    timeout_s: float = 300.0,
    notify: Mapping[str, str] | None = None,
) -> RunView:
    """Store the file as a new graph version and run it to completion or to a pause."""
    return run_document(
        runtime, read_graph_file(path), input, actor=actor, timeout_s=timeout_s, notify=notify
    )


def run_document(
    runtime: Runtime,
    document: str | Mapping[str, Any],
    input: Mapping[str, Any] | None = None,
    *,
    actor: Actor | None = None,
    timeout_s: float = 300.0,
    notify: Mapping[str, str] | None = None,
) -> RunView:
    who = actor or local_actor()
    manager = runtime.manager
    doc = load_document(document, manager.registry)
    checked_input(doc, dict(input or {}))  # a bad input stores nothing, not even a version
    name = doc.name
    existing = next((g for g in manager.library.list(who) if g.name == name), None)
    if existing:
        version = manager.library.save_version(who, existing.graph_id, document)
    else:
        version = manager.library.create(who, document)
    run_id = manager.start_run(who, version_id=version.version_id, input=input, notify=notify)
    return manager.wait(who, run_id, timeout_s=timeout_s)
