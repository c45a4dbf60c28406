"""Backfilling a schedule trigger, on both databases: one run per tick in the range, the
tick's own run id (so the scheduler's runs and earlier backfills are found, not run
again), and a backfill killed halfway that, run again, enqueues exactly the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import base_config, cli_env, final_run, run_cli, wait_until, write_config
from trigger.core.errors import BackfillError
from trigger.ingest import ingest
from trigger.ops import backfill as planner
from trigger.sources.schedule import schedule_filter, tick_event
from workflows.records import list_runs


def _nightly(project_dir: Path, **schedule: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "project_dir": str(project_dir),
        "branch": "nightly_{scheduled_date}",
        "parameters": {"day": "{scheduled_date}", "at": "{scheduled_time}"},
        "schedule": {"cron": "0 6 * * *", "catch_up": "none", **schedule},
    }


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_backfill_runs_each_tick_in_the_range_once(launched: Any, project_dir: Path) -> None:
    settings, enqueuer = launched(triggers=[_nightly(project_dir)])
    trig = settings.trigger("nightly")
    ticks = planner.plan(trig, _at("2026-11-01T06:00"), _at("2026-11-03T06:00"))
    done = planner.backfill(enqueuer, trig, ticks)
    assert [t.scheduled_time for t in done] == [
        "2026-11-01T06:00:00Z",
        "2026-11-02T06:00:00Z",
        "2026-11-03T06:00:00Z",
    ]
    assert [t.state for t in done] == ["new"] * 3
    for tick in done:
        run = final_run(enqueuer, tick.run_id)
        assert run["status"] == "succeeded"
        assert run["parameters"]["at"] == tick.scheduled_time
    # An overlapping range finds the runs it already has, and a tick the scheduler
    # fired itself is the same run.
    scheduled = tick_event(trig, _at("2026-11-05T06:00"))
    [by_scheduler] = ingest(enqueuer, scheduled, schedule_filter).runs
    again = planner.backfill(
        enqueuer, trig, planner.plan(trig, _at("2026-11-02T00:00"), _at("2026-11-05T23:59"))
    )
    assert [t.state for t in again] == ["exists", "exists", "new", "exists"]
    assert again[-1].run_id == by_scheduler.run_id
    assert len(list_runs(enqueuer.client, trigger="nightly", limit=100)) == 5
    preview = planner.preview(
        enqueuer.client, trig, planner.plan(trig, _at("2026-11-05"), _at("2026-11-06T06:00"))
    )
    assert [t.state for t in preview] == ["exists", "would run"]


def test_a_range_is_read_in_the_trigger_s_zone_and_refused_when_it_cannot_be_run(
    project_dir: Path, tmp_path: Path
) -> None:
    from tests.support import make_settings

    settings = make_settings(
        tmp_path,
        None,
        project_dir,
        triggers=[
            _nightly(project_dir, timezone="Europe/Berlin"),
            {"name": "plain", "project_dir": str(project_dir), "branch": "p"},
        ],
    )
    trig = settings.trigger("nightly")
    local = planner.parse_moment("2026-11-01", trig, "--from")
    assert local.utcoffset() is not None and local.utcoffset().total_seconds() == 3600
    [tick] = planner.plan(trig, local, planner.parse_moment("2026-11-01T23:00", trig, "--to"))
    assert tick.isoformat() == "2026-11-01T06:00:00+01:00"
    # A date alone as the end includes that whole day.
    whole_day = planner.parse_moment("2026-11-02", trig, "--to", end=True)
    assert len(planner.plan(trig, local, whole_day)) == 2
    cases = [
        (lambda: planner.plan(settings.trigger("plain"), local, local), "only schedule triggers"),
        (lambda: planner.parse_moment("yesterday", trig, "--from"), "--from 'yesterday' is not"),
        (lambda: planner.plan(trig, local.replace(day=3), local), "ends (2026-11-01"),
        (lambda: planner.plan(trig, local, local.replace(month=12), 5), "more than 5 ticks"),
        (lambda: planner.plan(trig, local.replace(hour=7), local.replace(hour=8)), "no tick of"),
    ]
    for call, words in cases:
        with pytest.raises(BackfillError, match=None) as caught:
            call()
        assert words in str(caught.value), str(caught.value)


def test_a_backfill_killed_halfway_enqueues_exactly_the_rest_when_run_again(
    tmp_path: Path, project_dir: Path, backend: str | None
) -> None:
    config = write_config(
        tmp_path / "bauplan-trigger.toml",
        base_config(tmp_path, project_dir, triggers=[_nightly(project_dir, cron="0 * * * *")]),
    )
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    args = [
        "backfill",
        "nightly",
        "--config",
        str(config),
        "--from",
        "2026-01-01T00:00Z",
        "--to",
        "2026-01-12T23:59Z",
    ]
    # No worker runs: the runs wait in the queue, which is all this test counts.
    first = subprocess.Popen(
        [sys.executable, "-m", "trigger.cli", *args],
        env=cli_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from trigger.core.settings import load_settings
    from workflows import sysdb
    from workflows.intake import Enqueuer

    os.environ.update(env)
    try:
        settings = load_settings(config)
    finally:
        for key in env:
            os.environ.pop(key)
    wait_until(lambda: sysdb.is_ready(settings), timeout=60, what="the database")
    enqueuer = Enqueuer(settings)

    def enqueued() -> int:
        try:
            return len(list_runs(enqueuer.client, trigger="nightly", limit=400))
        except Exception:  # the backfill may still be setting the database up
            return 0

    try:
        wait_until(lambda: enqueued() >= 20, timeout=60, what="the backfill to get going")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        halfway = len(list_runs(enqueuer.client, trigger="nightly", limit=400))
        assert 20 <= halfway < 288, halfway
        again = run_cli(*args, "--json", env=env, timeout=300)
        assert again.returncode == 0, again.stderr
        states = [t["state"] for t in json.loads(again.stdout)]
        assert len(states) == 288  # 12 days of hourly ticks
        runs = list_runs(enqueuer.client, trigger="nightly", limit=400)
        assert len(runs) == len({r["id"] for r in runs}) == 288
        assert states.count("new") == 288 - halfway
        assert f"{288 - halfway} new run(s), {halfway} already there" in again.stderr
    finally:
        enqueuer.close()


def test_the_cli_shows_a_dry_run_and_refuses_in_one_line(tmp_path: Path, project_dir: Path) -> None:
    config = write_config(
        tmp_path / "bauplan-trigger.toml",
        base_config(tmp_path, project_dir, triggers=[_nightly(project_dir)]),
    )
    base = ["backfill", "nightly", "--config", str(config)]
    dry = run_cli(*base, "--from", "2026-11-01", "--to", "2026-11-02T12:00", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].split() == ["SCHEDULED", "RUN", "STATE"]
    assert [line.split()[-2:] for line in lines[1:]] == [["would", "run"]] * 2
    assert not (tmp_path / "state" / "dbos.sqlite").exists()  # a dry run leaves nothing
    wrong = run_cli(*base, "--from", "2026-11-03", "--to", "2026-11-01")
    assert wrong.returncode == 1 and wrong.stdout == ""
    assert wrong.stderr.count("\n") == 1 and wrong.stderr.startswith("error: the range ends")
    unknown = run_cli(
        "backfill", "nope", "--config", str(config), "--from", "2026-11-01", "--to", "2026-11-02"
    )
    assert unknown.returncode == 1 and "nope" in unknown.stderr


def test_the_api_backfills_and_previews_like_the_cli(hooks: Any, project_dir: Path) -> None:
    import httpx

    _settings, _enqueuer, url = hooks(triggers=[_nightly(project_dir)])
    body = {"from": "2026-11-01", "to": "2026-11-02"}
    headers = {"X-Requested-By": "test"}
    dry = httpx.post(
        f"{url}/api/triggers/nightly/backfill", json={**body, "dry_run": True}, headers=headers
    )
    assert dry.status_code == 200, dry.text
    assert [t["state"] for t in dry.json()["ticks"]] == ["would run"] * 2
    done = httpx.post(f"{url}/api/triggers/nightly/backfill", json=body, headers=headers)
    again = httpx.post(f"{url}/api/triggers/nightly/backfill", json=body, headers=headers)
    assert (done.json()["new"], again.json()["new"]) == (2, 0)
    assert [t["run_id"] for t in again.json()["ticks"]] == [
        t["run_id"] for t in done.json()["ticks"]
    ]
    bad = httpx.post(
        f"{url}/api/triggers/nightly/backfill",
        json={"from": "soon", "to": "later"},
        headers=headers,
    )
    assert bad.status_code == 422 and bad.json()["error"].startswith("body field from 'soon'")
    missing = httpx.post(f"{url}/api/triggers/nope/backfill", json=body, headers=headers)
    assert missing.status_code == 404 and "error" in missing.json()
