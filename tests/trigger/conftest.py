"""Webhook fixtures: secrets in the environment, and the app served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.trigger.fuzzkit import Ingress, database, running_ingress
from tests.trigger.hookkit import GITHUB_SECRET, GITLAB_TOKEN, OTHER_SECRET, WHSEC, LiveServer


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
    monkeypatch.setenv("OTHER_WEBHOOK_SECRET", OTHER_SECRET)
    monkeypatch.setenv("GITLAB_WEBHOOK_TOKEN", GITLAB_TOKEN)
    monkeypatch.setenv("GENERIC_WEBHOOK_SECRET", WHSEC)


@pytest.fixture
def hooks(launched: Any) -> Iterator[Any]:
    """``hooks(**overrides) -> (settings, enqueuer, base_url)``: DBOS launched in this
    process (both backends) and the HTTP app on an ephemeral loopback port."""
    from trigger.context import ServiceContext
    from trigger.service import create_app

    servers: list[LiveServer] = []

    def start(**overrides: Any) -> tuple[Any, Any, str]:
        settings, enqueuer = launched(**overrides)
        context = ServiceContext(settings=settings, role="all", enqueuer=enqueuer)
        server = LiveServer(create_app(settings, context)).__enter__()
        servers.append(server)
        return settings, enqueuer, server.url

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def ingress(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Ingress]:
    """One ingress (no DBOS executor) per test module and database, for the property
    suites: an example costs a request, not a DBOS launch (tests/trigger/fuzzkit.py)."""
    with (
        database(request.param) as url,
        running_ingress(tmp_path_factory.mktemp("ingress"), url) as ingress,
    ):
        yield ingress


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    """The watched folder of the file-drop tests."""
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
