"""The `studio` command: run graphs headless, inspect runs, decide approvals, administer.

Graph commands open the full studio (`studio.context.open_studio`): runs use vault secrets,
RBAC, the audit log and redaction. They act as the local operator (workspace "local", the
OS user or `STUDIO_USER`), or, when `STUDIO_TOKEN` is set, as that API token's principal
(its workspace and user; its scopes within the owner's current role). The administration
commands (users, workspaces, members, tokens, secrets, audit) live in `studio.admin`.

Human-readable output by default, `--json` for scripts. Errors print one line and exit 2;
nothing prints a stack trace for a mistake a person can fix.
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from components.errors import GraphInvalid, StudioError, UserError
from components.registry import default_registry
from graphs.approvals import Decision
from graphs.headless import Runtime, read_graph_file, run_file
from graphs.spec import json_schema
from graphs.validation import load_document
from studio.admin import acting_actor, add_admin_commands, emit, open_cli_studio
from studio.analytics_cli import add_analytics_commands
from studio.context import Studio


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


def _runtime(args: argparse.Namespace, *, resume: bool = True) -> AbstractContextManager[Studio]:
    """The full studio (vault secrets, RBAC, audit, redaction) for a graph command."""
    return open_cli_studio(args, resume=resume)


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
        actor = acting_actor(rt)
        run = run_file(
            Runtime(rt.engine, rt.manager),
            args.graph,
            payload,
            actor=actor,
            timeout_s=args.timeout,
            notify=notify or None,
        )
        emit(args, run, _run_line)
        if run.status == "waiting_approval" and not args.json:
            for approval in rt.manager.approvals.list(actor, run_id=run.run_id):
                print("  " + _approval_line(approval).replace("\n", "\n  "))
    return 0 if run.status in ("succeeded", "waiting_approval") else 1


def cmd_runs_list(args: argparse.Namespace) -> int:
    with _runtime(args, resume=False) as rt:
        runs = rt.manager.list(acting_actor(rt), status=args.status, limit=args.limit)
        emit(args, runs, lambda rs: "\n".join(_run_line(r) for r in rs) or "no runs")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    with _runtime(args, resume=False) as rt:
        actor = acting_actor(rt)
        run = rt.manager.get(actor, args.run_id)
        events = rt.manager.events.history(actor.workspace_id, run.run_id)
        emit(args, {"run": run, "events": events} if args.json else run, _run_line)
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
        items = rt.manager.approvals.list(acting_actor(rt), status=status)
        emit(args, items, lambda xs: "\n".join(_approval_line(a) for a in xs) or "none")
    return 0


def cmd_approvals_decide(args: argparse.Namespace) -> int:
    edited = _json_object(args.args, "--args")
    chosen = "edit" if (args.decision == "approve" and edited is not None) else args.decision
    decision = cast(Decision, chosen)  # argparse's choices are the decisions
    with _runtime(args) as rt:
        actor = acting_actor(rt, args.as_user)
        approval = rt.manager.decide(
            actor, args.approval_id, decision, args=edited, feedback=args.feedback
        )
        run = rt.manager.wait(actor, approval.run_id, timeout_s=args.timeout)
        emit(
            args,
            {"approval": approval, "run": run},
            lambda v: _approval_line(v["approval"]) + "\n" + _run_line(v["run"]),
        )
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    with _runtime(args) as rt:
        actor = acting_actor(rt)
        ids = [args.run_id] if args.run_id else [r.run_id for r in rt.manager.list(actor)]
        if args.run_id:
            rt.manager.get(actor, args.run_id)
            rt.manager.recover()
        runs = [rt.manager.wait(actor, run_id, timeout_s=args.timeout) for run_id in ids]
        emit(args, runs, lambda rs: "\n".join(_run_line(r) for r in rs) or "no runs")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    doc = load_document(read_graph_file(args.graph), default_registry())
    emit(
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


def cmd_serve(args: argparse.Namespace) -> int:
    from studio.app import serve  # NiceGUI is imported only when serving
    from studio.settings import Settings

    serve(Settings(), host=args.host, port=args.port)
    return 0


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
    ad.add_argument(
        "--as",
        dest="as_user",
        help="decide as this local user (default: $STUDIO_USER; not with $STUDIO_TOKEN)",
    )
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
    serve = sub.add_parser("serve", help="start the web studio (data: $STUDIO_DATA_DIR)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.set_defaults(func=cmd_serve)
    demo = sub.add_parser("demo", parents=[common], help="run the support-agent example")
    demo.set_defaults(func=cmd_demo)
    add_admin_commands(sub)
    add_analytics_commands(sub)
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
        _error(str(exc))
        return 2
    except ValidationError as exc:  # a STUDIO_* setting has a wrong value
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        name = "STUDIO_" + "_".join(str(p) for p in first["loc"]).upper()
        _error(f"setting {name}: {first['msg']}")
        return 2
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        _error(f"the studio database could not be used: {type(cause).__name__}: {cause}")
        return 2


def _error(message: str) -> None:
    """One line on stderr, whatever the message holds."""
    print("error: " + " ".join(message.split()), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
