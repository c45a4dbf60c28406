"""The API token never sits in a URL or a cookie: /api and /metrics take only the header, the
page trades a ``?token=`` for a derived cookie once. Real HTTP on loopback; DBOS on SQLite
(the guard is the same code whatever the database)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chromium import browse as _browse
from tests.support import final_run, make_settings
from tests.trigger.server import client_for, running
from trigger.core.event import manual_event
from trigger.ops.api import close_api
from trigger.service import create_app
from trigger.sources.manual import fire_event

TOKEN = "s3cret-token-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PROTECTED = {"service": {"listen": "0.0.0.0:8080"}, "api": {"token_env": "BT_TEST_API_TOKEN"}}


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BT_TEST_API_TOKEN", TOKEN)


@pytest.fixture
def protected(launched: Any) -> Iterator[tuple[Any, Any, httpx.Client]]:
    settings, enqueuer = launched(**PROTECTED)
    app = create_app(settings)
    with client_for(app) as client:
        yield settings, enqueuer, client
    close_api(app)


def test_the_api_and_metrics_refuse_a_token_in_the_url(tmp_path: Path, project_dir: Path) -> None:
    for overrides in (PROTECTED, {}):  # with a token, and on loopback without one
        settings = make_settings(tmp_path, None, project_dir, **overrides)
        settings.state_path.mkdir(parents=True, exist_ok=True)
        app = create_app(settings)
        with client_for(app) as client:
            for path in ("/api/runs", "/api/events", "/api/runs/x", "/metrics"):
                refused = client.get(path, params={"token": TOKEN}, headers=BEARER)
                assert refused.status_code == 401, (path, refused.text)
                assert refused.json()["error"] == (
                    f"'{path}' does not take ?token= (URLs end up in proxy and access logs); "
                    "send the token as the header Authorization: Bearer <token>"
                )
                assert refused.headers["www-authenticate"] == "Bearer"
        app.state.bauplan_trigger.engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_page_trades_the_token_for_a_derived_cookie_once(protected: Any) -> None:
    _, _, client = protected
    visit = client.get("/", params={"token": TOKEN, "a": "1"})
    assert visit.status_code == 303, visit.text
    assert visit.headers["location"] == "/?a=1"
    assert visit.headers["cache-control"] == "no-store"
    cookie = visit.headers["set-cookie"]
    derived = hmac.new(TOKEN.encode(), b"bauplan-trigger page session v1", hashlib.sha256)
    assert cookie.startswith(f"bauplan_trigger_page={derived.hexdigest()};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert TOKEN not in str(visit.headers)

    page = client.get("/", params={"a": "1"})
    assert page.status_code == 200 and 'id="runs"' in page.text
    # The cookie opens the page, nothing else: it is no bearer token.
    assert client.get("/api/runs").status_code == 401
    assert client.get("/metrics").status_code == 401
    stolen = {"Authorization": f"Bearer {derived.hexdigest()}"}
    assert client.get("/api/runs", headers=stolen).status_code == 401

    behind_tls = client.get("/", params={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in behind_tls.headers["set-cookie"]

    client.cookies.clear()
    wrong = client.get("/runs/x", params={"token": "guess"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert client.get("/").status_code == 401
    assert client.get("/", headers=BEARER).status_code == 200


def test_without_a_token_the_page_only_drops_it_from_the_address(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    settings.state_path.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    with client_for(app) as client:
        visit = client.get("/runs/r1", params={"token": "anything"})
        assert visit.status_code == 303 and visit.headers["location"] == "/runs/r1"
        assert "set-cookie" not in visit.headers
    app.state.bauplan_trigger.engine.dispose()


def _link_page(target: str) -> Callable[..., Any]:
    """A page of another site holding the link an operator clicks in a chat or a wiki."""
    html = f'<a id=go href="{target}">open</a><script>go.click()</script>'.encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": html})

    return app


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_token_link_followed_from_another_site_opens_the_page(
    launched: Any, tmp_path: Path
) -> None:
    """A SameSite=Strict cookie stays off the whole redirect chain of a cross-site click;
    the page has the browser load it once more, from itself, and then it comes."""
    settings, enqueuer = launched(**PROTECTED)
    run = fire_event(enqueuer, manual_event("orders", {"run_date": "d"}, event_id="l1"))
    final_run(enqueuer, run.run_id)
    app = create_app(settings)
    try:
        with running(app) as base:
            target = f"{base}/runs/{run.run_id}?token={TOKEN}"
            with running(_link_page(target)) as elsewhere:
                # localhost and 127.0.0.1 are two sites to the browser.
                link = elsewhere.replace("127.0.0.1", "localhost")
                dom = _browse(link, tmp_path, "--virtual-time-budget=5000", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert f'Run <span class="mono">{run.run_id}</span>' in dom.stdout, dom.stdout[-2000:]
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()
