"""The graph language and its runtime: spec, validation, compiler, run manager, approvals,
effect ledger, checkpoints and the headless runner."""

from graphs.approvals import ApprovalView
from graphs.headless import Runtime, local_actor, open_runtime, run_document, run_file
from graphs.identity import Actor
from graphs.runs import FINAL_STATUSES, RunManager, RunView
from graphs.spec import END, SCHEMA_VERSION, GraphDocument, json_schema
from graphs.validation import load_document

__all__ = [
    "END",
    "FINAL_STATUSES",
    "SCHEMA_VERSION",
    "Actor",
    "ApprovalView",
    "GraphDocument",
    "RunManager",
    "RunView",
    "Runtime",
    "json_schema",
    "load_document",
    "local_actor",
    "open_runtime",
    "run_document",
    "run_file",
]
