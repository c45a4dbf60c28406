"""Cron triggers on DBOS's scheduler.

At start-up (roles ``all`` and ``worker``) every ``[triggers.schedule]`` becomes a
DBOS schedule (``DBOS.apply_schedules``, an idempotent upsert) and schedules whose
trigger left the config are deleted. Each tick runs a tiny DBOS workflow whose one
step builds a ``schedule`` Event and dispatches it through the normal path, so the
run's id, branch partition key and priority are ours. The event id, and so the run
id, derive from (trigger, scheduled time): a tick runs once, whichever process or
catch-up fires it.

Ticks missed while no worker was up are handled per trigger by ``catch_up``:
``none`` skips them, ``latest`` runs only the newest, ``all`` runs each (at most
``MAX_CATCH_UP`` of the newest), through ``DBOS.backfill_schedule``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dbos import DBOS, DBOSClient

from trigger.context import Component, ServiceContext
from trigger.core import outage
from trigger.core.event import AttributeValue, Event
from trigger.core.logfields import ids
from trigger.core.settings import Settings, TriggerConfig
from workflows.intake import Enqueuer

log = logging.getLogger(__name__)

TICK_WORKFLOW = "bauplan_trigger.schedule_tick"
SCHEDULE_PREFIX = "bauplan-trigger."
MAX_CATCH_UP = 1000
_EPSILON = timedelta(milliseconds=1)
_SETUP_RETRY_SECONDS = 2.0


def schedule_name(trigger: str) -> str:
    return f"{SCHEDULE_PREFIX}{trigger}"


def _stamp(moment: datetime) -> str:
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def tick_event(trig: TriggerConfig, scheduled_at: datetime) -> Event:
    """The Event for one tick; its id is the trigger plus the tick's UTC time."""
    utc = _stamp(scheduled_at.astimezone(UTC))
    return Event(
        kind="schedule",
        id=f"sched:{trig.name}:{utc}",
        attributes=tick_attributes(trig, scheduled_at),
    )


def tick_attributes(trig: TriggerConfig, scheduled_at: datetime) -> dict[str, AttributeValue]:
    """What a tick at ``scheduled_at`` tells templates; ``fire`` of a schedule trigger
    gives the same, for now."""
    assert trig.schedule is not None
    local = scheduled_at.astimezone(trig.schedule.zone())
    return {
        "trigger": trig.name,
        "scheduled_time": _stamp(local),
        "scheduled_date": local.date().isoformat(),
        "cron": trig.schedule.cron,
        "timezone": trig.schedule.timezone or "UTC",
    }


def _schedule_filter(event: Event, trigger: TriggerConfig) -> str | None:
    if event.attributes.get("trigger") != trigger.name:
        return "scheduled for another trigger"
    return None


class _Holder:
    """The enqueuer tick steps use in this process: serve's own (lent with ``lend``), or
    one made on demand and owned here, which is closed when another replaces it, so its
    database connections are not left for the garbage collector."""

    def __init__(self) -> None:
        self.enqueuer: Enqueuer | None = None
        self.owned = False
        self.lock = threading.Lock()

    def get(self, settings: Settings) -> Enqueuer:
        with self.lock:
            if self.enqueuer is None or self.enqueuer.settings is not settings:
                self._replace(Enqueuer(settings), owned=True)
            assert self.enqueuer is not None
            return self.enqueuer

    def lend(self, enqueuer: Enqueuer) -> None:
        with self.lock:
            if enqueuer is not self.enqueuer:
                self._replace(enqueuer, owned=False)

    def _replace(self, enqueuer: Enqueuer, *, owned: bool) -> None:
        if self.enqueuer is not None and self.owned:
            self.enqueuer.close()
        self.enqueuer, self.owned = enqueuer, owned


_ENQUEUER = _Holder()


def enqueue_tick(trigger: str, scheduled_iso: str) -> str | None:
    """The tick's one step: ingest the schedule event; returns the run id. Run again
    after a crash, it finds the tick's event and run: a duplicate, nothing new."""
    from trigger.ingest import ingest
    from workflows import runtime

    settings = runtime.current().settings
    trig = settings.find_trigger(trigger)
    if trig is None or trig.schedule is None:
        log.warning("schedule tick for trigger %s, which has no schedule any more", trigger)
        return None
    event = tick_event(trig, datetime.fromisoformat(scheduled_iso))
    taken = ingest(_ENQUEUER.get(settings), event, _schedule_filter, source_addr="scheduler")
    for item in taken.new_runs:
        log.info(
            "schedule tick %s enqueued run %s",
            event.id,
            item.run_id,
            extra=ids(run_id=item.run_id, trigger=trigger, event_id=event.id),
        )
    return taken.runs[0].run_id if taken.runs else None


@DBOS.workflow(name=TICK_WORKFLOW)
def schedule_tick(scheduled_at: datetime, context: Any) -> None:
    trigger = context["trigger"] if isinstance(context, dict) else str(context)
    DBOS.run_step({"name": "enqueue_run"}, enqueue_tick, trigger, scheduled_at.isoformat())


