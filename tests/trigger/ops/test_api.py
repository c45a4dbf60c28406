"""The operator API: auth, runs, events, fire, retry and cancel over real HTTP semantics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support import wait_until
from tests.trigger.fuzzkit import API_STATUSES, JSON_VALUES, Ingress
from tests.trigger.properties import OUTSIDE_TEXT, examples
from tests.trigger.server import client_for
from trigger.ops.api import close_api
from trigger.service import create_app
from workflows.bauplan.rehearsal import Ledger
from workflows.runtime import ledger_path

FINAL = ("succeeded", "failed", "cancelled")


def shared_branch_triggers(project_dir: Any) -> list[dict[str, Any]]:
    """Two triggers on one branch: a slow one to hold it, a quick one to wait behind it."""
    common = {"project_dir": str(project_dir), "branch": "shared"}
    return [
        {"name": "slow", **common, "rehearse_seconds": 120},
        {"name": "quick", **common, "rehearse_seconds": 0.2},
    ]


@pytest.fixture
def api(launched: Any, project_dir: Any) -> Iterator[tuple[Any, httpx.Client]]:
    settings, _ = launched(triggers=shared_branch_triggers(project_dir))
    app = create_app(settings)
    # A script, as the API expects one: bodyless POSTs say who sends them.
    with client_for(app, headers={"X-Requested-By": "tests"}) as client:
        yield settings, client
    close_api(app)
    app.state.bauplan_trigger.engine.dispose()


def _status(client: httpx.Client, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def _until(client: httpx.Client, run_id: str, *words: str, job: bool = False) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (r := _status(client, run_id))["status"] in words and (not job or r["job_id"]) and r
        ),
        timeout=60,
        what=f"run {run_id} to be {words}",
    )


def test_fire_then_retry_gives_a_linked_new_run(api: Any) -> None:
    settings, client = api
    fired = client.post("/api/triggers/quick/fire", json={"event_id": "http-1"})
    assert fired.status_code == 200, fired.text
    run_id = fired.json()["id"]
    assert run_id == "run:quick:http-1" and fired.json()["duplicate"] is False
    _until(client, run_id, *FINAL)
    retried = client.post(f"/api/runs/{run_id}/retry", json={"actor": "ana"})
    assert retried.status_code == 200, retried.text
    new_id = retried.json()["new_run_id"]
    assert new_id == "run:quick:http-1:retry-1"
    new = _until(client, new_id, *FINAL)
    assert new["status"] == "succeeded" and new["retry_of"] == run_id
    assert _status(client, run_id)["retried_as"] == new_id
    again = client.post(f"/api/runs/{new_id}/retry").json()["new_run_id"]
    assert again == "run:quick:http-1:retry-2"
    _until(client, again, *FINAL)
    assert len(Ledger(ledger_path(settings)).jobs()) == 3
    listed = client.get("/api/runs", params={"trigger": "quick", "limit": 2}).json()
    assert len(listed["runs"]) == 2 and listed["next_offset"] == 2
    rest = client.get("/api/runs", params={"trigger": "quick", "limit": 2, "offset": 2}).json()
    assert len(rest["runs"]) == 1
    story = client.get(f"/api/events/{run_id}").json()
    sources = [e["source"] for e in story["events"]]
    assert sources == ["manual", "control"]
    events = client.get("/api/events", params={"source": "manual"}).json()["events"]
    assert [e["event_id"] for e in events] == ["http-1"]


def test_cancel_dequeues_a_waiting_run_and_stops_a_running_one(api: Any) -> None:
    settings, client = api
    slow = client.post("/api/triggers/slow/fire").json()["id"]
    running = _until(client, slow, "running", job=True)
    quick = client.post("/api/triggers/quick/fire").json()["id"]
    waiting = _until(client, quick, "waiting")
    assert "busy with run " + slow in waiting["waiting"]
    refused = client.post(f"/api/runs/{slow}/retry")
    assert refused.status_code == 409 and "still running" in refused.json()["error"]

    dequeued = client.post(f"/api/runs/{quick}/cancel")
    assert dequeued.status_code == 200, dequeued.text
    assert "dequeued" in dequeued.json()["detail"]
    stopped = client.post(f"/api/runs/{slow}/cancel").json()
    assert f"Bauplan job {running['job_id']} cancelled" in stopped["detail"]
    assert _until(client, slow, "cancelled")["status"] == "cancelled"
    assert _until(client, quick, "cancelled")["job_id"] is None
    jobs = Ledger(ledger_path(settings)).jobs()
    assert [(j["job_id"], j["status"]) for j in jobs] == [(running["job_id"], "ABORT")]
    again = client.post(f"/api/runs/{slow}/cancel")
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["error"]
    assert client.post("/api/runs/run:nope:x/cancel").status_code == 404


def test_resume_puts_a_cancelled_run_back_on_its_branch_like_runs_resume(api: Any) -> None:
    settings, client = api
    slow = client.post("/api/triggers/slow/fire").json()["id"]
    _until(client, slow, "running", job=True)
    quick = client.post("/api/triggers/quick/fire").json()["id"]
    _until(client, quick, "waiting")
    early = client.post(f"/api/runs/{quick}/resume")
    assert early.status_code == 409, early.text
    assert early.json() == {
        "error": f"run {quick} is waiting; only a cancelled or stuck run can be resumed "
        "(it is already on its way)"
    }
    assert client.post(f"/api/runs/{quick}/cancel").status_code == 200
    _until(client, quick, "cancelled")

    resumed = client.post(f"/api/runs/{quick}/resume", json={"actor": "ana"})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json() == {
        "action": "resume",
        "run_id": quick,
        "status": "cancelled",
        "detail": "back on the queue for branch rehearsal.shared",
        "new_run_id": None,
    }
    assert _until(client, quick, "waiting")["branch"] == "rehearsal.shared"  # behind slow
    client.post(f"/api/runs/{slow}/cancel")
    assert _until(client, quick, *FINAL)["status"] == "succeeded"
    ended = client.post(f"/api/runs/{quick}/resume")
    assert ended.status_code == 409 and ended.json()["error"].endswith("(retry it instead)")
    missing = client.post("/api/runs/run:quick:nope/resume")
    assert missing.status_code == 404
    assert missing.json()["error"].startswith("no run with id 'run:quick:nope'")
    story = client.get(f"/api/events/{quick}").json()
    control = [e for e in story["events"] if e["source"] == "control"]
    assert [e["attributes"]["action"] for e in control] == ["cancel", "resume"]
    assert control[1]["attributes"]["actor"].startswith("ana@")
    jobs = Ledger(ledger_path(settings)).jobs()
    assert sorted(j["status"] for j in jobs) == ["ABORT", "COMPLETE"]  # one job each


def test_fire_refuses_unknown_triggers_and_undeclared_params(api: Any) -> None:
    _, client = api
    assert client.post("/api/triggers/nope/fire").status_code == 404
    bad = client.post("/api/triggers/quick/fire", json={"params": {"x": "1"}})
    assert bad.status_code == 422, bad.text
    assert bad.json() == {
        "error": "input 'x': trigger 'quick' does not declare it in inputs (declared: none); "
        "add it to inputs = [...] in the config"
    }
    odd = client.post("/api/triggers/quick/fire", json={"event_id": "-no spaces-"})
    assert odd.status_code == 422, odd.text
    assert odd.json()["error"].startswith(
        "body field event_id = '-no spaces-' is refused: event ids are"
    )
    assert client.get("/api/events/nothing-at-all").status_code == 404


def test_strings_older_versions_stored_read_back_escaped_through_every_reader(api: Any) -> None:
    from datetime import UTC, datetime

    from trigger.core.event import Event
    from trigger.ingest import ingest
    from trigger.sources.manual import manual_filter
    from workflows.intake import Enqueuer

    settings, client = api
    enqueuer = Enqueuer(settings)
    try:
        for n in (1, 2):  # what the event model let through before it refused such strings
            stored = Event.model_construct(
                kind="manual",
                id=f"old-{n}",
                received_at=datetime.now(UTC),
                attributes={"trigger": "quick", "fired_by": "oct\ud800cat"},
            )
            ingest(enqueuer, stored, manual_filter)
    finally:
        enqueuer.close()
    run = _until(client, "run:quick:old-2", *FINAL)
    assert run["event"]["fired_by"] == "oct\\ud800cat"
    for path in ("/api/runs", "/api/events/old-1", "/api/events/run:quick:old-2", "/"):
        assert client.get(path).status_code == 200, path
    assert client.get("/runs/run:quick:old-2").status_code == 200
    first = client.get("/api/events", params={"limit": 1}).json()
    rest = client.get("/api/events", params={"limit": 20, "before": first["next_before"]}).json()
    assert [e["event_id"] for e in first["events"] + rest["events"]] == ["old-2", "old-1"]
    assert rest["events"][0]["attributes"]["fired_by"] == "oct\\ud800cat"


def _post_json(client: httpx.Client, path: str, data: Any) -> httpx.Response:
    """JSON as any sender may write it: lone surrogates as \\u escapes (httpx refuses)."""
    import json

    body = json.dumps(data).encode()
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


def test_fire_and_actions_refuse_strings_by_the_rule_of_every_source(
    tmp_path: Any, project_dir: Any
) -> None:
    app = _app_for(tmp_path, project_dir, triggers=shared_branch_triggers(project_dir))
    fire = "/api/triggers/quick/fire"
    with client_for(app) as client:
        lone = _post_json(client, fire, {"fired_by": "oct\ud800cat"})
        control = _post_json(client, fire, {"fired_by": "a\n2026 INFO forged"})
        actor = _post_json(client, "/api/runs/run:quick:none/retry", {"actor": "\x1b[2J"})
        key = _post_json(client, fire, {"params": {"\udcff": "1"}})
        nan = _post_json(client, fire, {"fired_by": float("nan")})  # Python's JSON admits NaN
    app.state.bauplan_trigger.engine.dispose()
    assert [r.status_code for r in (lone, control, actor, key, nan)] == [422] * 5
    assert nan.json() == {"error": "body field fired_by = nan: input should be a valid string"}
    assert lone.json()["error"].startswith("body field fired_by = 'oct\\ud800cat': ")
    assert "control character (U+000A)" in control.json()["error"]
    assert actor.json()["error"].startswith("body field actor = '\\x1b[2J': ")
    assert key.json()["error"].startswith("input '\\udcff': trigger 'quick' does not declare")


def test_the_api_is_in_the_openapi_document(api: Any) -> None:
    _, client = api
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/retry",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/resume",
        "/api/events",
        "/api/triggers/{name}/fire",
    ):
        assert path in paths


def _app_for(tmp_path: Any, project_dir: Any, **overrides: Any) -> Any:
    from tests.support import make_settings

    settings = make_settings(tmp_path, None, project_dir, **overrides)
    settings.state_path.mkdir(parents=True, exist_ok=True)
    return create_app(settings)


def test_without_a_token_the_api_refuses_off_loopback(tmp_path: Any, project_dir: Any) -> None:
    app = _app_for(tmp_path, project_dir, service={"listen": "0.0.0.0:8080"})
    with client_for(app) as client:
        for path in ("/api/runs", "/", "/metrics", "/api/events"):
            response = client.get(path)
            assert response.status_code == 403, path
            assert "no API token is configured" in response.json()["error"]
        assert client.get("/healthz").status_code == 200
    app.state.bauplan_trigger.engine.dispose()


def test_with_a_token_every_request_must_carry_it(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BT_TEST_API_TOKEN", "s3cret-token")
    settings, _ = launched(
        service={"listen": "0.0.0.0:8080"},
        api={"token_env": "BT_TEST_API_TOKEN"},
    )
    app = create_app(settings)
    with client_for(app) as client:
        assert client.get("/api/events").status_code == 401
        wrong = client.get("/api/events", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "s3cret" not in wrong.text
        right = client.get("/api/events", headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 200 and right.json()["events"] == []
        assert client.get("/metrics").status_code == 401
        scrape = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
        assert scrape.status_code == 200
    close_api(app)
    app.state.bauplan_trigger.engine.dispose()


def test_a_named_but_unset_token_variable_turns_the_api_off(
    tmp_path: Any, project_dir: Any
) -> None:
    app = _app_for(tmp_path, project_dir, api={"token_env": "BT_TEST_NOT_SET"})
    with client_for(app) as client:
        response = client.get("/api/runs", headers={"Authorization": "Bearer x"})
        assert response.status_code == 403
        assert "BT_TEST_NOT_SET, which is not set" in response.json()["error"]
    app.state.bauplan_trigger.engine.dispose()


def test_paging_values_out_of_the_databases_range_are_refused_naming_the_bound(api: Any) -> None:
    _, client = api
    for path, name, bound in (
        ("/api/runs", "offset", 2**63 - 1),  # SQL OFFSET is a BIGINT
        ("/api/events", "before", 2**31 - 1),  # the event log's seq is an INTEGER
    ):
        for too_big in (2**63, bound + 1):
            refused = client.get(path, params={name: too_big})
            assert refused.status_code == 422, refused.text
            assert refused.json() == {
                "error": f"query parameter {name} = '{too_big}': "
                f"input should be less than or equal to {bound}"
            }
        at_the_bound = client.get(path, params={name: bound})
        assert at_the_bound.status_code == 200, at_the_bound.text
    assert client.get("/api/events", params={"before": 0}).status_code == 422


def test_a_lookup_by_a_string_no_id_can_hold_finds_nothing(ingress: Ingress) -> None:
    # PostgreSQL cannot even compare a text holding NUL; no id or name holds one.
    http = ingress.http
    assert http.get("/api/runs", params={"trigger": "x\x00"}).json()["runs"] == []
    assert http.get("/api/events", params={"source": "x\x00"}).json()["events"] == []
    for path in ("/api/runs/x%00", "/api/events/x%00", "/runs/x%00", "/api/runs/x%0A"):
        assert http.get(path).status_code == 404, path
    cancel = http.post("/api/runs/x%00/cancel", headers={"X-Requested-By": "test"})
    assert cancel.status_code == 404


def _quoted(value: str) -> str:
    """A value in a URL as any client may send it: its UTF-8 bytes percent-encoded (a lone
    surrogate as the bytes a careless encoder writes for it)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


