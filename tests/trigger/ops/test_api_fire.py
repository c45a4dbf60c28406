"""``POST /api/triggers/{name}/fire`` for every kind of trigger: the run its own source
would start, the same run for a retried request, and refusals in the API's words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.trigger.firekit import kinds, queued, settled
from tests.trigger.hookkit import make_repo
from tests.trigger.server import client_for
from trigger.ops.api import close_api
from trigger.service import create_app


@pytest.fixture
def api(
    launched: Any, tmp_path: Path, project_dir: Path, landing: Path
) -> Iterator[tuple[Any, httpx.Client, list[str]]]:
    upstream = tmp_path / "upstream"
    shas = make_repo(upstream)
    settings, enqueuer = launched(triggers=kinds(project_dir, landing, upstream))
    app = create_app(settings)
    with client_for(app, headers={"X-Requested-By": "tests"}) as client:
        yield enqueuer, client, shas
    close_api(app)
    app.state.bauplan_trigger.engine.dispose()


def _fire(client: httpx.Client, name: str, **body: Any) -> httpx.Response:
    return client.post(f"/api/triggers/{name}/fire", json=body)


def test_every_kind_fires_and_a_retried_request_is_the_same_run(api: Any, landing: Path) -> None:
    enqueuer, client, (_, new) = api
    settled(landing / "day.csv")
    asked = {
        "nightly": {"event_id": "now-1"},
        "landing": {"file": "day.csv"},  # relative to the watched dir
        "orders": {"sha": new, "branch": "main"},
    }
    first = {name: _fire(client, name, **body) for name, body in asked.items()}
    retried = {name: _fire(client, name, **body) for name, body in asked.items()}
    for name in asked:
        assert first[name].status_code == 200, first[name].text
        assert first[name].json()["duplicate"] is False
        assert retried[name].json() == {**first[name].json(), "duplicate": True}
    tick = queued(enqueuer.client, first["nightly"].json()["id"])
    assert tick.event_kind == "schedule" and tick.summary["fired_by"] == "api"
    dropped = queued(enqueuer.client, first["landing"].json()["id"])
    assert dropped.parameters["source_file"] == str(landing / "day.csv")
    assert dropped.parameters["rel"] == "day.csv"
    push = queued(enqueuer.client, first["orders"].json()["id"])
    assert push.parameters == {"sha": new, "short": new[:7], "repo": "acme/lakehouse"}
    assert first["orders"].json()["branch"].endswith("orders_main")
    story = client.get(f"/api/events/{first['orders'].json()['id']}").json()
    assert story["events"][0]["verified"] == "not needed: fired by api with access"


def test_a_fire_that_cannot_run_is_a_422_naming_the_field_without_cli_flags(
    api: Any, landing: Path
) -> None:
    _, client, (_, new) = api
    settled(landing / "notes.txt")
    cases = [
        ("orders", {}, "sha", "github pushes to acme/lakehouse; pass sha and branch"),
        ("orders", {"sha": new}, "branch", "uses git_branch in its templates; pass branch"),
        ("orders", {"sha": "f" * 40, "branch": "main"}, "sha", "even after a fresh fetch"),
        ("orders", {"sha": new, "branch": "x y"}, "branch", "branch 'x y' contains a space"),
        ("landing", {}, "file", "file_stem; pass file"),
        ("landing", {"file": "notes.txt"}, "file", "does not match files.patterns (*.csv)"),
        ("landing", {"file": "../x.csv"}, "file", "is not inside"),
        ("hooked", {}, None, "cannot be fired by hand"),
    ]
    for name, body, field, words in cases:
        response = _fire(client, name, **body)
        assert response.status_code == 422, (name, body, response.text)
        error = response.json()["error"]
        assert words in error and "--" not in error, (name, body, error)
        assert field is None or field in error, (name, body, error)
    assert _fire(client, "nope").status_code == 404
