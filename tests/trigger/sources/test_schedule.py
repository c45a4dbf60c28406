"""Cron triggers: config checks, one run per tick, catch-up after a stop, removal."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import make_settings, wait_until
from trigger.core.errors import ConfigError
from trigger.core.eventlog import event_log
from trigger.ops.explain import explain, render
from trigger.sources import schedule
from workflows import app
from workflows.bauplan.rehearsal import Ledger
from workflows.runtime import ledger_path


def ticking(project_dir: Path, name: str = "tick", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "project_dir": str(project_dir),
        "branch": name,
        "parameters": {"start_time": "{scheduled_time}", "day": "{scheduled_date}"},
        "rehearse_seconds": 0,
        "schedule": {"cron": "* * * * * *", **extra},
    }


def stop_ticking(enqueuer: Any, *, delete: bool = True) -> None:
    """Stop every schedule and wait until no tick is in flight, so that shutting DBOS
    down leaves no tick workflow running against a database a test is about to drop."""
    from dbos import DBOS

    for item in DBOS.list_schedules(workflow_name=schedule.TICK_WORKFLOW):
        if delete:
            DBOS.delete_schedule(item["schedule_name"])
        else:
            DBOS.pause_schedule(item["schedule_name"])
    stopped = time.monotonic()

    def quiet() -> bool:
        busy = enqueuer.client.list_workflows(
            workflow_id_prefix="sched-", status=["ENQUEUED", "PENDING"], load_input=False
        )
        return not busy and time.monotonic() > stopped + 2.5  # the scheduler polls each second

    wait_until(quiet, timeout=60, what="tick workflows to finish")


@pytest.fixture
def ticker(launched: Any) -> Any:
    """``launched``, plus stopping the schedules before DBOS shuts down."""
    started: list[Any] = []

    def start(**overrides: Any) -> tuple[Any, Any]:
        settings, enqueuer = launched(**overrides)
        started.append(enqueuer)
        return settings, enqueuer

    yield start
    for enqueuer in started[-1:]:
        stop_ticking(enqueuer)


def _last_tick(enqueuer: Any, trigger: str) -> datetime:
    prefix = f"sched-{schedule.schedule_name(trigger)}-"
    rows = enqueuer.client.list_workflows(workflow_id_prefix=prefix, load_input=False)
    return max(datetime.fromisoformat(r.workflow_id.removeprefix(prefix)) for r in rows)


def _seconds_between(after: datetime, until: datetime) -> list[datetime]:
    """The ticks of a one-second cron in (after, until]."""
    first = int(after.timestamp()) + 1
    return [
        datetime.fromtimestamp(second, UTC) for second in range(first, int(until.timestamp()) + 1)
    ]


def _runs(enqueuer: Any, trigger: str) -> list[Any]:
    return enqueuer.client.list_workflows(
        workflow_id_prefix=f"run:{trigger}:", load_input=False, load_output=False
    )


def test_cron_and_timezone_are_checked_when_the_config_loads(
    tmp_path: Path, project_dir: Path
) -> None:
    for cron in ("0 2 * * *", "*/10 * * * * *"):
        trig = ticking(project_dir, schedule={"cron": cron})
        trig["schedule"] = {"cron": cron, "timezone": "Europe/Rome", "catch_up": "all"}
        settings = make_settings(tmp_path, None, project_dir, triggers=[trig])
        assert settings.triggers[0].schedule.cron == cron
    with pytest.raises(ConfigError, match=r"triggers\.tick\.schedule\.cron = '\* \* \*': has 3"):
        make_settings(
            tmp_path,
            None,
            project_dir,
            triggers=[ticking(project_dir) | {"schedule": {"cron": "* * *"}}],
        )
    with pytest.raises(ConfigError, match="not a valid cron expression"):
        make_settings(
            tmp_path,
            None,
            project_dir,
            triggers=[ticking(project_dir) | {"schedule": {"cron": "61 * * * *"}}],
        )
    with pytest.raises(ConfigError, match="IANA time zone"):
        make_settings(
            tmp_path,
            None,
            project_dir,
            triggers=[
                ticking(project_dir) | {"schedule": {"cron": "0 2 * * *", "timezone": "Mars/Base"}}
            ],
        )
    with pytest.raises(ConfigError, match="catch_up"):
        make_settings(
            tmp_path,
            None,
            project_dir,
            triggers=[
                ticking(project_dir) | {"schedule": {"cron": "0 2 * * *", "catch_up": "some"}}
            ],
        )


def test_a_one_second_cron_runs_once_per_tick(ticker: Any, project_dir: Path) -> None:
    settings, enqueuer = ticker(triggers=[ticking(project_dir)])
    report = schedule.setup(settings, enqueuer)
    assert report.applied == ["tick"]
    wait_until(lambda: len(_runs(enqueuer, "tick")) >= 4, timeout=60, what="four ticks")
    stop_ticking(enqueuer)  # before counting
    ids = sorted(r.workflow_id for r in _runs(enqueuer, "tick"))
    times = [datetime.fromisoformat(i.split(":", 4)[-1]) for i in ids]
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert gaps == {1.0}, ids  # consecutive seconds, none twice, none skipped
    log = event_log(settings)
    ticks = log.recent(source="schedule", limit=1000)
    assert sorted(e["event_id"] for e in ticks) == sorted(i.removeprefix("run:tick:") for i in ids)
    assert {e["outcome"] for e in ticks} == {"accepted"}
    jobs = Ledger(ledger_path(settings)).jobs()
    starts = [j["parameters"]["start_time"] for j in jobs]
    assert len(starts) == len(set(starts))  # one job per tick
    assert all(s.endswith("Z") for s in starts)


def test_a_schedule_tick_tells_its_story(ticker: Any, project_dir: Path) -> None:
    settings, enqueuer = ticker(triggers=[ticking(project_dir)])
    schedule.setup(settings, enqueuer)
    run = wait_until(
        lambda: next((r for r in _runs(enqueuer, "tick") if r.status == "SUCCESS"), None),
        timeout=60,
        what="a tick's run to succeed",
    )
    story = explain(run.workflow_id, event_log(settings), enqueuer.client, settings)
    [event] = story["events"]
    assert event["source"] == "schedule" and event["source_addr"] == "scheduler"
    assert event["verified"] == "not needed: a schedule tick of this service"
    scheduled = event["attributes"]["scheduled_time"]
    assert story["runs"][0]["parameters"]["start_time"] == scheduled
    assert story["runs"][0]["parameters"]["day"] == scheduled[:10]
    text = render(story)
    assert f"tick: matched -> {run.workflow_id}" in text and "SUCCEEDED" in text


def test_catch_up_policies_after_a_stop(ticker: Any, project_dir: Path) -> None:
    triggers = [
        ticking(project_dir, "skip", catch_up="none"),
        ticking(project_dir, "newest", catch_up="latest"),
        ticking(project_dir, "every", catch_up="all"),
    ]
    settings, enqueuer = ticker(triggers=triggers)
    schedule.setup(settings, enqueuer)
    for name in ("skip", "newest", "every"):
        wait_until(lambda n=name: _runs(enqueuer, n), timeout=60, what=f"{name} to tick once")
    stop_ticking(enqueuer, delete=False)  # paused: the schedules and their last ticks stay
    last = {name: _last_tick(enqueuer, name) for name in ("skip", "newest", "every")}
    app.shutdown()
    stopped = time.time()
    wait_until(lambda: time.time() > stopped + 3.5, timeout=10, what="ticks to be missed")
    restarted = datetime.now(UTC)
    app.launch(settings)
    report = schedule.setup(settings, enqueuer, started_at=restarted)
    from dbos import DBOS

    for name in ("skip", "newest", "every"):
        DBOS.resume_schedule(schedule.schedule_name(name))
    # Missed: every whole second after the last tick fired, up to where catch-up looked.
    assert report.until is not None
    missed = {name: _seconds_between(last[name], report.until) for name in last}
    assert all(len(ticks) >= 3 for ticks in missed.values()), missed
    assert report.caught_up["skip"] == [] and report.skipped["skip"] == len(missed["skip"])
    assert report.caught_up["newest"] == missed["newest"][-1:]
    assert report.skipped["newest"] == len(missed["newest"]) - 1
    assert report.caught_up["every"] == missed["every"] and report.skipped["every"] == 0
    newest = report.caught_up["newest"][0]
    assert newest <= datetime.now(UTC)
    for name in ("newest", "every"):
        for moment in report.caught_up[name]:
            run_id = "run:" + name + ":" + schedule.tick_event(settings.trigger(name), moment).id
            wait_until(
                lambda r=run_id: enqueuer.client.list_workflows(workflow_ids=[r]),
                timeout=60,
                what=f"caught-up run {run_id}",
            )
    gap_ids = [
        f"sched-bauplan-trigger.skip-{t.isoformat()}"
        for t in settings.trigger("skip").schedule.ticks_between(
            datetime.fromtimestamp(stopped + 1, UTC), restarted
        )
    ]
    assert gap_ids and enqueuer.client.list_workflows(workflow_ids=gap_ids) == []


def test_a_schedule_removed_from_the_config_is_removed_from_dbos(
    ticker: Any, project_dir: Path
) -> None:
    settings, enqueuer = ticker(triggers=[ticking(project_dir, "a"), ticking(project_dir, "b")])
    schedule.setup(settings, enqueuer)
    from dbos import DBOS

    names = {s["schedule_name"] for s in DBOS.list_schedules()}
    assert {"bauplan-trigger.a", "bauplan-trigger.b"} <= names
    fewer = make_settings(
        Path(settings.config_path).parent,
        settings.system_database_url,
        project_dir,
        triggers=[ticking(project_dir, "a")],
    )
    report = schedule.setup(fewer, enqueuer)
    assert report.removed == ["b"]
    assert {s["schedule_name"] for s in DBOS.list_schedules()} == {"bauplan-trigger.a"}
    rows = schedule.schedule_rows(fewer, enqueuer.client)
    assert rows[0]["trigger"] == "a" and rows[0]["next_fire"].endswith("Z")
