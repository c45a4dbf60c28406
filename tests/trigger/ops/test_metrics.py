"""``/metrics`` moves as events arrive and runs finish, read from the database; its
counters never go down; its HTTP figures name routes, not paths; promtool finds
nothing to say about it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import base_config, wait_until, write_config
from tests.trigger.server import client_for
from trigger.core.event import manual_event
from trigger.core.eventlog import event_log, record_event, record_heartbeat
from trigger.core.settings import build_settings
from trigger.ops.api import close_api
from trigger.service import create_app
from trigger.sources.manual import fire_event
from workflows.records import show_run


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_move_as_runs_happen(launched: Any) -> None:
    settings, enqueuer = launched()
    app = create_app(settings)
    try:
        with client_for(app) as client:
            before = _samples(client.get("/metrics").text)
            assert before[("bauplan_trigger_database_up", ())] == 1
            assert before[("bauplan_trigger_oldest_waiting_run_age_seconds", ())] == 0
            assert not any(
                name == "bauplan_trigger_last_success_timestamp_seconds" for name, _ in before
            )
            fired_at = time.time()
            assert (
                "bauplan_trigger_runs",
                (("status", "succeeded"), ("trigger", "orders")),
            ) not in before
            assert before[("bauplan_trigger_queue_depth", ())] == 0

            run = fire_event(enqueuer, manual_event("orders", {"run_date": "m"}))
            record_event(settings, "github", "bad-1", "rejected", "bad signature", "192.0.2.1")
            record_heartbeat(settings, "files:landing")
            wait_until(
                lambda: show_run(enqueuer.client, run.run_id)["status"] == "succeeded",
                timeout=60,
                what="the run to succeed",
            )
            after = _samples(client.get("/metrics").text)
            assert (
                after[("bauplan_trigger_runs", (("status", "succeeded"), ("trigger", "orders")))]
                == 1
            )
            assert (
                after[
                    (
                        "bauplan_trigger_events_total",
                        (("outcome", "accepted"), ("source", "manual")),
                    )
                ]
                == 1
            )
            assert (
                after[
                    (
                        "bauplan_trigger_events_total",
                        (("outcome", "rejected"), ("source", "github")),
                    )
                ]
                == 1
            )
            assert (
                after[("bauplan_trigger_run_duration_seconds_count", (("trigger", "orders"),))] == 1
            )
            assert after[("bauplan_trigger_run_duration_seconds_sum", (("trigger", "orders"),))] > 0
            age = after[
                ("bauplan_trigger_watcher_last_scan_age_seconds", (("watcher", "files:landing"),))
            ]
            assert age >= 0
            assert ("bauplan_trigger_waiting_runs", (("reason", "branch_busy"),)) in after
            succeeded_at = after[
                ("bauplan_trigger_last_success_timestamp_seconds", (("trigger", "orders"),))
            ]
            assert fired_at <= succeeded_at <= time.time()
            assert after[("bauplan_trigger_oldest_waiting_run_age_seconds", ())] == 0
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()


def test_waiting_runs_are_counted_on_every_queue_by_what_holds_them(
    launched: Any, project_dir: Any
) -> None:
    """A trigger with its own queue (two runs per branch): the third run waits for the
    branch, and ``/metrics`` counts it, and ``/api/runs`` lists it, as ``runs`` explains
    it (one diagnosis)."""
    from tests.workflows.flow_support import fill_the_branch, ledger, orders_trigger, release

    trigger = orders_trigger(project_dir, per_branch_concurrency=2)
    settings, enqueuer = launched(bauplan={"rehearse_outcome": "hang"}, triggers=[trigger])
    app = create_app(settings)
    try:
        with client_for(app) as client:
            _, third = fill_the_branch(settings, enqueuer)
            shown = show_run(enqueuer.client, third, settings)
            assert shown["waiting_reason"].startswith("branch rehearsal.orders_d1 is busy")
            listed = client.get("/api/runs", params={"status": "waiting"}).json()["runs"]
            assert [(r["id"], r["waiting_reason"]) for r in listed] == [
                (third, shown["waiting_reason"])
            ]
            enqueued = enqueuer.client.retrieve_workflow(third).get_status().created_at / 1000
            asked = time.time()
            samples = _samples(client.get("/metrics").text)
            age = samples[("bauplan_trigger_oldest_waiting_run_age_seconds", ())]
            assert asked - enqueued <= age <= time.time() - enqueued
            assert samples[("bauplan_trigger_queue_depth", ())] == 1
            waiting = {
                labels[0][1]: value
                for (name, labels), value in samples.items()
                if name == "bauplan_trigger_waiting_runs"
            }
            assert waiting == {
                "queued": 0,
                "branch_busy": 1,
                "rate_limited": 0,
                "global_cap": 0,
                "delayed": 0,
                "unknown_queue": 0,
            }
            wait_until(
                lambda: release(settings) >= 0 and len(ledger(settings).jobs()) == 3, what="w3"
            )
            release(settings)
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()


def test_a_run_parked_for_its_rate_window_counts_as_waiting_and_rate_limited(
    launched: Any, project_dir: Any
) -> None:
    """It holds its branch in its workflow (PENDING to DBOS) but has not started."""
    from tests.support import wait_until
    from tests.workflows.flow_support import fire

    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05},
        queue={"per_branch_limit": {"runs": 1, "period_seconds": 3600}},
    )
    app = create_app(settings)
    try:
        with client_for(app) as client:
            first = fire(settings, enqueuer, "m1")
            wait_until(lambda: show_run(enqueuer.client, first)["status"] == "succeeded", what="m1")
            second = fire(settings, enqueuer, "m2")
            wait_until(
                lambda: show_run(enqueuer.client, second, settings).get("phase") == "rate-limited",
                what="m2 to be rate-limited",
            )
            samples = _samples(client.get("/metrics").text)
            assert samples[("bauplan_trigger_queue_depth", ())] == 1
            assert samples[("bauplan_trigger_waiting_runs", (("reason", "rate_limited"),))] == 1
            assert samples[("bauplan_trigger_oldest_waiting_run_age_seconds", ())] > 0
            runs = {
                labels: value
                for (name, labels), value in samples.items()
                if name == "bauplan_trigger_runs"
            }
            assert runs[(("status", "waiting"), ("trigger", "orders"))] == 1
            assert (("status", "running"), ("trigger", "orders")) not in runs
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()


def _serve_config(tmp_path: Path, project_dir: Path, backend: str | None) -> tuple[Any, Any]:
    """A config file for ``serve`` and the same settings as this test reads them."""
    data = base_config(tmp_path, project_dir, events={"retention_days": 1})
    path = write_config(tmp_path / "bauplan-trigger.toml", data)
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    return path, build_settings(data, config_path=path, environ=env)


def _scrape(settings: Any) -> str:
    response = httpx.get(f"http://{settings.service.listen}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def _events_total(text: str, source: str, outcome: str) -> float:
    key = ("bauplan_trigger_events_total", (("outcome", outcome), ("source", source)))
    return _samples(text).get(key, 0.0)


def test_events_total_falls_neither_when_the_log_is_pruned_nor_when_serve_restarts(
    serve_process: Any, backend: str | None, tmp_path: Path, project_dir: Path
) -> None:
    config, settings = _serve_config(tmp_path, project_dir, backend)
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    serve = serve_process(config, env)
    log = event_log(settings)
    try:
        long_ago = time.time() - 3 * 86400
        for n in range(2):
            record_event(
                log, "github", f"old-{n}", "rejected", "bad signature", received_at=long_ago
            )
        record_event(log, "github", "new", "rejected", "bad signature")
        assert _events_total(_scrape(settings), "github", "rejected") == 3

        log.prune()
        assert [e["event_id"] for e in log.recent()] == ["new"]
        assert _events_total(_scrape(settings), "github", "rejected") == 3

        assert serve.stop() == 0
        serve.start()
        assert _events_total(_scrape(settings), "github", "rejected") == 3
        record_event(log, "github", "after", "rejected", "bad signature")
        assert _events_total(_scrape(settings), "github", "rejected") == 4
    finally:
        log.engine.dispose()


def test_http_requests_are_counted_by_route_template_and_status(
    launched: Any, project_dir: Any
) -> None:
    settings, _ = launched()
    app = create_app(settings)
    try:
        with client_for(app) as client:
            assert client.get("/api/runs/run:orders:nope").status_code == 404
            assert client.get("/api/runs/run:orders:other").status_code == 404
            assert client.get("/no/such/page/1").status_code == 404
            assert client.get("/no/such/page/2").status_code == 404
            assert client.get("/healthz").status_code == 200
            samples = _samples(client.get("/metrics").text)
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()
    requests = {
        dict(labels)["route"]: (dict(labels)["status"], value)
        for (name, labels), value in samples.items()
        if name == "bauplan_trigger_http_requests_total" and dict(labels)["route"] != "/metrics"
    }
    assert requests == {
        "/api/runs/{run_id}": ("404", 2),
        "unmatched": ("404", 2),
        "/healthz": ("200", 1),
    }
    count = ("bauplan_trigger_http_request_duration_seconds_count",)
    labels = (("method", "GET"), ("route", "/api/runs/{run_id}"))
    assert samples[(*count, labels)] == 2
    inf = (("le", "+Inf"), ("method", "GET"), ("route", "/api/runs/{run_id}"))
    assert samples[("bauplan_trigger_http_request_duration_seconds_bucket", inf)] == 2


def _promtool() -> str:
    found = shutil.which("promtool") or shutil.which("promtool", path="/usr/bin")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("promtool is missing; install Debian's prometheus package (.ci/run does)")
    pytest.skip("promtool is not installed (Debian's prometheus package has it)")


def test_promtool_finds_nothing_to_say_about_a_live_metrics_page(
    serve_process: Any, tmp_path: Path, project_dir: Path
) -> None:
    """A real ``serve`` that has taken events, finished a run and answered requests."""
    promtool = _promtool()
    config, settings = _serve_config(tmp_path, project_dir, None)
    serve_process(config)
    base = f"http://{settings.service.listen}"
    with httpx.Client(base_url=base, timeout=30) as client:
        fired = client.post("/api/triggers/orders/fire", json={"params": {"run_date": "p"}})
        assert fired.status_code in (200, 201, 202), fired.text
        run_id = fired.json()["id"]
        wait_until(
            lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "succeeded",
            timeout=60,
            what="the fired run to succeed",
        )
        client.get("/no/such/page")
        record_heartbeat(settings, "files:landing")
        text = client.get("/metrics").text
    assert "bauplan_trigger_last_success_timestamp_seconds{" in text
    assert "bauplan_trigger_http_requests_total{" in text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    said = checked.stdout + checked.stderr
    assert checked.returncode == 0 and said.strip() == "", said


def _runs(text: str, trigger: str) -> dict[str, float]:
    return {
        dict(labels)["status"]: value
        for (name, labels), value in _samples(text).items()
        if name == "bauplan_trigger_runs" and dict(labels)["trigger"] == trigger and value
    }


def test_a_resumed_run_leaves_the_cancelled_ones_between_two_scrapes(
    launched: Any, project_dir: Path
) -> None:
    """Finished runs are tallied as they finish, and DBOS can take one back: ``resume``."""
    from trigger.ops.control import cancel, resume

    limited = {
        "name": "limited",
        "project_dir": str(project_dir),
        "branch": "limited",
        "rehearse_seconds": 0.05,
        "per_branch_limit": {"runs": 1, "period_seconds": 600},
    }
    settings, enqueuer = launched(triggers=[limited])
    app = create_app(settings)
    try:
        with client_for(app) as client:
            first = fire_event(enqueuer, manual_event("limited", {}, event_id="l1")).run_id
            wait_until(lambda: show_run(enqueuer.client, first)["status"] == "succeeded", what="l1")
            assert _runs(client.get("/metrics").text, "limited") == {"succeeded": 1}

            second = fire_event(enqueuer, manual_event("limited", {}, event_id="l2")).run_id
            cancel(settings, enqueuer.client, second, "ana")
            wait_until(
                lambda: show_run(enqueuer.client, second)["status"] == "cancelled", what="l2"
            )
            assert _runs(client.get("/metrics").text, "limited") == {"succeeded": 1, "cancelled": 1}

            resume(settings, enqueuer.client, second, "ana")
            wait_until(
                lambda: show_run(enqueuer.client, second, settings).get("phase") == "rate-limited",
                what="the resumed run to wait for its rate window",
            )
            kept = client.get("/metrics").text
            assert _runs(kept, "limited") == {"succeeded": 1, "waiting": 1}
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()
    fresh = create_app(settings)  # a new process's first scrape reads every run
    try:
        with client_for(fresh) as client:
            read = client.get("/metrics").text
    finally:
        close_api(fresh)
        fresh.state.bauplan_trigger.engine.dispose()
    assert _runs(read, "limited") == _runs(kept, "limited")
    assert _histogram(read) == _histogram(kept) != {}


def _histogram(text: str) -> dict[Any, float]:
    return {
        key: value
        for key, value in _samples(text).items()
        if key[0].startswith("bauplan_trigger_run_duration_seconds")
    }
