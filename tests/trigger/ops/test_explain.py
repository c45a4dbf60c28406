"""``explain``: the story of manual fires, duplicates, refusals, pushes, file drops."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.support import final_run as _finished
from tests.support import run_cli, write_config
from trigger.core.event import Event, manual_event
from trigger.core.eventlog import event_log, record_event
from trigger.core.eventlog_store import DecisionRecord
from trigger.ops.explain import NothingToExplainError, explain, render
from trigger.sources.manual import fire_event


def test_a_manual_fire_tells_its_whole_story(launched: Any) -> None:
    settings, enqueuer = launched()
    event = manual_event("orders", {"run_date": "2026-11-23"}, event_id="ev-1", fired_by="ana")
    enqueued = fire_event(enqueuer, event, source_addr="cli")
    run = _finished(enqueuer, enqueued.run_id)
    story = explain("ev-1", event_log(settings), enqueuer.client, settings)
    [ev] = story["events"]
    assert ev["outcome"] == "accepted" and ev["source"] == "manual"
    assert ev["decisions"] == [
        {"trigger": "orders", "matched": True, "reason": None, "run_id": "run:orders:ev-1"}
    ]
    assert "fired by ana" in ev["verified"]
    [told] = story["runs"]
    assert told["status"] == "succeeded" and told["job_id"] == run["job_id"]
    names = [s["name"] for s in told["steps"]]
    assert {"launch", "wait"} <= set(names)
    whats = [t["what"] for t in told["timeline"]]
    assert whats[0] == "enqueued" and "submitted" in whats and whats[-1] == "finished"
    text = render(story)
    assert "event ev-1 (manual) from cli" in text
    assert "orders: matched -> run:orders:ev-1" in text
    assert f"submitted  job {run['job_id']}" in text
    assert "launch ok" in text and f"-> job {run['job_id']} on rehearsal.orders_2026_11_23" in text
    assert "wait ok" in text and "-> job success (COMPLETE)" in text
    assert "SUCCEEDED" in text and "rehearsal.orders_2026_11_23" in text
    # The same story, found from the run id and from the job's run.
    assert (
        explain("run:orders:ev-1", event_log(settings), enqueuer.client, settings)["events"][0][
            "event_id"
        ]
        == "ev-1"
    )


def test_a_duplicate_fire_is_recorded_as_a_duplicate_of_the_first(launched: Any) -> None:
    settings, enqueuer = launched()
    event = manual_event("orders", {"run_date": "d"}, event_id="twice")
    first = fire_event(enqueuer, event)
    second = fire_event(enqueuer, event)
    assert (first.duplicate, second.duplicate) == (False, True)
    story = explain("twice", event_log(settings), enqueuer.client, settings)
    assert [e["outcome"] for e in story["events"]] == ["accepted", "duplicate"]
    assert story["events"][1]["reason"].startswith("duplicate of event twice first received")
    assert "already existed" in story["events"][1]["decisions"][0]["reason"]
    assert len(story["runs"]) == 1
    assert "outcome    duplicate" in render(story)
    _finished(enqueuer, first.run_id)


def test_a_rejected_call_with_a_bad_signature_is_explained(launched: Any) -> None:
    settings, enqueuer = launched()
    record_event(
        settings,
        "github",
        "delivery-72d3",
        "rejected",
        "bad signature (X-Hub-Signature-256 does not match GITHUB_WEBHOOK_SECRET)",
        "203.0.113.9",
        attributes={"delivery_id": "delivery-72d3"},
    )
    story = explain("delivery-72d3", event_log(settings), enqueuer.client, settings)
    [ev] = story["events"]
    assert ev["outcome"] == "rejected" and ev["source_addr"] == "203.0.113.9"
    assert ev["verified"].startswith("no: bad signature")
    assert story["runs"] == []
    text = render(story)
    assert "from 203.0.113.9" in text and "rejected: bad signature" in text


def test_an_accepted_push_and_a_filtered_push_are_found_by_sha(launched: Any) -> None:
    """The GitHub source records through the recording API; this is the call it makes."""
    settings, enqueuer = launched()
    push = manual_event("orders", {"run_date": "p"}, event_id="gh-abc")
    enqueued = fire_event(enqueuer, push)
    sha = "9fceb02d0ae598e95dc970b74767f19372d61af8"
    record_event(
        settings,
        "github",
        "gh-delivery-1",
        "accepted",
        None,
        "140.82.115.1",
        [
            ("orders", True, None, enqueued.run_id),
            ("landing", False, "branch 'feature/x' matches none of main, release/*", None),
        ],
        attributes={
            "repo": "acme/lake",
            "git_sha": sha,
            "git_branch": "feature/x",
            "verified": "signature ok (sha256)",
        },
    )
    record_event(
        settings,
        "github",
        "gh-delivery-2",
        "ignored",
        "no trigger matched",
        "140.82.115.1",
        [DecisionRecord("orders", False, "no changed path matches pipelines/orders/**")],
        attributes={"repo": "acme/lake", "git_sha": "1111111"},
    )
    story = explain(sha, event_log(settings), enqueuer.client, settings)
    assert [e["event_id"] for e in story["events"]] == ["gh-delivery-1"]
    assert story["events"][0]["verified"] == "signature ok (sha256)"
    assert [r["id"] for r in story["runs"]] == [enqueued.run_id]
    text = render(story)
    assert "landing: filtered out (branch 'feature/x' matches none of main, release/*)" in text
    filtered = explain("1111111", event_log(settings), enqueuer.client, settings)
    assert filtered["events"][0]["outcome"] == "ignored" and filtered["runs"] == []
    assert "orders: filtered out (no changed path" in render(filtered)
    _finished(enqueuer, enqueued.run_id)


def test_a_file_drop_is_found_by_its_path(launched: Any) -> None:
    settings, enqueuer = launched()
    event = Event(
        kind="files",
        id="f-landing-orders.csv-120-1732363200",
        attributes={"file_path": "/data/landing/orders.csv", "file_size": 120},
    )
    fire = manual_event("orders", {"run_date": "f"}, event_id="filedrop-1")
    enqueued = fire_event(enqueuer, fire)
    record_event(
        settings,
        "files",
        event.id,
        "accepted",
        None,
        None,
        [("orders", True, None, enqueued.run_id)],
        attributes=event.attributes,
    )
    story = explain("/data/landing/orders.csv", event_log(settings), enqueuer.client, settings)
    assert story["events"][0]["event_id"] == event.id
    assert story["events"][0]["verified"].startswith("not needed")
    assert story["runs"][0]["id"] == enqueued.run_id
    _finished(enqueuer, enqueued.run_id)


def test_an_unknown_id_is_a_clear_error(launched: Any) -> None:
    settings, enqueuer = launched()
    with pytest.raises(NothingToExplainError, match="nothing is known about 'nope'"):
        explain("nope", event_log(settings), enqueuer.client, settings)


def test_the_cli_explains_a_fire_in_text_and_json(launched: Any, tmp_path: Any) -> None:
    from tests.support import base_config

    settings, _ = launched()
    config = base_config(tmp_path, settings.project_path(settings.triggers[0]))
    path = write_config(tmp_path / "bauplan-trigger.toml", config)
    env = {"DBOS_SYSTEM_DATABASE_URL": settings.system_database_url} if settings.is_postgres else {}
    fired = run_cli(
        "fire",
        "orders",
        "--config",
        str(path),
        "--param",
        "run_date=x",
        "--event-id",
        "cli-1",
        "--wait",
        "--timeout",
        "60",
        env=env,
    )
    assert fired.returncode == 0, fired.stderr
    text = run_cli("explain", "cli-1", "--config", str(path), env=env)
    assert text.returncode == 0, text.stderr
    assert "event cli-1 (manual) from cli" in text.stdout
    assert "SUCCEEDED" in text.stdout
    as_json = run_cli("explain", "run:orders:cli-1", "--json", "--config", str(path), env=env)
    story = json.loads(as_json.stdout)
    assert story["runs"][0]["status"] == "succeeded"
    missing = run_cli("explain", "nope", "--config", str(path), env=env)
    assert missing.returncode == 1 and "nothing is known about 'nope'" in missing.stderr


def test_strings_older_versions_stored_are_told_escaped_without_a_traceback(
    launched: Any, tmp_path: Any
) -> None:
    from datetime import UTC, datetime

    from tests.support import base_config

    settings, enqueuer = launched()
    # What the event model let through before it refused such strings.
    stored = Event.model_construct(
        kind="manual",
        id="old-1",
        received_at=datetime.now(UTC),
        attributes={"trigger": "orders", "run_date": "26\ud800", "fired_by": "a\x1b[2J\ud800"},
    )
    _finished(enqueuer, fire_event(enqueuer, stored).run_id)
    config = base_config(tmp_path, settings.project_path(settings.triggers[0]))
    path = write_config(tmp_path / "bauplan-trigger.toml", config)
    env = {"DBOS_SYSTEM_DATABASE_URL": settings.system_database_url} if settings.is_postgres else {}
    told = run_cli("explain", "old-1", "--config", str(path), env=env)
    assert told.returncode == 0 and "Traceback" not in told.stderr, told.stderr
    assert "fired_by=a\\x1b[2J\\ud800, run_date=26\\ud800" in told.stdout
    assert '"run_date": "26\\\\ud800"' in told.stdout and "\x1b" not in told.stdout
    as_json = run_cli("explain", "run:orders:old-1", "--json", "--config", str(path), env=env)
    story = json.loads(as_json.stdout)
    assert story["runs"][0]["parameters"] == {"run_date": "26\\ud800", "source": "fire"}
    assert story["events"][0]["attributes"]["fired_by"] == "a\x1b[2J\\ud800"


def test_explain_and_runs_give_the_same_waiting_reason(launched: Any, project_dir: Any) -> None:
    """A trigger with its own limits (two runs per branch, so two slots): the third run
    waits for its slot, held by the first, and ``explain`` says the same as ``runs
    show`` (one diagnosis)."""
    from tests.support import wait_until
    from tests.workflows.flow_support import fill_the_branch, ledger, orders_trigger, release
    from workflows.records import show_run

    trigger = orders_trigger(project_dir, per_branch_concurrency=2)
    settings, enqueuer = launched(bauplan={"rehearse_outcome": "hang"}, triggers=[trigger])
    (first, _second), third = fill_the_branch(settings, enqueuer)
    shown = show_run(enqueuer.client, third, settings)
    [told] = explain(third, event_log(settings), enqueuer.client, settings)["runs"]
    busy = f"branch rehearsal.orders_d1 is busy with run {first}"
    assert shown["waiting_reason"] == busy
    assert told["waiting"] == shown["waiting_reason"]
    wait_until(lambda: release(settings) >= 0 and len(ledger(settings).jobs()) == 3, what="w3")
    release(settings)
    assert _finished(enqueuer, third)["status"] == "succeeded"


_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def test_a_timeline_is_in_time_order_and_to_the_millisecond(launched: Any) -> None:
    """DBOS's own status times have whole seconds on SQLite under Python < 3.12: none
    of them may round an entry down to ``.00`` or put it before what came first."""
    settings, enqueuer = launched()
    event = manual_event("orders", {"run_date": "t"}, event_id="tl-1")
    _finished(enqueuer, fire_event(enqueuer, event).run_id)
    story = explain("tl-1", event_log(settings), enqueuer.client, settings)
    [received] = story["events"]
    [run] = story["runs"]
    times = [entry["at"] for entry in run["timeline"]]
    whats = [entry["what"] for entry in run["timeline"]]
    assert whats[0] == "enqueued" and whats[-1] == "finished", whats
    assert all(_MS.fullmatch(at or "") for at in times), times
    assert times == sorted(times)
    # Enqueued once it had arrived, not a rounded-down second before; ended after its
    # last step did.
    assert received["received_at"] <= times[0]
    assert times[-1] >= max(s["completed_at"] for s in run["steps"] if s["completed_at"])
    assert _MS.fullmatch(run["created_at"]) and _MS.fullmatch(run["finished_at"])
    clocks = [
        line.split()[0]
        for line in render(story).splitlines()
        if re.fullmatch(r"  \d\d:\d\d:\d\d\.\d{3}  .*", line)
    ]
    assert clocks == [at[11:23] for at in times]
