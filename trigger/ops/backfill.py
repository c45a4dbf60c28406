"""Backfill a schedule trigger: one run per tick in a range, as if the scheduler had
fired each one then.

Each tick becomes the same ``schedule`` event the scheduler makes for it
(``schedule.tick_event``), so its run id is the tick's run id: a tick the scheduler
already ran, or an earlier backfill of an overlapping range, is found, not run again.
Ticks go through the one ingest path one by one, each committed before the next, so a
backfill stopped at any point (even ``kill -9``) has enqueued a prefix of its ticks,
and running it again enqueues the rest. The runs wait for their branch and rate window
like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dbos import DBOSClient

from trigger.core.errors import BackfillError
from trigger.core.matching import run_id_for
from trigger.core.settings import TriggerConfig
from trigger.core.settings.schedule import ScheduleSource
from trigger.ingest import ingest
from trigger.sources.schedule import schedule_filter, tick_event
from workflows.intake import Enqueuer

DEFAULT_MAX = 1000
_BEFORE = timedelta(microseconds=1)
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


@dataclass(frozen=True)
class Tick:
    scheduled_time: str
    event_id: str
    run_id: str
    state: str  # "new" (enqueued now), "exists" (found), "would run" (dry run)

    def as_dict(self) -> dict[str, str]:
        return {
            "scheduled_time": self.scheduled_time,
            "event_id": self.event_id,
            "run_id": self.run_id,
            "state": self.state,
        }


def schedule_of(trig: TriggerConfig) -> ScheduleSource:
    if trig.schedule is None:
        raise BackfillError(
            f"trigger {trig.name!r} has no [triggers.schedule]: only schedule triggers are "
            "backfilled; to run it now, fire it"
        )
    return trig.schedule


def parse_moment(value: str, trig: TriggerConfig, what: str, *, end: bool = False) -> datetime:
    """An ISO 8601 date or time; without an offset, in the trigger's time zone. A date
    alone is its first moment, or with ``end`` its last: ``--to 2026-11-07`` includes
    the 7th."""
    schedule = schedule_of(trig)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BackfillError(
            f"{what} {value!r} is not an ISO 8601 date or time; write it like "
            "2026-11-01 or 2026-11-01T06:00:00+01:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=schedule.zone())
    if end and _DATE_ONLY.match(value.strip()):
        moment += timedelta(days=1) - _BEFORE
    return moment


def plan(
    trig: TriggerConfig, start: datetime, end: datetime, limit: int = DEFAULT_MAX
) -> list[datetime]:
    """The trigger's ticks in [start, end], oldest first; refused when there are more
    than ``limit`` or the range is empty."""
    schedule = schedule_of(trig)
    if end < start:
        raise BackfillError(
            f"the range ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    if limit < 1:
        raise BackfillError(f"the tick limit must be at least 1, not {limit}")
    ticks = schedule.ticks_between(start - _BEFORE, end, limit=limit + 1)
    if len(ticks) > limit:
        raise BackfillError(
            f"the range holds more than {limit} ticks of {schedule.cron!r}; narrow it "
            "or raise the limit"
        )
    if not ticks:
        raise BackfillError(
            f"no tick of {schedule.cron!r} ({schedule.timezone or 'UTC'}) falls "
            f"between {start.isoformat()} and {end.isoformat()}"
        )
    return ticks


def preview(client: DBOSClient | None, trig: TriggerConfig, ticks: list[datetime]) -> list[Tick]:
    """What a backfill of ``ticks`` would do: which runs exist already (none, with no
    system database yet)."""
    events = [tick_event(trig, t) for t in ticks]
    ids = [run_id_for(trig.name, e.id) for e in events]
    found: set[str] = set()
    for start in range(0, len(ids) if client is not None else 0, 500):
        assert client is not None
        rows = client.list_workflows(
            workflow_ids=ids[start : start + 500], load_input=False, load_output=False
        )
        found |= {row.workflow_id for row in rows}
    return [
        Tick(
            str(e.attributes["scheduled_time"]),
            e.id,
            run_id,
            "exists" if run_id in found else "would run",
        )
        for e, run_id in zip(events, ids, strict=True)
    ]


def backfill(
    enqueuer: Enqueuer,
    trig: TriggerConfig,
    ticks: list[datetime],
    progress: Callable[[Tick], None] = lambda tick: None,
) -> list[Tick]:
    """Enqueue one run per tick, oldest first, each committed before the next."""
    done = []
    for moment in ticks:
        event = tick_event(trig, moment)
        taken = ingest(enqueuer, event, schedule_filter, source_addr="backfill")
        run_id = taken.runs[0].run_id if taken.runs else run_id_for(trig.name, event.id)
        state = "new" if taken.new_runs else "exists"
        tick = Tick(str(event.attributes["scheduled_time"]), event.id, run_id, state)
        progress(tick)
        done.append(tick)
    return done
