"""The HTTP app's own endpoints: health and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import make_settings
from trigger.http import create_app, register_health


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


@pytest.mark.anyio
async def test_a_failing_health_provider_makes_healthz_503(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    settings.state_path.mkdir(parents=True)
    register_health("test-broken", lambda: {"ok": False, "error": "watcher lost its folder"})
    try:
        response = await _get(create_app(settings), "/healthz")
    finally:
        from trigger import http

        http._HEALTH.pop("test-broken")
    assert response.status_code == 503
    assert response.json()["checks"]["test-broken"]["ok"] is False


@pytest.mark.anyio
async def test_every_endpoint_is_in_the_openapi_document(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    response = await _get(create_app(settings), "/openapi.json")
    assert "/healthz" in response.json()["paths"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
