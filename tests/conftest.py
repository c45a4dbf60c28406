"""Shared fixtures: real DBOS on SQLite and PostgreSQL, real subprocesses.

Every durable-side test takes the ``backend`` fixture and runs once per
database. PostgreSQL tests get a fresh database each; in CI (``CI=true``) an
unreachable server fails them instead of skipping, and a server that answers but
refuses us (authentication, a missing database) fails them everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServeProcess, fresh_database, make_project, make_settings

_OUR_ENV_PREFIXES = ("BAUPLAN_TRIGGER_", "BAUPLAN_", "DBOS_")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees our variables from the machine, nor a real ~/.bauplan profile."""
    for key in list(os.environ):
        if key.startswith(_OUR_ENV_PREFIXES):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """``None`` for SQLite (a file under state_dir), else a fresh PostgreSQL URL."""
    if request.param == "sqlite":
        yield None
        return
    request.applymarker(pytest.mark.postgres)
    with fresh_database() as url:
        yield url


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database, for behaviour that exists on PostgreSQL only."""
    request.applymarker(pytest.mark.postgres)
    with fresh_database() as url:
        yield url


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A Bauplan project folder, as far as rehearsal mode can tell."""
    return make_project(tmp_path / "pipelines" / "orders", "test", "orders")


@pytest.fixture
def settings_factory(tmp_path: Path, backend: str | None, project_dir: Path) -> Any:
    def build(**overrides: Any) -> Any:
        return make_settings(tmp_path, backend, project_dir, **overrides)

    return build


@pytest.fixture
def launched(settings_factory: Any) -> Iterator[Any]:
    """DBOS launched in this process, like ``serve --role all``; yields a starter that
    takes settings overrides and returns ``(settings, enqueuer)``."""
    from workflows import app
    from workflows.intake import Enqueuer

    enqueuers: list[Enqueuer] = []
    state: dict[str, bool] = {"launched": False}

    def start(**overrides: Any) -> tuple[Any, Enqueuer]:
        settings = settings_factory(**overrides)
        app.launch(settings)
        state["launched"] = True
        enqueuer = Enqueuer(settings)
        enqueuers.append(enqueuer)
        return settings, enqueuer

    yield start
    for enqueuer in enqueuers:
        enqueuer.close()
    if state["launched"]:
        app.shutdown()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Any]:
    """Start ``bauplan-trigger serve`` subprocesses; all are killed at teardown."""
    started: list[ServeProcess] = []

    def start(
        config: Path, env: dict[str, str] | None = None, role: str = "all", wait: bool = True
    ) -> ServeProcess:
        """``wait=False`` for a serve expected to refuse to start."""
        proc = ServeProcess(config, tmp_path, env or {}, role=role)
        proc.start(wait=wait)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
