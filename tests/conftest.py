"""Shared fixtures: real SQLite files in tmp_path, loopback receivers, example graphs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.base import HttpPolicy
from graphs.headless import Runtime, open_runtime
from graphs.identity import Actor
from tests.loopback.http_receiver import HttpReceiver

pytest_plugins = ["nicegui.testing.user_plugin"]

EXAMPLES = Path(__file__).resolve().parent.parent / "graphs" / "examples"


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def support_doc(receiver: HttpReceiver) -> dict[str, Any]:
    """The support-agent example with its refund endpoint pointed at `receiver`."""
    doc = example("support_agent")
    refund = next(t for t in doc["tools"] if t["name"] == "issue_refund")
    refund["config"]["url"] = receiver.url_for("/refunds")
    return doc


def question_answer_doc(
    name: str, node_config: dict[str, Any], tools: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One `llm` node (`agent`) answering the input `question` into `answer`; `tools` are
    declared in the graph and offered to the node."""
    doc: dict[str, Any] = {
        "schema_version": 1,
        "name": name,
        "entry": "agent",
        "state": [
            {"name": "question", "type": "string", "input": True},
            {"name": "answer", "type": "string"},
        ],
        "nodes": [{"id": "agent", "type": "llm", "config": node_config}],
        "edges": [],
    }
    if tools:
        doc["tools"] = tools
        node_config["tools"] = [t["name"] for t in tools]
    return doc


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        server.route("/refunds", status=201, body={"refund": "accepted"})
        yield server


@pytest.fixture
def runtime(tmp_path: Path, receiver: HttpReceiver) -> Iterator[Runtime]:
    policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
    with open_runtime(tmp_path / "studio.db", http=policy, lease_ttl_s=5) as rt:
        yield rt


@pytest.fixture
def alice() -> Actor:
    return Actor("acme", "alice")


@pytest.fixture
def bob() -> Actor:
    """An approver in alice's workspace."""
    return Actor("acme", "bob")


@pytest.fixture
def mallory() -> Actor:
    """Someone from another workspace."""
    return Actor("evil-corp", "mallory")
