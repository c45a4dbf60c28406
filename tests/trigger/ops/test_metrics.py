"""``/metrics`` moves as events arrive and runs finish, read from the database."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support import wait_until
from tests.trigger.server import client_for
from trigger.core.event import manual_event
from trigger.core.eventlog import record_event, record_heartbeat
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
            samples = _samples(client.get("/metrics").text)
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
