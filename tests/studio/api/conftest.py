"""Fixtures of the API tests: one studio with two workspaces (see `tests.tenancy_fixtures`),
an API token per role in each, and clients for the API mounted at `/api`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from auth.actions import ACTIONS, role_actions
from components.base import HttpPolicy
from graphs.identity import Actor
from studio.api import SseOptions, build_api
from studio.context import Studio, open_studio
from studio.settings import Settings
from tests.loopback.http_receiver import HttpReceiver
from tests.studio.api.support import mounted
from tests.tenancy_fixtures import ROLES, WS_A, WS_B, World, build_world

WAIT_S = 30.0
FAST_SSE = SseOptions(heartbeat_s=0.3, window_s=0.5, recheck_s=1.0, settle_s=1.0)


@dataclass
class ApiWorld:
    world: World
    tokens: dict[tuple[str, str], str] = field(default_factory=dict)  # (ws, role) → token

    @property
    def studio(self) -> Studio:
        return self.world.studio

    def actor(self, workspace_id: str, role: str) -> Actor:
        return self.world.actor(workspace_id, role)

    def token(self, workspace_id: str, role: str) -> str:
        return self.tokens[(workspace_id, role)]

    def auth(self, workspace_id: str, role: str) -> dict[str, str]:
        return bearer(self.token(workspace_id, role))

    def new_token(self, actor: Actor, actions: list[str] | None = None) -> str:
        value, _ = self.studio.tokens.create_token(
            actor, name="test", actions=sorted(actions or ACTIONS)
        )
        return value

    def doc(self) -> dict[str, Any]:
        return self.world.doc()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def open_world(tmp: Path) -> Iterator[ApiWorld]:
    with pytest.MonkeyPatch.context() as mp, HttpReceiver() as receiver:
        mp.delenv("STUDIO_SECRET_KEY", raising=False)
        receiver.route("/refunds", status=201, body={"refund": "accepted"})
        policy = HttpPolicy(allow_hosts=frozenset({receiver.host_port}), timeout_s=5)
        with open_studio(Settings(data_dir=tmp), http=policy, lease_ttl_s=5) as studio:
            world = ApiWorld(build_world(studio, receiver))
            for ws in (WS_A, WS_B):
                for role in ROLES:
                    world.tokens[(ws, role)] = world.new_token(
                        world.actor(ws, role), sorted(role_actions(role))
                    )
            yield world


@pytest.fixture(scope="module")
def api_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiWorld]:
    yield from open_world(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def api(api_world: ApiWorld) -> FastAPI:
    return build_api(lambda: api_world.studio, sse_options=FAST_SSE)


@pytest.fixture(scope="module")
def client(api: FastAPI) -> Iterator[TestClient]:
    with TestClient(mounted(api), base_url="http://testserver/api") as test_client:
        yield test_client
