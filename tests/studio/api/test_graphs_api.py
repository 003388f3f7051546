"""`/graphs`: list and search, read, export (secret names only), import (validated, located
problems, size limit; nothing stored when refused)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from studio.api import MAX_BODY_BYTES
from studio.api.graphs import MAX_IMPORT_BYTES
from tests.conftest import example
from tests.studio.api.conftest import ApiWorld
from tests.studio.api.test_auth_and_errors import assert_problem
from tests.tenancy_fixtures import A_SECRET, A_SECRET_VALUE, B_SECRET_VALUE, WS_A, snapshot

EXAMPLES = ("support_agent", "triage_router", "dataset_report")


def graph_rows(api_world: ApiWorld) -> tuple[int, int]:
    rows = snapshot(api_world.studio, WS_A)
    return len(rows["graphs"]), len(rows["graph_versions"])


def import_raw(client: TestClient, api_world: ApiWorld, content: bytes, who: str = "editor") -> Any:
    headers = {**api_world.auth(WS_A, who), "Content-Type": "application/json"}
    return client.post("/graphs/import", headers=headers, content=content)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_imports_exports_and_round_trips(
    client: TestClient, api_world: ApiWorld, name: str
) -> None:
    doc = example(name)
    imported = import_raw(client, api_world, json.dumps(doc).encode())
    assert imported.status_code == 201, imported.text
    body = imported.json()
    assert (
        imported.headers["location"] == body["links"]["graph"] == f"/api/graphs/{body['graph_id']}"
    )
    assert body["name"] == doc["name"] and body["version"]["number"] == 1
    exported = client.get(
        f"/graphs/{body['graph_id']}/export", headers=api_world.auth(WS_A, "editor")
    )
    assert exported.status_code == 200
    assert exported.headers["content-disposition"].startswith("attachment")
    assert exported.json()["schema_version"] == 1
    again = import_raw(client, api_world, exported.content)
    assert again.status_code == 201
    assert again.json()["document"] == exported.json() == body["document"]


def test_an_export_names_secrets_and_never_holds_their_values(
    client: TestClient, api_world: ApiWorld
) -> None:
    doc = api_world.doc()
    doc["secrets"] = [A_SECRET]
    refund = next(t for t in doc["tools"] if t["name"] == "issue_refund")
    refund["config"]["secret_headers"] = {"X-Api-Key": A_SECRET}
    created = import_raw(client, api_world, json.dumps(doc).encode()).json()
    response = client.get(
        f"/graphs/{created['graph_id']}/export", headers=api_world.auth(WS_A, "admin")
    )
    assert response.json()["secrets"] == [A_SECRET]
    for secret in (A_SECRET_VALUE, B_SECRET_VALUE):
        assert secret not in response.text


def test_list_search_and_read(client: TestClient, api_world: ApiWorld) -> None:
    headers = api_world.auth(WS_A, "viewer")
    doc = api_world.doc()
    doc["name"] = "Quarterly Ünïcode REPORT"
    editor = api_world.actor(WS_A, "editor")
    made = api_world.studio.manager.library.create(editor, doc)
    listed = client.get("/graphs", headers=headers).json()["items"]
    assert made.graph_id in [g["graph_id"] for g in listed]
    assert api_world.world.ids_b.graph_id not in [g["graph_id"] for g in listed]
    found = client.get("/graphs", headers=headers, params={"q": "QUARTERLY"}).json()["items"]
    assert [g["graph_id"] for g in found] == [made.graph_id]
    assert client.get("/graphs", headers=headers, params={"q": "%"}).json()["items"] == []
    detail = client.get(f"/graphs/{api_world.world.ids_a.graph_id}", headers=headers).json()
    assert detail["version"]["version_id"] == api_world.world.ids_a.version_id
    assert [v["number"] for v in detail["versions"]] == [2, 1]
    assert detail["document"]["schema_version"] == 1
    assert_problem(
        client.get(f"/graphs/{api_world.world.ids_a.graph_id}/export", headers=headers), 403
    )
    export_v1 = client.get(
        f"/graphs/{api_world.world.ids_a.graph_id}/export",
        headers=api_world.auth(WS_A, "editor"),
        params={"version": 1},
    )
    assert export_v1.status_code == 200
    missing = client.get(
        f"/graphs/{api_world.world.ids_a.graph_id}/export",
        headers=api_world.auth(WS_A, "editor"),
        params={"version": 99},
    )
    assert_problem(missing, 404)


def _bad_documents() -> Iterator[tuple[str, bytes, list[str]]]:
    """(case, body, words every one of which the problem text must contain)."""
    doc = example("support_agent")
    doc["nodes"][0]["type"] = "no_such_type"
    doc["edges"].append({"source": "done", "target": "nowhere"})
    yield "bad node and edge", json.dumps(doc).encode(), ["'agent'", "no_such_type", "nowhere"]
    yield "not JSON", b"{nodes: [", ["JSON"]
    yield "empty", b"", []
    yield "a list", b"[]", []
    yield "deep", b"[" * 5000 + b"]" * 5000, ["deep"]
    hostile = example("support_agent")
    hostile["name"] = "Evil\u202egnp.exe"
    yield "bidi override", json.dumps(hostile).encode(), ["U+202E"]
    smuggled = example("support_agent")
    smuggled["workspace_id"] = "ws-b"
    yield "workspace field", json.dumps(smuggled).encode(), ["workspace_id"]
    dup = b'{"schema_version": 1, "schema_version": 1, "name": "x", "entry": "a", "nodes": []}'
    yield "duplicate key", dup, ["schema_version"]
    yield "not UTF-8", b'{"name": "\xff\xfe"}', []


@pytest.mark.parametrize(("case", "content", "words"), list(_bad_documents()))
def test_an_invalid_document_is_a_422_with_located_problems_and_nothing_stored(
    client: TestClient, api_world: ApiWorld, case: str, content: bytes, words: list[str]
) -> None:
    before = graph_rows(api_world)
    problem = assert_problem(import_raw(client, api_world, content), 422)
    assert problem["problems"], case
    text = json.dumps(problem)
    for word in words:
        assert word in text, (case, word, text[:500])
    if case == "bad node and edge":
        assert any(p["node_id"] == "agent" for p in problem["problems"])
        assert any(p["edge_id"] == "done->nowhere" for p in problem["problems"])
    assert graph_rows(api_world) == before


def test_an_oversized_document_is_a_413_and_nothing_stored(
    client: TestClient, api_world: ApiWorld
) -> None:
    before = graph_rows(api_world)
    doc = example("support_agent")
    doc["description"] = "x" * 1000
    doc["nodes"][0]["config"]["system_prompt"] = "y" * (MAX_IMPORT_BYTES + 10)
    big = json.dumps(doc).encode()
    problem = assert_problem(import_raw(client, api_world, big), 413)
    assert f"{MAX_IMPORT_BYTES:,} bytes" in problem["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    headers = {**api_world.auth(WS_A, "editor"), "Content-Type": "application/json"}
    streamed = client.post("/graphs/import", headers=headers, content=chunks())
    assert_problem(streamed, 413)
    huge_run = client.post(
        "/runs",
        headers=api_world.auth(WS_A, "runner"),
        json={"graph_id": "g", "input": {"blob": "z" * (MAX_BODY_BYTES + 1)}},
    )
    assert_problem(huge_run, 413)
    blob = json.dumps({"graph_id": "g", "input": {"blob": "z" * (MAX_BODY_BYTES + 1)}}).encode()
    counted = client.post(  # chunked, no Content-Length: counted while it is read
        "/runs",
        headers={**api_world.auth(WS_A, "runner"), "Content-Type": "application/json"},
        content=(blob[i : i + 65536] for i in range(0, len(blob), 65536)),
    )
    assert_problem(counted, 413)
    assert graph_rows(api_world) == before


@pytest.mark.parametrize("who", ["viewer", "runner", "approver"])
def test_only_editors_import(client: TestClient, api_world: ApiWorld, who: str) -> None:
    before = graph_rows(api_world)
    content = json.dumps(example("support_agent")).encode()
    assert_problem(import_raw(client, api_world, content, who=who), 403)
    assert graph_rows(api_world) == before
