"""``/docs`` works without internet: Swagger UI from the package, behind the page's guard."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from tests.support import make_settings
from tests.trigger.server import client_for, running
from trigger.http.credentials import COOKIE
from trigger.service import create_app

ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def _app(tmp_path: Path, project_dir: Path, **overrides: Any) -> Any:
    settings = make_settings(tmp_path, None, project_dir, **overrides)
    settings.state_path.mkdir(parents=True, exist_ok=True)
    return create_app(settings)


def test_the_docs_page_loads_nothing_from_elsewhere(tmp_path: Path, project_dir: Path) -> None:
    app = _app(tmp_path, project_dir)
    with client_for(app) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert re.findall(r"https?://|//cdn|jsdelivr|unpkg", page.text) == []
        linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sorted(linked) == sorted(f"/docs/assets/{name}" for name in ASSETS)
        assert "url: '/openapi.json'" in page.text
        for name in ASSETS:
            asset = client.get(f"/docs/assets/{name}")
            assert asset.status_code == 200, name
            assert asset.content == (Path(swagger_ui_path) / name).read_bytes()
        assert client.get("/docs/assets/index.html").json() == {
            "error": "no docs asset named 'index.html'"
        }
        assert client.get("/redoc").status_code == 404
    app.state.bauplan_trigger.engine.dispose()


def test_the_docs_open_where_the_page_opens(
    tmp_path: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = _app(tmp_path / "off", project_dir, service={"listen": "0.0.0.0:8080"})
    with client_for(off) as client:
        for path in ("/docs", "/docs/assets/swagger-ui.css", "/"):
            refused = client.get(path)
            assert refused.status_code == 403, path
            assert "no API token is configured" in refused.json()["error"]
    off.state.bauplan_trigger.engine.dispose()

    monkeypatch.setenv("BT_TEST_API_TOKEN", "docs-token")
    guarded = _app(tmp_path / "on", project_dir, api={"token_env": "BT_TEST_API_TOKEN"})
    with client_for(guarded) as client:
        assert client.get("/docs").status_code == 401
        bearer = client.get("/docs", headers={"Authorization": "Bearer docs-token"})
        assert bearer.status_code == 200
        login = client.get("/docs", params={"token": "docs-token"})
        assert login.status_code == 303 and login.headers["location"] == "/docs"
        assert client.cookies.get(COOKIE)
        assert client.get("/docs").status_code == 200  # with the cookie, as the page
        assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
        assert client.get("/openapi.json").status_code == 200  # the document is public
    guarded.state.bauplan_trigger.engine.dispose()


def test_swagger_ui_renders_every_operation_in_a_browser_offline(
    tmp_path: Path, project_dir: Path
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    app = _app(tmp_path, project_dir)
    with running(app) as url:
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--virtual-time-budget=20000",
                "--dump-dom",
                f"{url}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    app.state.bauplan_trigger.engine.dispose()
    shown = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/api/runs", "/api/runs/{run_id}/resume", "/hooks/github", "/healthz"} <= shown
