"""The `studio` command: run graphs headless, inspect runs, decide approvals.

Human-readable output by default, `--json` for scripts. Errors print one line and exit 2;
nothing prints a stack trace for a mistake a person can fix.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from components.base import HttpPolicy
from components.errors import GraphInvalid, StudioError, UserError
from components.registry import default_registry
from graphs.headless import local_actor, open_runtime, read_graph_file, run_file
from graphs.spec import json_schema
from graphs.validation import load_document
from studio.settings import Settings


def _emit(args: argparse.Namespace, value: Any, text: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(_plain(value), indent=2, default=str, ensure_ascii=False))
    else:
        print(text(value))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """Parse an option's JSON; it must be an object (a clear UserError otherwise)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{option} is not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(value, dict):
        raise UserError(f'{option} must be a JSON object, like \'{{"name": "value"}}\'')
    return value


def _runtime(args: argparse.Namespace, *, resume: bool = True) -> Any:
    settings = Settings()
    db = Path(args.db) if args.db else settings.db_path
    http = HttpPolicy(allow_hosts=settings.allow_hosts())
    return open_runtime(
        db,
        http=http,
        smtp=settings.smtp(),
        resume=resume,
        max_concurrency=settings.max_concurrency,
        lease_ttl_s=settings.lease_ttl_s,
    )


def _run_line(run: Any) -> str:
    line = f"run {run.run_id}  {run.status}"
    if run.error:
        line += f"\n  error: {run.error}"
    if run.output:
        line += f"\n  output: {json.dumps(run.output, ensure_ascii=False, default=str)}"
    return line


def _approval_line(a: Any) -> str:
    args = json.dumps(a.args, ensure_ascii=False, default=str)
    line = f"approval {a.approval_id}  {a.status}  [{a.tier}] {a.action} {args}  run {a.run_id}"
    if a.reason:
        line += f"\n  why: {a.reason}"
    return line


def cmd_run(args: argparse.Namespace) -> int:
    payload = _json_object(args.input, "--input") or {}
    notify = {
        k: v for k, v in (("webhook", args.notify_webhook), ("email", args.notify_email)) if v
    }
    with _runtime(args) as rt:
        run = run_file(rt, args.graph, payload, timeout_s=args.timeout, notify=notify or None)
        _emit(args, run, _run_line)
        if run.status == "waiting_approval" and not args.json:
            for approval in rt.manager.approvals.list(local_actor(), run_id=run.run_id):
                print("  " + _approval_line(approval).replace("\n", "\n  "))
    return 0 if run.status in ("succeeded", "waiting_approval") else 1


def cmd_runs_list(args: argparse.Namespace) -> int:
    with _runtime(args, resume=False) as rt:
        runs = rt.manager.list(local_actor(), status=args.status, limit=args.limit)
        _emit(args, runs, lambda rs: "\n".join(_run_line(r) for r in rs) or "no runs")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    with _runtime(args, resume=False) as rt:
        actor = local_actor()
        run = rt.manager.get(actor, args.run_id)
        events = rt.manager.events.history(actor.workspace_id, run.run_id)
        _emit(args, {"run": run, "events": events} if args.json else run, _run_line)
        if not args.json:
            for e in events:
                if e.kind != "token":
                    print(
                        f"  #{e.seq} {e.kind} {e.node_id or ''} {json.dumps(e.data, default=str)}"
                    )
    return 0


def cmd_approvals_list(args: argparse.Namespace) -> int:
    with _runtime(args, resume=False) as rt:
        status = None if args.status == "all" else args.status
        items = rt.manager.approvals.list(local_actor(), status=status)
        _emit(args, items, lambda xs: "\n".join(_approval_line(a) for a in xs) or "none")
    return 0


