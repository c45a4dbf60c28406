"""``/metrics`` for Prometheus, read from the database at scrape time.

Runs, queue and notification figures come from DBOS's own tables, event totals from
the durable counters beside the event log (``trigger.core.eventcounts``), so any
process (an ingress, a worker) reports the same numbers for the whole deployment,
and nothing is lost, or lowered, when a process restarts or the log is pruned. The
HTTP request figures are the one exception: kept by each process, as Prometheus
expects of them (``trigger.http.metrics_middleware``).

A scrape's cost stays bounded as history grows: event totals are a few counter
rows, finished runs are tallied as they finish (``trigger.ops.runtally``), and the
rest reads only the runs waiting or running. Measured on SQLite (2 shared cores):
reading every run, a scrape took 3.1 s at 30,000 finished runs; tallied, ~10 ms at
10,000 and ~70 ms at 30,000 (PostgreSQL: tens of ms once its planner statistics are
current), after a process's first scrape, which reads them all once (2-4 s at
30,000 on either database).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from dbos import DBOSClient, WorkflowStatus
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
from trigger.core.runstatus import status_word
from trigger.core.settings import Settings
from trigger.http import metrics_middleware
from trigger.http.app import state
from trigger.ops.api import client_of
from trigger.ops.guard import GUARD_RESPONSES, authorize
from trigger.ops.runtally import FailedSteps, Tally, trigger_of
from workflows.diagnosis import KINDS, diagnose
from workflows.queue import RUN_QUEUE, RUN_WORKFLOW

log = logging.getLogger(__name__)

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
        self.tally = Tally()
        self.failed_steps = FailedSteps()

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except _SCRAPE_ERRORS as exc:
            # The driver's words, so that an outage's line is held back with the others.
            log.warning("metrics scrape could not read the database: %s", outage.reason(exc))
            up = GaugeMetricFamily("bauplan_trigger_database_up", "Whether the scrape read it")
            up.add_metric([], 0)
            yield up

    def _unfinished(self) -> list[WorkflowStatus]:
        """The runs waiting or running, over every run queue (per-trigger ones too);
        PENDING ones too: a run parked in its workflow (rate-limited, or waiting for a
        global slot) is waiting, and the diagnosis leaves the running ones out."""
        return self.client.list_workflows(
            name=RUN_WORKFLOW,
            status=["ENQUEUED", "DELAYED", "PENDING"],
            load_input=False,
            load_output=False,
        )

    def _collect(self) -> Iterator[Metric]:
        now = time.time()
        events = CounterMetricFamily(
            "bauplan_trigger_events",
            "Events received by source and outcome, ever: kept apart from the event log, "
            "so pruning it lowers nothing",
            labels=["source", "outcome"],
        )
        for source, outcome, count in self.log.totals():
            events.add_metric([source, outcome], count)
        yield events

        unfinished = self._unfinished()
        with self.engine.connect() as conn:
            tally = self.tally.refresh(conn, RUN_WORKFLOW, {r.workflow_id for r in unfinished})
            failed_steps = self.failed_steps.refresh(conn)
        # Waiting runs by what holds them back: the same diagnosis ``runs`` gives, over
        # every run queue and every limit; and since when the oldest of them waits.
        held = diagnose(self.client, self.settings, unfinished, RUN_WORKFLOW, RUN_QUEUE)
        waiting = Counter(w.kind for w in held.values())
        since = [r.created_at / 1000 for r in unfinished if r.workflow_id in held and r.created_at]
        oldest = min(since, default=None)

        runs = GaugeMetricFamily(
            "bauplan_trigger_runs", "Runs by trigger and status", labels=["trigger", "status"]
        )
        by_status = tally.by_status
        for r in unfinished:
            by_status[(trigger_of(r.workflow_id), status_word(r.status, r.attributes))] += 1
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
        age = GaugeMetricFamily(
            "bauplan_trigger_oldest_waiting_run_age_seconds",
            "Seconds since the longest-waiting run was enqueued (parked runs count as "
            "waiting); 0 when none waits",
            labels=[],
        )
        age.add_metric([], 0.0 if oldest is None else max(0.0, now - oldest))
        yield age

        last_success = GaugeMetricFamily(
            "bauplan_trigger_last_success_timestamp_seconds",
            "When each trigger's most recent successful run ended (unix seconds)",
            labels=["trigger"],
        )
        for trigger, at in sorted(tally.last_success.items()):
            last_success.add_metric([trigger], at)
        yield last_success

        histogram = HistogramMetricFamily(
            "bauplan_trigger_run_duration_seconds",
            "Finished runs' time from start to end",
            labels=["trigger"],
        )
        for trigger, (buckets, total) in tally.histogram.items():
            histogram.add_metric([trigger], buckets, total)
        yield histogram

        notify = CounterMetricFamily(
            "bauplan_trigger_notification_failures",
            "Notification steps that raised, by step name",
            labels=["step"],
        )
        for name, count in sorted(failed_steps.items()):
            notify.add_metric([name], count)
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
        requests = metrics_middleware.of(request.app)
        if requests is not None:  # this process's own HTTP figures
            registry.register(requests.requests)
            registry.register(requests.duration)
        app_state.bt_metrics = registry
    found: CollectorRegistry = app_state.bt_metrics
    return found


router = APIRouter(dependencies=[Depends(authorize)], responses=GUARD_RESPONSES)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    data: Any = generate_latest(_registry(request))
    return Response(data, media_type=CONTENT_TYPE_LATEST)
