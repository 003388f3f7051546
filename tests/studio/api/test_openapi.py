"""The OpenAPI document is complete: served at `/api/openapi.json` when mounted, every
operation authenticated and documented with its success schema and its problem responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from studio.api import build_api
from studio.api.errors import PROBLEM_TYPE
from tests.studio.api.support import mounted


def _schema() -> dict[str, Any]:
    with TestClient(mounted(build_api(lambda: None))) as client:  # type: ignore[arg-type, return-value]
        response = client.get("/api/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def test_the_mounted_schema_names_its_server_and_hides_the_docs() -> None:
    schema = _schema()
    assert schema["servers"] == [{"url": "/api"}]
    assert schema["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"
    with TestClient(mounted(build_api(lambda: None))) as client:  # type: ignore[arg-type, return-value]
        assert client.get("/api/docs").status_code == 404
        assert client.get("/api/redoc").status_code == 404


def test_every_operation_is_authenticated_and_fully_documented() -> None:
    schema = _schema()
    operations = [(p, m, op) for p, ops in schema["paths"].items() for m, op in ops.items()]
    assert len(operations) == 12
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op["security"] == [{"ApiToken": []}], where
        assert op.get("summary"), where
        success = [code for code in op["responses"] if code.startswith("2")]
        assert len(success) == 1, where
        content = op["responses"][success[0]]["content"]
        media, body = next(iter(content.items()))
        assert body["schema"], where  # never an empty schema
        if media == "application/json":
            assert "$ref" in body["schema"], where
        for code in ("401", "422"):
            assert code in op["responses"], where
        for code, response in op["responses"].items():
            if code[0] in "45":
                assert list(response["content"]) == [PROBLEM_TYPE], (where, code)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_request_bodies_refuse_unknown_fields(api: FastAPI) -> None:
    schemas = api.openapi()["components"]["schemas"]
    for name in ("StartRun", "Notify", "DecisionIn", "GraphDocument", "NodeDoc"):
        assert schemas[name].get("additionalProperties") is False, name
