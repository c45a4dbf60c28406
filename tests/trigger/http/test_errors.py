"""Every refusal of the HTTP surface is ``{"error": "<sentence>"}``, whoever refuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import make_settings
from tests.trigger.server import client_for
from trigger.http.errors import validation_sentence
from trigger.service import create_app


@pytest.fixture
def http(tmp_path: Path, project_dir: Path) -> Iterator[httpx.Client]:
    """The whole app on loopback, without DBOS: refusals need no run."""
    settings = make_settings(tmp_path, None, project_dir)
    settings.state_path.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    with client_for(app, headers={"X-Requested-By": "tests"}) as client:
        yield client
    app.state.bauplan_trigger.engine.dispose()


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert list(body) == ["error"], body
    assert "--" not in body["error"], body  # never a command-line flag
    return str(body["error"])


def test_a_route_that_does_not_exist_says_where_the_routes_are(http: httpx.Client) -> None:
    said = _error(http.get("/api/nothing-here"), 404)
    assert said == (
        "there is no endpoint at '/api/nothing-here': the operator API is under /api, "
        "the hooks under /hooks, and /docs describes them all"
    )


def test_a_method_a_route_does_not_take_names_the_ones_it_does(http: httpx.Client) -> None:
    refused = http.delete("/api/runs")
    assert _error(refused, 405) == "'/api/runs' does not take DELETE; send GET"
    assert refused.headers["allow"] == "GET"
    assert _error(http.get("/hooks/github"), 405) == "'/hooks/github' does not take GET; send POST"


def test_a_refused_value_is_one_sentence_naming_the_field_and_the_value(
    http: httpx.Client,
) -> None:
    assert _error(http.get("/api/runs", params={"limit": "0"}), 422) == (
        "query parameter limit = '0': input should be greater than or equal to 1"
    )
    assert _error(http.get("/api/events", params={"outcome": "maybe"}), 422) == (
        "query parameter outcome = 'maybe': input should be 'accepted', 'duplicate', "
        "'ignored' or 'rejected'"
    )
    assert _error(http.post("/api/runs/r/retry", json={"who": "ana"}), 422) == (
        "body field who is not one this operation takes; see /docs"
    )
    assert _error(http.post("/api/runs/r/retry", json=["ana"]), 422).startswith("the body: ")
    broken = http.post(
        "/api/runs/r/retry", content=b'{"actor": ', headers={"Content-Type": "application/json"}
    )
    assert _error(broken, 422) == "the body is not valid JSON (Expecting value); send a JSON object"


def test_a_fire_missing_a_parameter_says_so_without_the_clis_flag(http: httpx.Client) -> None:
    said = _error(http.post("/api/triggers/orders/fire", json={}), 422)
    assert said == "trigger 'orders' needs a value for its inputs: run_date; pass params.run_date"
    assert _error(http.post("/api/triggers/nope/fire", json={}), 404) == (
        "no trigger named 'nope'; configured triggers: orders"
    )


def test_the_guard_and_the_hooks_refuse_in_the_same_shape(http: httpx.Client) -> None:
    assert _error(http.get("/api/runs", headers={"Host": "evil.example"}), 421).startswith(
        "Host 'evil.example' is not a name of this service"
    )
    cross = http.post("/api/runs/r/cancel", headers={"Origin": "https://evil.example"})
    assert _error(cross, 403).startswith("refused a request from another site's web page")
    assert _error(http.get("/api/runs", params={"token": "x"}), 401).startswith(
        "'/api/runs' does not take ?token="
    )
    unsigned = http.post("/hooks/github", json={}, headers={"X-GitHub-Delivery": "d-1"})
    assert _error(unsigned, 404) == "no trigger has a [triggers.github] section"


def test_what_a_sender_cannot_write_comes_back_escaped_and_encodable() -> None:
    said = validation_sentence(
        [
            {"type": "string_type", "loc": ("body", "a\udcffb"), "msg": "x", "input": "\ud800"},
            {"type": "float_type", "loc": ("query", "n"), "msg": "Input bad", "input": 1e999},
            {"type": "missing", "loc": ("body", "params", "k"), "msg": "Field required"},
            {"type": "missing", "loc": ("header", "x"), "msg": "Field required"},
        ]
    )
    assert said == (
        "body field 'a\\udcffb' = '\\ud800': x; query parameter n = inf: input bad; "
        "body field params.k is required; and 1 more"
    )
    said.encode("utf-8")
