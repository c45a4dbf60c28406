"""Many branches, many events each: makespan against the ideal and two bare-DBOS
references, with every flow-control limit checked from the rehearsal ledger.

Every run is a rehearsal job of ``--job-seconds``; the queue allows one run per
branch at a time, ``--rate RUNS/PERIOD`` run starts per branch in any PERIOD
seconds ([queue] per_branch_limit) and ``--cap`` runs in total ([queue]
global_concurrency). The ideal makespan is what a perfect scheduler would reach
with those numbers: the total work spread over the cap, but never less than one
branch's events back to back under the rate limit.

    python bench/branches.py                       # short default run
    DBOS_SYSTEM_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench \
        python bench/branches.py --branches 200 --events 10 --cap 50 --workers 2

On PostgreSQL, point it at an empty database (it is created if missing).

The default rate, 2 runs per 6 s, binds sometimes but not always. With B branches
sharing a cap C, a branch gets a slot every B/C job lengths on average: every 4 s
for 200 branches and a cap of 50, so two runs of a branch are about 8 s apart and
the limit (two per 6 s) is idle on average; it binds whenever a branch's runs come
closer than average (jitter, the first waves, a branch that gets free slots twice in
a row), and a branch on its own (1 s jobs back to back) would be held to 0, 1, 6,
7, 12, ... s. It leaves the ideal alone at that size (a branch's 10 events need 26 s
under the limit, the cap 40 s), so a run slower than the ideal is the scheduler's
doing. ``--rate 2/3`` hardly ever binds at 200/50; ``--rate none`` turns it off.

Three things are measured in one invocation, one after another, each on its own
queues in the same database and with fresh worker processes:

- ours: the product's run workflow, enqueued as an ingress does, the config above.
- R1 "plain partitioned": bare DBOS in the shape the flow-control rewrite builds.
  A parent workflow on a partitioned queue with ``partition_concurrency=1`` and
  nothing else (DBOS's batched dequeue); it waits out the rate limit with durable
  sleeps, computed from the start times of the branch's previous jobs (exact,
  since a branch's runs are serialised), then runs the job, a child workflow that
  only sleeps the job time, on an unpartitioned queue with ``global_concurrency``
  = the cap, and waits for it.
- R2 "single queue": the old way, one partitioned queue with
  ``partition_concurrency=1``, ``partition_limiter`` = the rate and
  ``global_concurrency`` = the cap (DBOS's per-partition dequeue), on which a
  bare workflow only sleeps the job time.

``--arrival backlog`` (the default) enqueues every run before the workers start
and times the queue draining that backlog from the moment DBOS launches: the
situation the ideal makespan describes. ``--arrival live`` starts the workers
first and enqueues from this same process while they run, so the enqueue rate
(issue 4's concern, and here sharing one interpreter with 50 running workflows)
is part of the makespan. The references are measured the same way in both modes.

``--workers N`` runs the queue in N worker processes (this script re-started with
``--worker``, which launches exactly what ``serve --role worker`` launches, then
registers the references' queues) instead of in this one: the way a deployment
scales past one interpreter. The makespan is then timed from the first run leaving
the queue to the last one ending, for ours and for the references alike, so
process start-up is not counted for any.

Prints one JSON object. The checks (``checks``) come from the rehearsal ledger's
submit and finish times, not from DBOS: the most jobs running at once on one branch
(must be 1), the most submits on one branch in any rate period (must be at most
RUNS; ``tightest_window_seconds`` is the shortest time a branch took for RUNS + 1
submits, at least PERIOD when the limit holds), the most jobs running at once (at
most the cap), and exactly once: every run submitted one job, the ledger has one
job per run (matched by branch and parameters) and each run's recorded job id is
in it. The references' figures of the same name come from the start and end times
their sleeping job workflows record (this process's clock, like the ledger's), not
from DBOS's dequeue stamp: that is the database's transaction start, earlier than
the claim by up to the claim's own duration, so read as job starts it can show a
cap "exceeded" that the jobs never exceeded (``max_concurrent_by_dbos_stamps``).

``errors`` counts the distinct errors of runs that ended ERROR, and
``database_connections`` the most connections to the bench's PostgreSQL database
at once, and to the whole server (other databases' users count against the same
limit), against the server's ``max_connections``, sampled four times a second: a
server out of connections fails runs, which the exactly-once check then shows.

On SQLite, DBOS's timestamps are whole seconds; the makespans are then coarse.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSClient, EnqueueOptions, Queue, SetWorkflowID, WorkflowStatus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import match
from tests.workflows.flow_support import (
    exactly_once,
    job_key,
    max_overlap,
    max_running,
    max_running_per_ref,
    rate_check,
)
from trigger.core.event import manual_event
from trigger.core.settings import Settings, build_settings
from workflows import app
from workflows.bauplan.rehearsal import Ledger
from workflows.intake import Enqueuer
from workflows.runtime import ledger_path

UNFINISHED = ("ENQUEUED", "PENDING", "DELAYED")
# R1: a parent per run on a plain partitioned queue, its job a child on a capped queue.
R1_QUEUE = "bench-r1-runs"
R1_JOB_QUEUE = "bench-r1-jobs"
R1_WORKFLOW = "bench.r1.run"
R1_JOB_WORKFLOW = "bench.r1.job"
# R2: one partitioned queue with the rate limit and the cap on it.
R2_QUEUE = "bench-r2-runs"
R2_WORKFLOW = "bench.reference"


def _job(seconds: float) -> list[float]:
    """A reference's job: the sleep, and when it began and ended by this process's clock
    (the references' stand-in for a ledger's submit and finish times; DBOS's dequeue
    stamp is the database's transaction start, which can precede the claim)."""
    began = time.time()
    DBOS.sleep(seconds)
    return [began, time.time()]


@DBOS.workflow(name=R2_WORKFLOW)
def reference_workflow(seconds: float) -> list[float]:
    """R2: a bare DBOS workflow that only sleeps; its queue does all the flow control."""
    return _job(seconds)


@DBOS.workflow(name=R1_JOB_WORKFLOW)
def r1_job(seconds: float) -> list[float]:
    """R1's job: only the sleep, on the capped queue."""
    return _job(seconds)


@DBOS.step(name="bench.r1.gate")
def r1_gate(branch: str, runs: int, period: float) -> float:
    """Seconds until the branch may start another job: when the ``runs``-th last job of
    the branch began, plus ``period``. The branch's earlier jobs have all ended (its
    runs are serialised), so their start times are final."""
    rows = DBOS.list_workflows(
        workflow_id_prefix=f"r1job:{branch}:",
        sort_desc=True,
        limit=runs,
        load_input=False,
    )
    if len(rows) < runs:
        return 0.0
    oldest = min(r.output[0] for r in rows)
    return max(0.0, oldest + period - time.time())


@DBOS.workflow(name=R1_WORKFLOW)
def r1_run(branch: str, seconds: float, runs: int | None, period: float) -> None:
    """R1's run: wait out the branch's rate limit durably, then run the job and wait."""
    if runs:
        while (wait := r1_gate(branch, runs, period)) > 0:
            DBOS.sleep(wait)
    queue = DBOS.retrieve_queue(R1_JOB_QUEUE)
    assert queue is not None
    number = (DBOS.workflow_id or "").rsplit(":", 1)[1]
    with SetWorkflowID(f"r1job:{branch}:{number}"):
        handle = queue.enqueue(r1_job, seconds)
    handle.get_result()


def parse_rate(text: str) -> tuple[int, float] | None:
    if text.lower() in ("none", "off", "0"):
        return None
    runs, _, period = text.partition("/")
    try:
        parsed = int(runs), float(period)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RUNS/PERIOD or none, got {text!r}") from None
    if parsed[0] < 1 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError(f"expected RUNS >= 1 and PERIOD > 0, got {text!r}")
    return parsed


def _cap_options(bench: dict[str, Any]) -> dict[str, Any]:
    """The cap as DBOS queue options: global, or split over the worker processes."""
    if bench["cap_kind"] == "global":
        return {"global_concurrency": bench["cap"]}
    return {"worker_concurrency": bench["cap"] // bench["workers"]}


def register_reference_queues(bench: dict[str, Any]) -> list[Queue]:
    """The references' queues (after ``DBOS.launch``, in every process that runs them)."""
    polling = bench["queue_polling"]
    rate = bench["rate"]
    return [
        DBOS.register_queue(R1_QUEUE, partition_concurrency=1, polling_interval_sec=polling),
        DBOS.register_queue(R1_JOB_QUEUE, polling_interval_sec=polling, **_cap_options(bench)),
        DBOS.register_queue(
            R2_QUEUE,
            partition_concurrency=1,
            partition_limiter=None if rate is None else {"limit": rate[0], "period": rate[1]},
            polling_interval_sec=polling,
            **_cap_options(bench),
        ),
    ]


def bench_spec(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "cap": args.cap,
        "cap_kind": args.cap_kind,
        "workers": args.workers,
        "rate": args.rate,
        "queue_polling": args.queue_polling,
    }


def _wait_final(client: DBOSClient, ids: list[str]) -> list[WorkflowStatus]:
    """Wait until every run ended; polls only for the unfinished ones, and rarely, so
    the bench itself takes little of the interpreter the workers run in."""
    while client.list_workflows(
        workflow_ids=ids, status=list(UNFINISHED), limit=1, load_input=False, load_output=False
    ):
        time.sleep(1.0)
    return client.list_workflows(workflow_ids=ids, load_input=False, load_output=False)


def _errors(client: DBOSClient, ids: list[str]) -> dict[str, int]:
    """The distinct errors of the runs that failed, and how many failed with each."""
    out: dict[str, int] = {}
    for row in client.list_workflows(workflow_ids=ids, status="ERROR", load_input=False):
        text = str(row.error)[:300]
        out[text] = out.get(text, 0) + 1
    return out


class PeakConnections:
    """The most server connections to the bench's PostgreSQL database at once (every
    process: workers, this one), sampled four times a second; None on SQLite."""

    def __init__(self, url: str) -> None:
        self.url = url if url.startswith("postgresql") else None
        self.peak = 0
        self.server_peak = 0
        self.limit: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakConnections:
        if self.url:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _sample(self) -> None:
        import psycopg

        plain = self.url.replace("postgresql+psycopg://", "postgresql://")  # type: ignore[union-attr]
        with psycopg.connect(plain, autocommit=True) as conn:
            self.limit = int(conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
            while not self._stop.wait(0.25):
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE datname = current_database()), count(*) "
                    "FROM pg_stat_activity"
                ).fetchone()
                if row:
                    self.peak = max(self.peak, int(row[0]))
                    self.server_peak = max(self.server_peak, int(row[1]))

    def figures(self) -> dict[str, Any] | None:
        if not self.url:
            return None
        return {
            "peak": self.peak,
            "server_peak_all_databases": self.server_peak,
            "server_max_connections": self.limit,
        }


def _span(row: WorkflowStatus, ref: str) -> dict[str, Any]:
    """A reference job as a ledger-like record: the times its workflow recorded."""
    began, ended = row.output
    return {"ref": ref, "started_ts": began, "finished_ts": ended}


def reference(
    kind: str, settings: Settings, args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    """R1 or R2 (see the module's docstring): bare DBOS, no Bauplan steps."""
    client = DBOSClient(system_database_url=settings.database_url())
    workers = Workers(settings, args, folder, kind)
    runs, period = args.rate or (None, 0.0)
    try:
        options: list[tuple[EnqueueOptions, tuple[Any, ...]]] = [
            (
                {
                    "workflow_name": R1_WORKFLOW if kind == "r1" else R2_WORKFLOW,
                    "queue_name": R1_QUEUE if kind == "r1" else R2_QUEUE,
                    "workflow_id": f"{kind}:b{b}:{i}",
                    "queue_partition_key": f"{kind}.b{b}",
                    "priority": 100,
                    "app_version": settings.service.application_version,
                },
                (f"b{b}", args.job_seconds, runs, period) if kind == "r1" else (args.job_seconds,),
            )
            for i in range(args.events)
            for b in range(args.branches)
        ]
        ids = [o["workflow_id"] for o, _ in options]
        with PeakConnections(settings.database_url()) as connections:
            arrived = workers.arrive([lambda o=o, a=a: client.enqueue(o, *a) for o, a in options])
            rows = _wait_final(client, ids)
        errors = _errors(client, ids)
        if kind == "r1":
            children = client.list_workflows(workflow_id_prefix="r1job:", load_input=False)
            jobs = [_span(r, r.workflow_id.split(":")[1]) for r in children]
        else:
            children = client.list_workflows(workflow_id_prefix="r2:", load_input=False)
            jobs = [_span(r, str(r.queue_partition_key)) for r in children]
        stamped = max_overlap(
            [((r.dequeued_at or 0) / 1000, (r.completed_at or 0) / 1000) for r in children]
        )
    finally:
        client.destroy()
        workers.stop()
    return {
        "makespan_seconds": _makespan(rows, arrived, args),
        "enqueue_seconds": arrived["enqueue_seconds"],
        "final_statuses": sorted({str(r.status) for r in rows}),
        "errors": errors,
        "database_connections": connections.figures(),
        "checks": _checks(jobs, args),
        # The same count from DBOS's dequeue and completion stamps (see the docstring).
        "max_concurrent_by_dbos_stamps": stamped,
    }


def _checks(jobs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The flow-control checks on job spans (see the module's docstring)."""
    out: dict[str, Any] = {
        "max_running_per_branch": max_running_per_ref(jobs),
        "max_overlap_per_branch": max_running_per_ref(jobs) - 1,
        "max_concurrent_jobs": max_running(jobs),
        "cap_held": max_running(jobs) <= args.cap,
    }
    if args.rate is not None:
        out["rate"] = rate_check(jobs, *args.rate)
    return out


def _makespan(
    rows: list[WorkflowStatus], arrived: dict[str, float], args: argparse.Namespace
) -> float:
    """From the start (see the module's docstring) to the last run's end."""
    ended = max((r.completed_at or r.updated_at or 0) / 1000 for r in rows)
    started = arrived["started"]
    if args.workers > 1:
        started = min((r.dequeued_at or 0) / 1000 for r in rows if r.dequeued_at)
    return round(ended - started, 3)


class Workers:
    """The processes that run the queue: this one (``--workers 1``) or N children."""

    def __init__(
        self, settings: Settings, args: argparse.Namespace, folder: Path, tag: str
    ) -> None:
        self.settings = settings
        self.args = args
        self.folder = folder
        self.tag = tag
        self.children: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []
        self.launched = False

    def start(self) -> None:
        if self.args.workers == 1:
            app.launch(self.settings)
            register_reference_queues(bench_spec(self.args))
            self.launched = True
            return
        spec = self.folder / "worker-settings.json"
        for n in range(self.args.workers):
            log = (self.folder / f"worker-{self.tag}{n}.log").open("wb")
            self.logs.append(log)
            command = [sys.executable, __file__, "--worker", str(spec)]
            self.children.append(
                subprocess.Popen(
                    [*command, "--worker-name", f"{self.tag}{n}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def arrive(self, enqueues: list[Any]) -> dict[str, float]:
        """Enqueue everything and start the workers in the order ``--arrival`` asks for;
        returns when the makespan starts and how long the enqueues took."""
        if self.args.arrival == "backlog":
            app.prepare_database(self.settings)
            before = time.time()
            for enqueue in enqueues:
                enqueue()
            took = time.time() - before
            started = time.time()
            self.start()
            return {"started": started, "enqueue_seconds": round(took, 3)}
        self.start()
        # Let the queue threads start (the first dequeue waits ~1 s whatever the polling).
        time.sleep(1.5 if self.args.workers == 1 else 5.0)
        started = time.time()
        for enqueue in enqueues:
            enqueue()
        return {"started": started, "enqueue_seconds": round(time.time() - started, 3)}

    def stop(self) -> None:
        if self.launched:
            app.shutdown()
            self.launched = False
        for child in self.children:
            child.terminate()
        for child in self.children:
            if child.wait(timeout=60) not in (0, -signal.SIGTERM):
                print(f"worker exited {child.returncode}; see {self.folder}", file=sys.stderr)
        for log in self.logs:
            log.close()
        self.children.clear()
        self.logs.clear()


def worker_main(spec: Path, name: str) -> None:
    """One queue worker: what ``serve --role worker`` launches, plus the references'
    queues (their workflows are registered by importing this file)."""
    data = json.loads(spec.read_text())
    data["config"]["service"]["name"] = name
    settings = build_settings(
        data["config"], config_path=Path(data["config_path"]), environ=data["environ"]
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    app.launch(settings, role="worker")
    register_reference_queues(data["bench"])
    try:
        stop.wait()
    finally:
        app.shutdown()


def branch_minimum(events: int, job: float, rate: tuple[int, float] | None) -> float:
    """One branch's events back to back, each start at least ``period`` after the
    ``runs``-th start before it."""
    starts: list[float] = []
    for k in range(events):
        at = starts[-1] + job if starts else 0.0
        if rate is not None and k >= rate[0]:
            at = max(at, starts[k - rate[0]] + rate[1])
        starts.append(at)
    return starts[-1] + job if starts else 0.0


def ideal_makespan(
    branches: int, events: int, cap: int, job: float, rate: tuple[int, float] | None = None
) -> float:
    """Waves of ``cap`` jobs; a branch's own events can never run side by side, nor
    start faster than the rate limit allows."""
    waves = math.ceil(branches * events / cap) if cap < branches else events
    return max(waves * job, branch_minimum(events, job, rate))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def ours(settings: Settings, args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], int]:
    """The product's runs; its figures and checks, and how many runs there were."""
    enqueuer = Enqueuer(settings)
    workers = Workers(settings, args, folder, "run")
    try:
        requests = [
            match(
                manual_event("bench", {"branch_id": f"b{b}", "n": str(i)}, event_id=f"b{b}-{i}"),
                settings,
            )[0]
            for i in range(args.events)
            for b in range(args.branches)
        ]
        run_ids = [request.run_id for request in requests]
        enqueued: dict[str, str] = {}

        def enqueue(request: Any) -> None:
            enqueued[request.run_id] = enqueuer.enqueue(request).branch

        with PeakConnections(settings.database_url()) as connections:
            arrived = workers.arrive([lambda r=r: enqueue(r) for r in requests])
            rows = _wait_final(enqueuer.client, run_ids)
        errors = _errors(enqueuer.client, run_ids)
        makespan = _makespan(rows, arrived, args)
        spans = {
            (r.attributes or {}).get("job_id"): (
                (r.dequeued_at or 0) / 1000,
                (r.completed_at or r.updated_at or 0) / 1000,
            )
            for r in rows
        }
        statuses = sorted({str(r.status) for r in rows})
    finally:
        enqueuer.close()
        workers.stop()
    jobs = Ledger(ledger_path(settings)).jobs()
    expected = {r.run_id: job_key(enqueued.get(r.run_id), dict(r.parameters)) for r in requests}
    once = exactly_once(jobs, expected)
    in_ledger = {j["job_id"] for j in jobs}
    recorded = [job_id for job_id in spans if job_id is not None]
    once["runs_with_recorded_job_in_ledger"] = sum(1 for j in recorded if j in in_ledger)
    once["held"] = once["held"] and len(set(recorded)) == len(requests) == len(
        in_ledger & set(recorded)
    )
    before = [j["started_ts"] - spans[j["job_id"]][0] for j in jobs if j["job_id"] in spans]
    after = [spans[j["job_id"]][1] - j["finished_ts"] for j in jobs if j["job_id"] in spans]
    return {
        "enqueue_seconds": arrived["enqueue_seconds"],
        "makespan_seconds": round(makespan, 3),
        "final_statuses": statuses,
        "errors": errors,
        "database_connections": connections.figures(),
        "checks": {**_checks(jobs, args), "exactly_once": once},
        "jobs_submitted": len(jobs),
        "mean_start_to_submit_seconds": round(sum(before) / max(1, len(before)), 3),
        "mean_job_end_to_run_end_seconds": round(sum(after) / max(1, len(after)), 3),
    }, len(requests)


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    project = folder / "project"
    project.mkdir()
    (project / "bauplan_project.yml").write_text("project:\n  id: bench\n  name: bench\n")
    database = os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    queue: dict[str, Any] = {
        "polling_interval": args.queue_polling,
        "per_branch_concurrency": 1,
        # A per-process cap is split across the processes: the total stays --cap.
        f"{args.cap_kind}_concurrency": args.cap
        if args.cap_kind == "global"
        else args.cap // args.workers,
    }
    if args.rate is not None:
        queue["per_branch_limit"] = {"runs": args.rate[0], "period_seconds": args.rate[1]}
    config: dict[str, Any] = {
        "service": {"state_dir": str(folder / "state")},
        "bauplan": {
            "mode": "rehearse",
            "rehearse_seconds": args.job_seconds,
            "poll_interval": args.poll_interval,
            "poll_max_interval": args.poll_interval,
        },
        "queue": queue,
        "triggers": [
            {
                "name": "bench",
                "project_dir": str(project),
                "branch": "bench_{branch_id}",
                "inputs": ["branch_id", "n"],
                "parameters": {"n": "{n}"},
            }
        ],
    }
    environ = {"DBOS_SYSTEM_DATABASE_URL": database} if database else {}
    config_path = folder / "bauplan-trigger.toml"
    (folder / "worker-settings.json").write_text(
        json.dumps(
            {
                "config": config,
                "config_path": str(config_path),
                "environ": environ,
                "bench": bench_spec(args),
            }
        )
    )
    settings = build_settings(config, config_path=config_path, environ=environ)
    app.prepare_database(settings)
    started = time.monotonic()
    figures, count = ours(settings, args, folder)
    r1 = reference("r1", settings, args, folder) if args.reference else None
    r2 = reference("r2", settings, args, folder) if args.reference else None
    ideal = ideal_makespan(args.branches, args.events, args.cap, args.job_seconds, args.rate)
    makespan = figures["makespan_seconds"]
    checks = figures["checks"]
    return {
        "benchmark": "branches",
        "database": "postgresql" if database else "sqlite",
        "branches": args.branches,
        "events_per_branch": args.events,
        "runs": count,
        "per_branch_concurrency": 1,
        "per_branch_limit": None
        if args.rate is None
        else {"runs": args.rate[0], "period_seconds": args.rate[1]},
        "global_cap": args.cap,
        "cap_kind": args.cap_kind,
        "worker_processes": args.workers,
        "job_seconds": args.job_seconds,
        "poll_interval": args.poll_interval,
        "queue_polling_interval": args.queue_polling,
        "arrival": args.arrival,
        "ideal_makespan_seconds": round(ideal, 3),
        "ours": figures,
        "reference_r1_plain_partitioned": r1,
        "reference_r2_single_queue": r2,
        "ratio_to_ideal": _ratio(makespan, ideal),
        "ratio_to_r1": _ratio(makespan, r1 and r1["makespan_seconds"]),
        "ratio_to_r2": _ratio(makespan, r2 and r2["makespan_seconds"]),
        "r1_ratio_to_ideal": _ratio(r1 and r1["makespan_seconds"], ideal),
        "r2_ratio_to_ideal": _ratio(r2 and r2["makespan_seconds"], ideal),
        "target": {
            "ratio_to_ideal_max": 1.3,
            "ratio_to_r1_max": 1.1,
            "ratio_to_ideal_met": makespan / ideal <= 1.3,
            "ratio_to_r1_met": None if r1 is None else makespan / r1["makespan_seconds"] <= 1.1,
            "overlap_zero": checks["max_overlap_per_branch"] == 0,
            "rate_held": None if args.rate is None else checks["rate"]["held"],
            "cap_held": checks["cap_held"],
            "exactly_once": checks["exactly_once"]["held"],
        },
        "bench_wall_seconds": round(time.monotonic() - started, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--branches", type=int, default=20)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--cap", type=int, default=10)
    parser.add_argument(
        "--rate",
        type=parse_rate,
        default=(2, 6.0),
        metavar="RUNS/PERIOD",
        help="per-branch limit: RUNS run starts per branch in any PERIOD seconds, for ours "
        "([queue] per_branch_limit) and the references; 'none' for no limit (default 2/6)",
    )
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="skip the bare-DBOS references R1 and R2",
    )
    parser.add_argument(
        "--cap-kind",
        choices=["global", "worker"],
        default="global",
        help="enforce --cap as [queue] global_concurrency (across processes) or as "
        "worker_concurrency, --cap divided by --workers in each process (DBOS then dequeues "
        "many branches in one transaction)",
    )
    parser.add_argument(
        "--arrival",
        choices=["backlog", "live"],
        default="backlog",
        help="backlog: enqueue everything, then start the workers and time the drain; "
        "live: start the workers, then enqueue from this process while they run",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes running the queue (1: this process)",
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-name", help=argparse.SUPPRESS)
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.1)
    parser.add_argument("--queue-polling", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.worker:
        worker_main(args.worker, args.worker_name)
        return
    with tempfile.TemporaryDirectory(prefix="bench-branches-") as folder:
        print(json.dumps(run(args, Path(folder)), indent=2))


if __name__ == "__main__":
    main()
