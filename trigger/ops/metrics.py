"""``/metrics`` for Prometheus, read from the database at scrape time.

Runs, queue and notification figures come from DBOS's own tables and events from
our event log, so any process (an ingress, a worker) reports the same numbers for
the whole deployment, and nothing is lost when a process restarts.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from dbos import DBOSClient
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from trigger.core import outage
from trigger.core.eventlog import EventLog, event_log
from trigger.core.runstatus import FINAL_STATUSES, STATUS_WORDS, status_word
from trigger.core.settings import Settings
from trigger.http.app import state
from trigger.ops.api import client_of
from trigger.ops.guard import GUARD_RESPONSES, authorize
from workflows.diagnosis import KINDS, diagnose
from workflows.queue import RUN_QUEUE, RUN_WORKFLOW

log = logging.getLogger(__name__)

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
# The DBOS statuses of a run that has ended.
_FINAL = frozenset(k for k, word in STATUS_WORDS.items() if word in FINAL_STATUSES)


def _table(engine: sa.Engine, name: str) -> str:
    return name if engine.dialect.name == "sqlite" else f"dbos.{name}"


def _trigger_of(workflow_id: str) -> str:
    parts = workflow_id.split(":", 2)
    return parts[1] if len(parts) >= 3 and parts[0] == "run" else "unknown"


# What makes a scrape report the database down rather than fail: any database error,
# the DBOS client's (which reads the same tables) included.
_SCRAPE_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError, *outage.DATABASE_ERRORS)


class StateCollector(Collector):
    """A Prometheus collector that queries the system database on each scrape."""

    def __init__(
        self, engine: sa.Engine, log: EventLog, client: DBOSClient, settings: Settings
    ) -> None:
        self.engine = engine
        self.log = log
        self.client = client
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except _SCRAPE_ERRORS as exc:
            # The driver's words, so that an outage's line is held back with the others.
            log.warning("metrics scrape could not read the database: %s", outage.reason(exc))
            up = GaugeMetricFamily("bauplan_trigger_database_up", "Whether the scrape read it")
            up.add_metric([], 0)
            yield up

    def _waiting(self) -> Counter[str]:
        """Waiting runs by what holds them back: the same diagnosis ``runs`` gives, over
        every run queue (per-trigger ones too) and every limit."""
        rows = self.client.list_workflows(
            name=RUN_WORKFLOW,
            # PENDING too: a run parked in its workflow (rate-limited, or waiting for a
            # global slot) is waiting; the diagnosis leaves the running ones out.
            status=["ENQUEUED", "DELAYED", "PENDING"],
            load_input=False,
            load_output=False,
        )
        held = diagnose(self.client, self.settings, rows, RUN_WORKFLOW, RUN_QUEUE)
        return Counter(w.kind for w in held.values())

    def _collect(self) -> Iterator[Metric]:
        now = time.time()
        events = CounterMetricFamily(
            "bauplan_trigger_events",
            "Events received (in the retained event log) by source and outcome",
            labels=["source", "outcome"],
        )
        for source, outcome, count in self.log.counts():
            events.add_metric([source, outcome], count)
        yield events

        status = _table(self.engine, "workflow_status")
        query = sa.text(
            f"SELECT workflow_uuid, status, started_at_epoch_ms, completed_at, updated_at, "  # noqa: S608
            f"attributes "
            f"FROM {status} WHERE name = :name"
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query, {"name": RUN_WORKFLOW}).all()
            # Step times are taken in Python with millisecond precision; the status
            # row's own times are whole seconds on SQLite.
            spans = {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    sa.text(
                        f"SELECT o.workflow_uuid, MIN(o.started_at_epoch_ms), "  # noqa: S608
                        f"MAX(o.completed_at_epoch_ms) FROM "
                        f"{_table(self.engine, 'operation_outputs')} o JOIN {status} s "
                        "ON s.workflow_uuid = o.workflow_uuid WHERE s.name = :name "
                        "AND s.status IN ('SUCCESS', 'ERROR', 'CANCELLED') "
                        "GROUP BY o.workflow_uuid"
                    ),
                    {"name": RUN_WORKFLOW},
                )
            }
            failures = conn.execute(
                sa.text(
                    f"SELECT function_name, COUNT(*) FROM "  # noqa: S608
                    f"{_table(self.engine, 'operation_outputs')} "
                    "WHERE lower(function_name) LIKE '%notif%' AND error IS NOT NULL "
                    "GROUP BY function_name"
                )
            ).all()

        runs = GaugeMetricFamily(
            "bauplan_trigger_runs", "Runs by trigger and status", labels=["trigger", "status"]
        )
        by_status: Counter[tuple[str, str]] = Counter()
        waiting = self._waiting()
        durations: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            trigger = _trigger_of(r.workflow_uuid)
            by_status[(trigger, status_word(r.status, _attributes(r.attributes)))] += 1
            if r.status in _FINAL:
                first, last = spans.get(r.workflow_uuid, (None, None))
                if first and last:
                    durations[trigger].append(max(0.0, (last - first) / 1000))
                elif r.started_at_epoch_ms:
                    end = r.completed_at or r.updated_at
                    durations[trigger].append(max(0.0, (end - r.started_at_epoch_ms) / 1000))
        for (trigger, word), count in sorted(by_status.items()):
            runs.add_metric([trigger, word], count)
        yield runs

        depth = GaugeMetricFamily(
            "bauplan_trigger_queue_depth", "Runs waiting on the run queues", labels=[]
        )
        depth.add_metric([], sum(waiting.values()))
        yield depth
        reasons = GaugeMetricFamily(
            "bauplan_trigger_waiting_runs",
            "Waiting runs by what holds them back: queued (next in line), branch_busy, "
            "rate_limited, global_cap, delayed (debouncing), unknown_queue (not in this config)",
            labels=["reason"],
        )
        for kind in KINDS:
            reasons.add_metric([kind], waiting[kind])
        yield reasons

        histogram = HistogramMetricFamily(
            "bauplan_trigger_run_duration_seconds",
            "Finished runs' time from start to end",
            labels=["trigger"],
        )
        for trigger, values in sorted(durations.items()):
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
            buckets.append(("+Inf", len(values)))
            histogram.add_metric([trigger], buckets, sum(values))
        yield histogram

        notify = CounterMetricFamily(
            "bauplan_trigger_notification_failures",
            "Notification steps that raised, by step name",
            labels=["step"],
        )
        for name, count in failures:
            notify.add_metric([str(name).rsplit(".", 1)[-1]], int(count))
        yield notify

        ages = GaugeMetricFamily(
            "bauplan_trigger_watcher_last_scan_age_seconds",
            "Seconds since each folder watcher last finished a scan",
            labels=["watcher"],
        )
        for name, at in sorted(self.log.heartbeats().items()):
            ages.add_metric([name], max(0.0, now - at))
        yield ages

        up = GaugeMetricFamily("bauplan_trigger_database_up", "Whether the scrape read it")
        up.add_metric([], 1)
        yield up


def _registry(request: Request) -> CollectorRegistry:
    app_state = request.app.state
    if not hasattr(app_state, "bt_metrics"):
        registry = CollectorRegistry(auto_describe=False)
        engine = state(request).engine
        settings = state(request).settings
        log_ = event_log(engine, settings.events.retention_days)
        registry.register(StateCollector(engine, log_, client_of(request), settings))
        app_state.bt_metrics = registry
    found: CollectorRegistry = app_state.bt_metrics
    return found


router = APIRouter(dependencies=[Depends(authorize)], responses=GUARD_RESPONSES)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    data: Any = generate_latest(_registry(request))
    return Response(data, media_type=CONTENT_TYPE_LATEST)


def _attributes(value: Any) -> dict[str, Any] | None:
    """A run's attributes as the row holds them: a dict on PostgreSQL, JSON text on
    SQLite (the phase tells a parked run, which is waiting, from a running one)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None