# A "/" in an id is routing (FastAPI redirects a trailing one), not a string rule.
_IDS = OUTSIDE_TEXT.map(lambda t: "x" + t.replace("/", ""))
_QUERY = st.lists(
    st.tuples(
        st.sampled_from(["trigger", "status", "limit", "offset", "source", "outcome", "before"])
        | OUTSIDE_TEXT,
        OUTSIDE_TEXT | st.integers(-(2**63), 2**63 - 1).map(str),  # wider ints: issue 12 item 10
    ),
    max_size=4,
)


@examples(150)
@given(
    route=st.sampled_from(
        ["/api/runs", "/api/events", "/api/runs/", "/api/events/", "/runs/", "/"]
    ),
    ident=_IDS,
    query=_QUERY,
)
@example(route="/api/runs", ident="x", query=[("trigger", "x\x00")])
@example(route="/api/events/", ident="x\x00", query=[])
def test_any_query_string_or_path_id_gets_a_documented_answer(
    ingress: Ingress, route: str, ident: str, query: list[tuple[str, str]]
) -> None:
    path = route + _quoted(ident) if route.endswith("/") and route != "/" else route
    pairs = "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in query)
    answer = ingress.http.get(f"{path}?{pairs}" if pairs else path)
    assert answer.status_code in API_STATUSES, answer.text


