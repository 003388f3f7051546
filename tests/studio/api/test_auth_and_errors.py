"""Authentication and the error mapping: every route wants a valid bearer token (401
otherwise, one message for every way a token fails), and every error is a problem document
with no stack trace and no secret value."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from auth.tokens import REJECTED
from studio.api.errors import PROBLEM_TYPE
from tests.studio.api.conftest import ApiWorld, bearer
from tests.studio.api.support import mounted
from tests.tenancy_fixtures import A_SECRET_VALUE, WS_A

ROUTES = [
    ("GET", "/runs"),
    ("POST", "/runs"),
    ("GET", "/runs/x"),
    ("POST", "/runs/x/cancel"),
    ("GET", "/runs/x/events"),
    ("GET", "/approvals"),
    ("GET", "/approvals/x"),
    ("POST", "/approvals/x/decision"),
    ("GET", "/graphs"),
    ("GET", "/graphs/x"),
    ("GET", "/graphs/x/export"),
    ("POST", "/graphs/import"),
]


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def test_every_route_is_in_this_list(api: FastAPI) -> None:
    documented = {
        (method.upper(), path.replace("{run_id}", "x").replace("{approval_id}", "x"))
        for path, ops in api.openapi()["paths"].items()
        for method in ops
    }
    documented = {(m, p.replace("{graph_id}", "x")) for m, p in documented}
    assert documented == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_token_is_401_with_a_bearer_challenge(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, json={})
    body = assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in body["detail"]


def _bad_tokens(api_world: ApiWorld) -> Iterator[tuple[str, dict[str, str]]]:
    studio = api_world.studio
    yield "garbage", bearer("not-a-token")
    yield "oversized", bearer("sk_abcdefgh_" + "A" * 5000)
    good = api_world.token(WS_A, "viewer")
    yield "wrong secret", bearer(good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"))
    yield "basic scheme", {"Authorization": f"Basic {good}"}
    revoked = api_world.new_token(api_world.actor(WS_A, "viewer"), ["run:read"])
    [view] = [
        t
        for t in studio.tokens.list_tokens(api_world.actor(WS_A, "viewer"))
        if revoked.startswith(f"sk_{t.prefix}_")
    ]
    studio.tokens.revoke_token(api_world.actor(WS_A, "viewer"), view.token_id)
    yield "revoked", bearer(revoked)
    gone = api_world.world.new_user(WS_A, "viewer")
    token = api_world.new_token(gone, ["run:read"])
    studio.disable_user(gone.user_id)
    yield "owner disabled", bearer(token)
    expiring, _ = studio.tokens.create_token(
        api_world.actor(WS_A, "viewer"),
        name="short",
        actions=["run:read"],
        expires_in=timedelta(microseconds=1),
    )
    yield "expired", bearer(expiring)


def test_every_bad_token_gets_the_same_401(client: TestClient, api_world: ApiWorld) -> None:
    for case, headers in _bad_tokens(api_world):
        body = assert_problem(client.get("/runs", headers=headers), 401)
        expected = REJECTED if case != "basic scheme" else body["detail"]
        assert body["detail"] == expected, case
    assert client.get("/runs", headers=api_world.auth(WS_A, "viewer")).status_code == 200


def test_unknown_routes_and_methods_are_problems_too(client: TestClient) -> None:
    assert_problem(client.get("/nowhere"), 404)
    assert_problem(client.delete("/runs"), 405)
    assert client.get("/docs").status_code == 404  # no interactive docs
    assert client.get("/openapi.json").status_code == 200


def test_an_unexpected_failure_is_a_bare_500(
    api_world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.api import build_api

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"database exploded near {A_SECRET_VALUE}")

    monkeypatch.setattr(api_world.studio.manager, "list", boom)
    app = mounted(build_api(lambda: api_world.studio))
    with TestClient(app, base_url="http://testserver/api", raise_server_exceptions=False) as c:
        response = c.get("/runs", headers=api_world.auth(WS_A, "viewer"))
    body = assert_problem(response, 500)
    assert "exploded" not in response.text and A_SECRET_VALUE not in response.text
    assert body["detail"] == "the server failed; the error is in its log"


def test_error_messages_never_carry_a_secret_value(client: TestClient, api_world: ApiWorld) -> None:
    """A client that sends a secret value in a field name gets it back redacted."""
    response = client.post(
        "/runs",
        headers=api_world.auth(WS_A, "runner"),
        json={"graph_id": api_world.world.ids_a.graph_id, "input": {A_SECRET_VALUE: 1}},
    )
    assert_problem(response, 422)
    assert A_SECRET_VALUE not in response.text and "[redacted]" in response.text


def test_validation_errors_do_not_echo_the_input(client: TestClient, api_world: ApiWorld) -> None:
    response = client.post(
        "/runs",
        headers=api_world.auth(WS_A, "runner"),
        json={"graph_id": "g", "workspace_id": "my-very-own-input-canary"},
    )
    body = assert_problem(response, 422)
    assert "my-very-own-input-canary" not in response.text
    assert body["errors"] == [
        {"loc": ["body", "workspace_id"], "message": "Extra inputs are not permitted"}
    ]
