"""The HTTP app's own endpoints: health and the OpenAPI document."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, make_settings
from trigger.core.errors import TriggerError
from trigger.http.app import build_app
from trigger.service import ROUTERS, create_app


async def _get(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)
    finally:
        app.state.bauplan_trigger.engine.dispose()


@pytest.mark.anyio
async def test_healthz_is_ok_when_the_database_answers(
    tmp_path: Path, backend: str | None, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, backend, project_dir)
    settings.state_path.mkdir(parents=True)
    response = await _get(create_app(settings), "/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == {"ok": True}


@pytest.mark.anyio
async def test_healthz_is_503_when_the_database_is_unreachable(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, "postgresql://postgres@127.0.0.1:9/nowhere", project_dir)
    response = await _get(create_app(settings), "/healthz")
    assert response.status_code == 503
    assert response.json()["ok"] is False
    assert "unreachable" in response.json()["checks"]["database"]["error"]
    assert response.json()["error"].startswith("unhealthy: database: system database unreachable (")


@pytest.mark.anyio
async def test_a_failing_health_provider_makes_healthz_503(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    settings.state_path.mkdir(parents=True)
    broken = {"test-broken": lambda: {"ok": False, "error": "watcher lost its folder"}}
    response = await _get(build_app(settings, None, ROUTERS, broken), "/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["test-broken"]["ok"] is False
    assert response.json()["error"] == "unhealthy: test-broken: watcher lost its folder"


@pytest.mark.anyio
async def test_every_endpoint_is_in_the_openapi_document(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    response = await _get(create_app(settings), "/openapi.json")
    assert "/healthz" in response.json()["paths"]


@pytest.mark.anyio
async def test_the_document_tells_every_answer_and_the_bearer_token(
    tmp_path: Path, project_dir: Path
) -> None:
    """Each operation names its answers' schemas, its refusals in the one error model, and,
    on the API and /metrics, the bearer token; the hooks keep their signature headers."""
    settings = make_settings(tmp_path, None, project_dir)
    doc = (await _get(create_app(settings), "/openapi.json")).json()
    assert doc["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "description": ANY_TEXT}
    }
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            label = f"{method.upper()} {path}"
            answers = operation["responses"]
            if path != "/metrics":  # Prometheus text
                ok = answers["200"]["content"]["application/json"]["schema"]
                assert "$ref" in str(ok), label  # a declared model, not "any"
            refusals = {code: a for code, a in answers.items() if code >= "400"}
            for code, answer in refusals.items():
                if path != "/healthz":
                    assert answer["content"]["application/json"]["schema"] == error, (label, code)
            guarded = path.startswith("/api/") or path == "/metrics"
            assert (operation.get("security") == [{"bearer": []}]) is guarded, label
            if guarded:
                assert {"401", "403", "421"} <= set(refusals), label
            if path.startswith("/api/"):
                assert "422" in refusals and "503" in refusals, label
            if "{run_id}" in path or "{name}" in path or "{ident}" in path:
                assert "404" in refusals, label
            if method == "post" and path.startswith("/api/"):
                assert {"400", "404", "409", "415"} <= set(refusals), label
    actions = ("retry", "cancel", "resume")
    for action in actions:
        operation = doc["paths"][f"/api/runs/{{run_id}}/{action}"]["post"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ActionResult"}
    github = doc["paths"]["/hooks/github"]["post"]
    assert {p["name"] for p in github["parameters"]} >= {"x-hub-signature-256"}
    assert github["requestBody"]["content"]["application/json"]["schema"] == {"type": "object"}
    run_status = doc["paths"]["/api/runs"]["get"]["parameters"]
    [status] = [p for p in run_status if p["name"] == "status"]
    assert "superseded" in str(status["schema"])
    assert "/docs" not in doc["paths"] and "/redoc" not in doc["paths"]


class _AnyText(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    __hash__ = str.__hash__


ANY_TEXT = _AnyText()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _listening(tmp_path: Path, project_dir: Path, port: int, **service: Any) -> Any:
    from trigger.http.app import _bind

    settings = make_settings(
        tmp_path, None, project_dir, service={"listen": f"127.0.0.1:{port}", **service}
    )
    return _bind(settings)


def test_answers_are_not_held_back_by_nagle(tmp_path: Path, project_dir: Path) -> None:
    """Accepted connections inherit TCP_NODELAY; without it every answer waited for the
    client's delayed ACK, 40 ms on Linux."""
    sock = _listening(tmp_path, project_dir, free_port())
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()


def test_a_taken_port_is_refused_unless_reuse_port_is_on(tmp_path: Path, project_dir: Path) -> None:
    port = free_port()
    first = _listening(tmp_path, project_dir, port)
    first.listen()
    try:
        with pytest.raises(TriggerError, match=f"cannot listen on 127.0.0.1:{port}"):
            _listening(tmp_path, project_dir, port)
    finally:
        first.close()
    shared = [_listening(tmp_path, project_dir, port, reuse_port=True) for _ in range(2)]
    for sock in shared:
        sock.listen()
        sock.close()
