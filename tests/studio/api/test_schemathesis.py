"""schemathesis against the API's own OpenAPI schema, served at `/api/openapi.json` by the
API mounted as the web shell mounts it: generated requests — valid and invalid — never get
a 500, and every response matches the documented status codes, headers, content types and
schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, checks
from schemathesis.config import SchemathesisConfig
from starlette.applications import Starlette

from studio.api import build_api
from tests.studio.api.conftest import FAST_SSE, ApiWorld
from tests.studio.api.support import mounted
from tests.tenancy_fixtures import WS_A

HEADERS: dict[str, str] = {}
EXAMPLES = 10  # per operation and mode; the whole module stays under ~30 s on 2 cores
COVERAGE = False  # the coverage phase's boundary cases take minutes on graph documents


@pytest.fixture(scope="module")
def schema_app(api_world: ApiWorld) -> Iterator[Starlette]:
    HEADERS.update(api_world.auth(WS_A, "admin"))
    yield mounted(build_api(lambda: api_world.studio, sse_options=FAST_SSE))


@pytest.fixture(scope="module")
def api_schema(schema_app: Starlette) -> object:
    config = SchemathesisConfig.from_dict(
        {"phases": {"coverage": {"enabled": COVERAGE}}, "generation": {"max-examples": EXAMPLES}}
    )
    return schemathesis.openapi.from_asgi("/api/openapi.json", schema_app, config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


def reaches_the_api(case: Case[Any]) -> bool:
    """Starlette's `Mount("/api")` matches `/api/(.*)`, and `.` stops at LF only: a path with
    LF never reaches the API (the parent app answers it, as NiceGUI will); CR does reach it."""
    values = [unquote(v) for v in (case.path_parameters or {}).values() if isinstance(v, str)]
    return not any("\n" in v for v in values)  # some phases send them quoted


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_api_keeps_its_schema(case: Case[Any]) -> None:
    excluded = [
        # the test sends the token itself, so "no Authorization" mutations still carry it;
        # and FastAPI ignores unknown query parameters by design
        checks.negative_data_rejection,
    ]
    if case.operation.path == "/graphs/import":
        # JSON Schema describes a document's shape, not its meaning (an entry node that
        # exists, edges between known nodes): a well-shaped document may still be a 422
        excluded.append(checks.positive_data_acceptance)
    if not reaches_the_api(case):
        assert case.call(headers=HEADERS).status_code == 404  # the parent app's own 404
        return
    response = case.call_and_validate(headers=HEADERS, excluded_checks=excluded)
    assert str(response.request.url).split("/", 3)[3].startswith("api/")  # the server