@examples(100)
@given(
    action=st.sampled_from(["/api/triggers/{}/fire", "/api/runs/{}/retry", "/api/runs/{}/cancel"]),
    ident=st.just("orders") | _IDS,
    body=st.dictionaries(
        st.sampled_from(["params", "event_id", "fired_by", "actor"]) | OUTSIDE_TEXT,
        JSON_VALUES | st.dictionaries(OUTSIDE_TEXT, OUTSIDE_TEXT, max_size=2),
        max_size=3,
    ),
)
@example(action="/api/triggers/{}/fire", ident="orders", body={"fired_by": float("nan")})
@example(action="/api/runs/{}/retry", ident="x\x00", body={})
def test_any_action_body_gets_a_documented_answer(
    ingress: Ingress, action: str, ident: str, body: dict[str, Any]
) -> None:
    import json

    content = json.dumps(body).encode()
    answer = ingress.http.post(
        action.format(_quoted(ident)), content=content, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code in API_STATUSES | {409}, answer.text


def test_runs_can_be_listed_by_every_status_runs_knows(api: Any) -> None:
    """The API takes the statuses ``runs --status`` takes, superseded among them."""
    from trigger.core.runstatus import RUN_STATUSES

    _, client = api
    for word in RUN_STATUSES:
        listed = client.get("/api/runs", params={"status": word})
        assert listed.status_code == 200, (word, listed.text)
        assert listed.json()["runs"] == []
