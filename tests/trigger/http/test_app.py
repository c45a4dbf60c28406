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


@pytest.mark.anyio
async def test_every_endpoint_is_in_the_openapi_document(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    response = await _get(create_app(settings), "/openapi.json")
    assert "/healthz" in response.json()["paths"]


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
