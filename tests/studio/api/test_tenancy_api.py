"""Tenancy through the API (TESTING.md "Tenancy", P0): every route that takes an id, with
every id of workspace A, called with each API token of workspace B, answers exactly what a
made-up id answers — 404 for B's admin — and changes nothing of A. Lists never show A."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.studio.api.conftest import ApiWorld
from tests.studio.api.test_auth_and_errors import assert_problem
from tests.tenancy_fixtures import ROLES, WS_A, WS_B, Ids, snapshot

Call = Callable[[TestClient, dict[str, str], Ids, Ids], Any]


def _decide(attr: str, decision: str) -> Call:
    def call(c: TestClient, h: dict[str, str], ids: Ids, _own: Ids) -> Any:
        body: dict[str, Any] = {"decision": decision}
        if decision == "edit":
            body["args"] = {"order_id": "A-1", "amount": 0.01}
        return c.post(f"/approvals/{getattr(ids, attr)}/decision", headers=h, json=body)

    return call


ROUTES: dict[str, Call] = {
    "GET run": lambda c, h, ids, _o: c.get(f"/runs/{ids.run_id}", headers=h),
    "POST cancel": lambda c, h, ids, _o: c.post(f"/runs/{ids.run_id}/cancel", headers=h),
    "GET events": lambda c, h, ids, _o: c.get(f"/runs/{ids.run_id}/events", headers=h),
    "GET events after": lambda c, h, ids, _o: c.get(
        f"/runs/{ids.run_id}/events", headers={**h, "Last-Event-ID": "1"}
    ),
    "POST run(graph)": lambda c, h, ids, _o: c.post(
        "/runs", headers=h, json={"graph_id": ids.graph_id, "input": {"order_id": "X"}}
    ),
    "POST run(own graph, A's version)": lambda c, h, ids, own: c.post(
        "/runs",
        headers=h,
        json={"graph_id": own.graph_id, "version_id": ids.version_id, "input": {"order_id": "X"}},
    ),
    "GET approval(pending)": lambda c, h, ids, _o: c.get(
        f"/approvals/{ids.refund_approval_id}", headers=h
    ),
    "GET approval(decided)": lambda c, h, ids, _o: c.get(
        f"/approvals/{ids.email_approval_id}", headers=h
    ),
    **{
        f"POST decision({which}, {decision})": _decide(attr, decision)
        for which, attr in (("pending", "refund_approval_id"), ("decided", "email_approval_id"))
        for decision in ("approve", "edit", "reject")
    },
    "GET graph": lambda c, h, ids, _o: c.get(f"/graphs/{ids.graph_id}", headers=h),
    "GET export": lambda c, h, ids, _o: c.get(f"/graphs/{ids.graph_id}/export", headers=h),
    "GET export(v1)": lambda c, h, ids, _o: c.get(
        f"/graphs/{ids.graph_id}/export?version=1", headers=h
    ),
}


def _masked(detail: str, ids: Ids) -> str:
    for value in (ids.run_id, ids.graph_id, ids.version_id, ids.first_version_id):
        detail = detail.replace(value, "?")
    for value in (ids.refund_approval_id, ids.email_approval_id):
        detail = detail.replace(value, "?")
    return detail


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("route", list(ROUTES))
def test_a_token_of_b_finds_nothing_of_a(
    client: TestClient, api_world: ApiWorld, route: str, who: str
) -> None:
    headers = api_world.auth(WS_B, who)
    a, b = api_world.world.ids_a, api_world.world.ids_b
    before = snapshot(api_world.studio, WS_A)
    sent = len(api_world.world.receiver.effects)
    real = ROUTES[route](client, headers, a, b)
    made_up_ids = Ids.made_up()
    made_up = ROUTES[route](client, headers, made_up_ids, b)
    assert (real.status_code, real.headers["content-type"]) == (
        made_up.status_code,
        made_up.headers["content-type"],
    ), f"A's id answers {real.status_code}, a made-up one {made_up.status_code}"
    assert _masked(real.json()["detail"], a) == _masked(made_up.json()["detail"], made_up_ids)
    expected = (404,) if who == "admin" else (404, 403)
    assert_problem(real, real.status_code)
    assert real.status_code in expected, (who, route, real.text)
    assert snapshot(api_world.studio, WS_A) == before
    assert len(api_world.world.receiver.effects) == sent


@pytest.mark.parametrize("who", ROLES)
def test_lists_of_b_never_show_a(client: TestClient, api_world: ApiWorld, who: str) -> None:
    headers, a = api_world.auth(WS_B, who), api_world.world.ids_a
    a_ids = {a.run_id, a.graph_id, a.refund_approval_id, a.email_approval_id}
    lists: list[tuple[str, dict[str, Any]]] = [
        ("/runs", {"limit": 500}),
        ("/runs", {"graph_id": a.graph_id}),
        ("/approvals", {"status": "all", "limit": 200}),
        ("/approvals", {"run_id": a.run_id, "status": "all"}),
        ("/graphs", {}),
        ("/graphs", {"q": "Support"}),
    ]
    for path, params in lists:
        response = client.get(path, headers=headers, params=params)
        if response.status_code == 403:
            continue
        assert response.status_code == 200, response.text
        for object_id in a_ids:
            assert object_id not in response.text, (path, params)
    own = client.get("/runs", headers=headers)
    if own.status_code == 200:
        assert api_world.world.ids_b.run_id in [r["run_id"] for r in own.json()["items"]]
