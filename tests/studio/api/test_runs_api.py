"""`/runs`: start (202, runs in the background), read, list with filters, cancel — always in
the token's workspace, with the token's and its owner's permissions."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.studio.api.conftest import WAIT_S, ApiWorld
from tests.studio.api.test_auth_and_errors import assert_problem
from tests.tenancy_fixtures import WS_A, WS_B, snapshot


def start(client: TestClient, api_world: ApiWorld, who: str, **body: Any) -> Any:
    body.setdefault("graph_id", api_world.world.ids_a.graph_id)
    body.setdefault("input", {"order_id": "R-1"})
    return client.post("/runs", headers=api_world.auth(WS_A, who), json=body)


def test_a_run_starts_in_the_background_and_says_where_to_look(
    client: TestClient, api_world: ApiWorld
) -> None:
    response = start(client, api_world, "runner")
    assert response.status_code == 202, response.text
    body = response.json()
    run_id = body["run_id"]
    assert body["status"] in ("queued", "running", "waiting_approval")
    assert response.headers["location"] == f"/api/runs/{run_id}" == body["links"]["run"]
    assert body["links"]["events"] == f"/api/runs/{run_id}/events"
    runner = api_world.actor(WS_A, "runner")
    assert api_world.studio.manager.wait(runner, run_id, timeout_s=WAIT_S).status == (
        "waiting_approval"
    )
    run = client.get(
        body["links"]["run"].removeprefix("/api"), headers=api_world.auth(WS_A, "viewer")
    )
    assert run.status_code == 200
    got = run.json()
    assert got["status"] == "waiting_approval" and got["started_by"] == runner.user_id
    assert got["input"] == {"order_id": "R-1", "complaint": "My order arrived broken."}
    assert got["created_at"].endswith("Z")  # UTC, with its zone
    assert got["version_id"] == api_world.world.ids_a.version_id  # the latest published


def test_a_run_pinned_to_a_version_of_another_graph_is_not_found(
    client: TestClient, api_world: ApiWorld
) -> None:
    a, b = api_world.world.ids_a, api_world.world.ids_b
    before = snapshot(api_world.studio, WS_A)
    for version_id in (b.version_id, "no-such-version"):
        response = start(client, api_world, "runner", version_id=version_id)
        assert_problem(response, 404)
    other = api_world.studio.manager.library.create(
        api_world.actor(WS_A, "editor"), api_world.doc(), message="other graph"
    )
    assert_problem(start(client, api_world, "runner", version_id=other.version_id), 404)
    response = start(client, api_world, "runner", version_id=a.first_version_id)
    assert response.status_code == 202
    runner = api_world.actor(WS_A, "runner")
    pinned = api_world.studio.manager.wait(runner, response.json()["run_id"], timeout_s=WAIT_S)
    assert pinned.version_id == a.first_version_id  # pinned to the version asked for
    after = snapshot(api_world.studio, WS_A)
    assert len(after["runs"]) == len(before["runs"]) + 1


@pytest.mark.parametrize(
    "extra",
    [
        {"workspace_id": WS_B},
        {"started_by": "someone-else"},
        {"owner": "x"},
        {"role": "admin"},
        {"tier": "free"},
        {"thread_id": "run:mine"},
        {"status": "succeeded"},
        {"notify": {"webhook": None, "workspace_id": WS_B}},
    ],
)
def test_identity_and_state_fields_in_the_body_are_refused(
    client: TestClient, api_world: ApiWorld, extra: dict[str, Any]
) -> None:
    before = snapshot(api_world.studio, WS_A)["runs"], snapshot(api_world.studio, WS_B)["runs"]
    body = assert_problem(start(client, api_world, "runner", **extra), 422)
    assert "Extra inputs are not permitted" in body["detail"]
    assert (
        snapshot(api_world.studio, WS_A)["runs"],
        snapshot(api_world.studio, WS_B)["runs"],
    ) == before


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"input": {}}, "'order_id' is required"),
        ({"input": {"order_id": 7}}, "must be a string"),
        ({"input": {"order_id": "x", "nope": 1}}, "unknown input 'nope'"),
        ({"input": {"order_id": "x"}, "notify": {"email": "not-an-address"}}, "e-mail"),
        ({"input": {"order_id": "x"}, "notify": {"webhook": "ftp://x"}}, "webhook"),
        ({"input": "text"}, "valid dictionary"),
        ({"graph_id": ""}, "at least 1 character"),
    ],
)
def test_bad_input_is_a_422_that_names_the_field(
    client: TestClient, api_world: ApiWorld, body: dict[str, Any], words: str
) -> None:
    before = snapshot(api_world.studio, WS_A)["runs"]
    problem = assert_problem(start(client, api_world, "runner", **body), 422)
    assert words in problem["detail"]
    assert snapshot(api_world.studio, WS_A)["runs"] == before


def test_who_may_start_a_run(client: TestClient, api_world: ApiWorld) -> None:
    before = snapshot(api_world.studio, WS_A)["runs"]
    assert_problem(start(client, api_world, "viewer"), 403)
    assert_problem(start(client, api_world, "approver"), 403)
    reader = api_world.new_token(api_world.actor(WS_A, "admin"), ["run:read", "graph:read"])
    body = assert_problem(
        client.post(
            "/runs",
            headers={"Authorization": f"Bearer {reader}"},
            json={"graph_id": api_world.world.ids_a.graph_id, "input": {"order_id": "x"}},
        ),
        403,
    )
    assert "token" in body["detail"]
    assert snapshot(api_world.studio, WS_A)["runs"] == before


def test_list_filters_by_status_and_graph(client: TestClient, api_world: ApiWorld) -> None:
    m, a = api_world.studio.manager, api_world.world.ids_a
    other = m.library.create(api_world.actor(WS_A, "editor"), api_world.doc(), message="list")
    runner = api_world.actor(WS_A, "runner")
    run_id = m.start_run(runner, graph_id=other.graph_id, input={"order_id": "L-1"})
    m.wait(runner, run_id, timeout_s=WAIT_S)
    headers = api_world.auth(WS_A, "viewer")
    everything = client.get("/runs", headers=headers, params={"limit": 500}).json()["items"]
    assert run_id in [r["run_id"] for r in everything] and a.run_id in [
        r["run_id"] for r in everything
    ]
    created = [r["created_at"] for r in everything]
    assert created == sorted(created, reverse=True)
    of_other = client.get("/runs", headers=headers, params={"graph_id": other.graph_id}).json()
    assert [r["run_id"] for r in of_other["items"]] == [run_id]
    waiting = client.get("/runs", headers=headers, params={"status": "waiting_approval"}).json()
    assert waiting["items"] and {r["status"] for r in waiting["items"]} == {"waiting_approval"}
    assert len(client.get("/runs", headers=headers, params={"limit": 1}).json()["items"]) == 1
    for params in ({"status": "sleeping"}, {"limit": 0}, {"limit": 501}):
        assert_problem(client.get("/runs", headers=headers, params=params), 422)
    foreign = client.get(
        "/runs", headers=headers, params={"graph_id": api_world.world.ids_b.graph_id}
    )
    assert foreign.json()["items"] == []


def test_cancel_once_then_409(client: TestClient, api_world: ApiWorld) -> None:
    response = start(client, api_world, "runner", input={"order_id": "C-1"})
    run_id = response.json()["run_id"]
    runner = api_world.actor(WS_A, "runner")
    api_world.studio.manager.wait(runner, run_id, timeout_s=WAIT_S)
    assert_problem(
        client.post(f"/runs/{run_id}/cancel", headers=api_world.auth(WS_A, "viewer")), 403
    )
    cancelled = client.post(f"/runs/{run_id}/cancel", headers=api_world.auth(WS_A, "runner"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = client.post(f"/runs/{run_id}/cancel", headers=api_world.auth(WS_A, "runner"))
    assert "already cancelled" in assert_problem(again, 409)["detail"]
    approvals = api_world.studio.manager.approvals.list(runner, status=None, run_id=run_id)
    assert [x.status for x in approvals] == ["cancelled"]
