"""Web pages cannot drive the loopback API: cross-site requests and rebound names are refused,
while scripts and the CLI keep working. Real HTTP on loopback; DBOS launched on SQLite (the
checks run before any database work, so one backend says it all)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.trigger.hookkit import body_of, github_headers, github_push, github_trigger
from tests.trigger.server import client_for
from trigger.core.settings import ServiceSettings
from trigger.http.sameorigin import host_allowed
from trigger.ops.api import close_api
from trigger.service import create_app
from workflows.records import list_runs

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def loopback(launched: Any, project_dir: Any) -> Iterator[tuple[Any, httpx.Client]]:
    """The API with no token, serving only because it listens on loopback."""
    settings, enqueuer = launched(
        triggers=[
            {"name": "quick", "project_dir": str(project_dir), "branch": "quick"},
            {
                "name": "endless",
                "project_dir": str(project_dir),
                "branch": "endless",
                "rehearse_outcome": "hang",
            },
            github_trigger(project_dir),
        ]
    )
    app = create_app(settings)
    with client_for(app) as client:
        yield enqueuer, client
    close_api(app)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_cross_site_form_cannot_fire_retry_or_cancel(loopback: Any) -> None:
    enqueuer, client = loopback
    evil = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    for path in ("/api/triggers/quick/fire", "/api/runs/x/retry", "/api/runs/x/cancel"):
        for headers in ({**FORM, **evil}, FORM, {"Content-Type": "text/plain"}):
            form = client.post(path, headers=headers, content=b"")
            assert form.status_code == 403, (path, headers, form.text)
        plain = client.post(path, headers={"Content-Type": "text/plain"}, content=b'{"x": 1}')
        assert plain.status_code == 415, plain.text
        assert "a body of type 'text/plain'" in plain.json()["error"]
    assert "X-Requested-By" in form.json()["error"]
    assert list_runs(enqueuer.client) == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_json_request_from_another_sites_page_is_refused(loopback: Any) -> None:
    enqueuer, client = loopback
    own = str(client.base_url).rstrip("/")
    foreign = (
        {"Origin": "http://evil.example"},
        {"Origin": own.replace("127.0.0.1", "localhost")},
        {"Origin": own.rsplit(":", 1)[0] + ":1"},  # another service on this host
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": own},
    )
    for headers in foreign:
        refused = client.post("/api/triggers/quick/fire", json={}, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.json()["error"].startswith("refused a request from another site's web page")
    assert list_runs(enqueuer.client) == []
    same = client.post(
        "/api/triggers/quick/fire",
        json={"event_id": "same-origin"},
        headers={"Origin": own, "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 200, same.text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_scripts_without_an_origin_keep_working(loopback: Any) -> None:
    _, client = loopback
    fired = client.post("/api/triggers/quick/fire", json={"event_id": "script-1"})
    assert fired.status_code == 200, fired.text
    bare = client.post("/api/triggers/quick/fire")
    assert bare.status_code == 403
    assert bare.json()["error"] == (
        "this POST has no body and no X-Requested-By header; send a JSON body with "
        "Content-Type: application/json, or, without a body, the header "
        "X-Requested-By: <your tool's name> (a cross-site form can send neither)"
    )
    named = client.post("/api/triggers/endless/fire", headers={"X-Requested-By": "cron"})
    assert named.status_code == 200, named.text
    run_id = named.json()["id"]
    cancelled = client.post(f"/api/runs/{run_id}/cancel", headers={"X-Requested-By": "ops"})
    assert cancelled.status_code == 200, cancelled.text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_rebound_host_name_is_refused_on_the_operator_surface_only(loopback: Any) -> None:
    _, client = loopback
    for path in ("/api/runs", "/", "/runs/x", "/metrics"):
        rebound = client.get(path, headers={"Host": "evil.example:8080"})
        assert rebound.status_code == 421, (path, rebound.text)
        assert rebound.json()["error"].startswith("Host 'evil.example:8080' is not a name")
        assert "[service] allowed_hosts" in rebound.json()["error"]
        for name in ("localhost:1234", "127.0.0.1", "[::1]:8080"):
            assert client.get(path, headers={"Host": name}).status_code != 421, (path, name)
    posted = client.post("/api/triggers/quick/fire", json={}, headers={"Host": "evil.example"})
    assert posted.status_code == 421
    assert client.get("/healthz", headers={"Host": "lb.internal"}).status_code == 200
    body = body_of(github_push())
    hook = client.post(
        "/hooks/github",
        content=body,
        headers={**github_headers(body, secret="wrong"), "Host": "hooks.example.com"},
    )
    assert hook.status_code == 401, hook.text  # signed hooks answer under any name


def test_the_names_a_service_answers_to_follow_its_listen_address() -> None:
    def allowed(listen: str, name: str, *extra: str) -> bool:
        return host_allowed(name, ServiceSettings(listen=listen, allowed_hosts=list(extra)))

    assert allowed("127.0.0.1:8080", "localhost")
    assert allowed("127.0.0.1:8080", "127.0.0.5")
    assert allowed("127.0.0.1:8080", "::1")
    assert not allowed("127.0.0.1:8080", "10.0.0.5")
    assert not allowed("127.0.0.1:8080", "evil.example")
    assert not allowed("127.0.0.1:8080", "localhost.evil.example")
    assert allowed("127.0.0.1:8080", "Trigger.Example.COM.", "trigger.example.com")
    assert allowed("0.0.0.0:8080", "10.0.0.5")
    assert allowed("0.0.0.0:8080", "localhost")
    assert not allowed("0.0.0.0:8080", "trigger.example.com")
    assert allowed("[::]:8080", "fe80::1")
    assert allowed("10.0.0.5:8080", "10.0.0.5")
    assert not allowed("10.0.0.5:8080", "10.0.0.6")
    assert allowed("trigger.internal:8080", "TRIGGER.internal")
    assert allowed("10.0.0.5:8080", "::1", "[::1]")
    assert allowed("10.0.0.5:8080", "anything.example", "*")
    assert not allowed("10.0.0.5:8080", "")