def cmd_approvals_decide(args: argparse.Namespace) -> int:
    edited = _json_object(args.args, "--args")
    decision = "edit" if (args.decision == "approve" and edited is not None) else args.decision
    with _runtime(args) as rt:
        actor = local_actor(args.as_user)
        approval = rt.manager.decide(
            actor, args.approval_id, decision, args=edited, feedback=args.feedback
        )
        run = rt.manager.wait(actor, approval.run_id, timeout_s=args.timeout)
        _emit(
            args,
            {"approval": approval, "run": run},
            lambda v: _approval_line(v["approval"]) + "\n" + _run_line(v["run"]),
        )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    with _runtime(args) as rt:
        actor = local_actor()
        ids = [args.run_id] if args.run_id else [r.run_id for r in rt.manager.list(actor)]
        if args.run_id:
            rt.manager.get(actor, args.run_id)
            rt.manager.recover()
        runs = [rt.manager.wait(actor, run_id, timeout_s=args.timeout) for run_id in ids]
        _emit(args, runs, lambda rs: "\n".join(_run_line(r) for r in rs) or "no runs")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    doc = load_document(read_graph_file(args.graph), default_registry())
    _emit(
        args,
        {"valid": True, "name": doc.name, "nodes": len(doc.nodes)},
        lambda v: f"valid: {v['name']!r} ({v['nodes']} nodes)",
    )
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from studio.demo import run_demo

    return run_demo(Path(args.db) if args.db else None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="studio database file (default: $STUDIO_DATA_DIR/studio.db)")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a run")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run a graph file to completion or a pause")
    run.add_argument("graph")
    run.add_argument("--input", help="JSON object of input fields")
    run.add_argument("--notify-webhook", help="POST a signed notice here when the run ends")
    run.add_argument("--notify-email", help="e-mail this address when the run ends")
    run.set_defaults(func=cmd_run)

    runs = sub.add_parser("runs", help="list or show runs").add_subparsers(
        dest="sub", required=True
    )
    rl = runs.add_parser("list", parents=[common])
    rl.add_argument("--status")
    rl.add_argument("--limit", type=int, default=50)
    rl.set_defaults(func=cmd_runs_list)
    rs = runs.add_parser("show", parents=[common])
    rs.add_argument("run_id")
    rs.set_defaults(func=cmd_runs_show)

    approvals = sub.add_parser("approvals", help="list or decide approvals").add_subparsers(
        dest="sub", required=True
    )
    al = approvals.add_parser("list", parents=[common])
    al.add_argument("--status", default="pending", help="pending (default), approved, ..., all")
    al.set_defaults(func=cmd_approvals_list)
    ad = approvals.add_parser("decide", parents=[common])
    ad.add_argument("approval_id")
    ad.add_argument("decision", choices=["approve", "edit", "reject", "respond"])
    ad.add_argument("--args", help="JSON object: edited arguments (or {'response': ...})")
    ad.add_argument("--feedback", help="message the model sees (with reject)")
    ad.add_argument("--as", dest="as_user", help="decide as this user (default: $STUDIO_USER)")
    ad.set_defaults(func=cmd_approvals_decide)

    resume = sub.add_parser("resume", parents=[common], help="continue runs after a crash")
    resume.add_argument("run_id", nargs="?")
    resume.set_defaults(func=cmd_resume)

    validate = sub.add_parser("validate", parents=[common], help="check a graph file")
    validate.add_argument("graph")
    validate.set_defaults(func=cmd_validate)
    sub.add_parser("schema", help="print the graph JSON Schema").set_defaults(
        func=cmd_schema, json=True
    )
    demo = sub.add_parser("demo", parents=[common], help="run the support-agent example")
    demo.set_defaults(func=cmd_demo)
    return parser


def configure_logging() -> None:
    """Warnings and errors to stderr; httpx's request lines (full URLs, which may carry
    tokens) are kept out of the logs."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GraphInvalid as exc:
        print(f"error: graph document is invalid ({len(exc.problems)} problems):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except (StudioError, json.JSONDecodeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