@dataclass
class SetupReport:
    applied: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    caught_up: dict[str, list[datetime]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    # Catch-up looked at ticks up to this moment; later ones are the scheduler's.
    until: datetime | None = None


# Ticks at or after this moment may be fired by this process's own scheduler threads;
# catch-up looks at what was missed before it. ``serve`` imports us before launching.
PROCESS_START = datetime.now(UTC)


def setup(
    settings: Settings, enqueuer: Enqueuer | None = None, started_at: datetime | None = None
) -> SetupReport:
    """Apply the config's schedules to DBOS (after launch) and catch up on missed ticks."""
    if enqueuer is not None:
        _ENQUEUER.lend(enqueuer)
    report = SetupReport()
    scheduled = [t for t in settings.triggers if t.schedule is not None]
    entries: list[Any] = []
    for trig in scheduled:
        assert trig.schedule is not None
        entries.append(
            {
                "schedule_name": schedule_name(trig.name),
                "workflow_fn": schedule_tick,
                "schedule": trig.schedule.cron,
                "context": {"trigger": trig.name},
                "automatic_backfill": False,
                "cron_timezone": trig.schedule.timezone,
            }
        )
    if entries:
        DBOS.apply_schedules(entries)
    report.applied = [t.name for t in scheduled]
    wanted = {schedule_name(t.name) for t in scheduled}
    for existing in DBOS.list_schedules(workflow_name=TICK_WORKFLOW):
        if existing["schedule_name"] not in wanted:
            DBOS.delete_schedule(existing["schedule_name"])
            report.removed.append(existing["schedule_name"].removeprefix(SCHEDULE_PREFIX))
            log.info(
                "removed schedule %s: its trigger has no schedule now", existing["schedule_name"]
            )
    now = report.until = datetime.now(UTC)
    for trig in scheduled:
        _catch_up(trig, started_at or PROCESS_START, now, report)
    for trig in scheduled:
        assert trig.schedule is not None
        log.info(
            "schedule %s cron=%r tz=%s catch_up=%s next=%s",
            trig.name,
            trig.schedule.cron,
            trig.schedule.timezone or "UTC",
            trig.schedule.catch_up,
            _stamp(trig.schedule.next_after(now)),
        )
    return report


def _tick_ids(trigger: str) -> str:
    return f"sched-{schedule_name(trigger)}-"


def _fired_ticks(trigger: str, limit: int = 50) -> list[datetime]:
    """Tick times DBOS has a tick workflow for, newest created first."""
    prefix = _tick_ids(trigger)
    rows = DBOS.list_workflows(
        workflow_id_prefix=prefix, sort_desc=True, limit=limit, load_input=False, load_output=False
    )
    out = []
    for row in rows:
        try:
            out.append(datetime.fromisoformat(row.workflow_id.removeprefix(prefix)))
        except ValueError:
            continue  # a manual trigger_schedule id
    return out


def _catch_up(trig: TriggerConfig, started: datetime, now: datetime, report: SetupReport) -> None:
    """Ticks after the last one fired before this process started, not fired since."""
    assert trig.schedule is not None
    before = [t for t in _fired_ticks(trig.name) if t < started]
    if not before:
        return  # never ran: nothing was missed
    candidates = trig.schedule.ticks_between(max(before), now, limit=MAX_CATCH_UP)
    prefix = _tick_ids(trig.name)
    existing = (
        {
            row.workflow_id
            for row in DBOS.list_workflows(
                workflow_ids=[f"{prefix}{t.isoformat()}" for t in candidates],
                load_input=False,
                load_output=False,
            )
        }
        if candidates
        else set()
    )
    missed = [t for t in candidates if f"{prefix}{t.isoformat()}" not in existing]
    policy = trig.schedule.catch_up
    chosen = [] if policy == "none" else missed[-1:] if policy == "latest" else missed
    for moment in chosen:
        DBOS.backfill_schedule(schedule_name(trig.name), moment - _EPSILON, moment + _EPSILON)
    report.caught_up[trig.name] = chosen
    report.skipped[trig.name] = len(missed) - len(chosen)
    if missed:
        log.info(
            "schedule %s missed %d tick(s) while down; catch_up=%s runs %d",
            trig.name,
            len(missed),
            policy,
            len(chosen),
        )


def schedule_rows(settings: Settings, client: DBOSClient | None = None) -> list[dict[str, Any]]:
    """Each configured schedule with its next fire time and DBOS's last fire, for ``runs``."""
    now = datetime.now(UTC)
    rows = []
    for trig in settings.triggers:
        if trig.schedule is None:
            continue
        last = None
        if client is not None:
            known = client.get_schedule(schedule_name(trig.name))
            last = known.get("last_fired_at") if known else None
        rows.append(
            {
                "trigger": trig.name,
                "cron": trig.schedule.cron,
                "timezone": trig.schedule.timezone or "UTC",
                "catch_up": trig.schedule.catch_up,
                "next_fire": _stamp(trig.schedule.next_after(now)),
                "last_fired": last,
            }
        )
    return rows


async def run_schedules(ctx: ServiceContext) -> None:
    """The ``serve`` component: set the schedules up once DBOS is launched, then idle. An
    outage of the system database delays the set-up; it must not stop ``serve``."""
    while True:
        try:
            report = await asyncio.to_thread(setup, ctx.settings, ctx.enqueuer)
            break
        except Exception as exc:
            if not outage.is_unreachable(exc):
                raise
            # The driver's words, so that the outage log holds this line back too.
            log.warning(
                "schedules not applied yet, trying again in %gs: %s",
                _SETUP_RETRY_SECONDS,
                outage.reason(exc),
            )
            await asyncio.sleep(_SETUP_RETRY_SECONDS)
    if report.applied or report.removed:
        log.info(
            "schedules applied=%s removed=%s",
            ",".join(report.applied) or "-",
            ",".join(report.removed) or "-",
        )
    await asyncio.Event().wait()


COMPONENT = Component("schedules", ("all", "worker"), run_schedules)
