"""Many branches, many events each: makespan against the ideal, and per-branch overlap.

Every run is a rehearsal job of ``--job-seconds``; the queue allows one run per
branch at a time and ``--cap`` runs in total. The ideal makespan is what a perfect
scheduler would reach with those numbers: the total work spread over the cap,
but never less than one branch's events back to back.

    python bench/branches.py                       # short default run
    python bench/branches.py --branches 200 --events 10 --cap 50 --job-seconds 1
    DBOS_SYSTEM_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/bench python bench/branches.py

On PostgreSQL, point it at an empty database (it is created if missing).

``--arrival backlog`` (the default) enqueues every run before the workers start
and times the queue draining that backlog from the moment DBOS launches: the
situation the ideal makespan describes. ``--arrival live`` starts the workers
first and enqueues from this same process while they run, so the enqueue rate
(issue 4's concern, and here sharing one interpreter with 50 running workflows)
is part of the makespan. The reference is measured the same way in both modes.

``--workers N`` runs the queue in N worker processes (this script re-started with
``--worker``, which launches exactly what ``serve --role worker`` launches) instead
of in this one: the way a deployment scales past one interpreter. The makespan is
then timed from the first run leaving the queue to the last one ending, for ours
and for the reference alike, so process start-up is not counted for either.

Prints one JSON object. The overlap figures come from the rehearsal ledger's
submit and finish times, not from DBOS. The reference is a bare DBOS workflow that
only sleeps the job time, on the same partitioned queue with the same limits: it
shows what the queue alone reaches on this machine.
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

from dbos import DBOS, DBOSClient, EnqueueOptions, WorkflowStatus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import match
from tests.workflows.flow_support import max_overlap
from trigger.core.event import manual_event
from trigger.core.settings import Settings, build_settings
from workflows import app
from workflows.bauplan.rehearsal import Ledger
from workflows.intake import Enqueuer
from workflows.queue import RUN_QUEUE
from workflows.runtime import ledger_path

UNFINISHED = ("ENQUEUED", "PENDING", "DELAYED")
REFERENCE_WORKFLOW = "bench.reference"


@DBOS.workflow(name=REFERENCE_WORKFLOW)
def reference_workflow(seconds: float) -> None:
    """The reference: a bare DBOS workflow on the same queue that only sleeps."""
    DBOS.sleep(seconds)


def _wait_final(client: DBOSClient, ids: list[str]) -> list[WorkflowStatus]:
    """Wait until every run ended; polls only for the unfinished ones, and rarely, so
    the bench itself takes little of the interpreter the workers run in."""
    while client.list_workflows(
        workflow_ids=ids, status=list(UNFINISHED), limit=1, load_input=False, load_output=False
    ):
        time.sleep(1.0)
    return client.list_workflows(workflow_ids=ids, load_input=False, load_output=False)


def reference(settings: Settings, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Raw DBOS on the same partitioned queue (same limits), no Bauplan steps."""
    client = DBOSClient(system_database_url=settings.database_url())
    workers = Workers(settings, args, folder, "ref")
    try:
        options: list[EnqueueOptions] = [
            {
                "workflow_name": REFERENCE_WORKFLOW,
                "queue_name": RUN_QUEUE,
                "workflow_id": f"ref:b{b}-{i}",
                "queue_partition_key": f"ref.b{b}",
                "priority": 100,
                "app_version": settings.service.application_version,
            }
            for i in range(args.events)
            for b in range(args.branches)
        ]
        arrived = workers.arrive([lambda o=o: client.enqueue(o, args.job_seconds) for o in options])
        rows = _wait_final(client, [o["workflow_id"] for o in options])
    finally:
        client.destroy()
        workers.stop()
    spans = [
        ((r.dequeued_at or 0) / 1000, (r.completed_at or r.updated_at or 0) / 1000) for r in rows
    ]
    return {
        "makespan_seconds": _makespan(rows, arrived, args),
        "enqueue_seconds": arrived["enqueue_seconds"],
        "max_concurrent_workflows": max_overlap(spans),
    }


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
    """One queue worker: what ``serve --role worker`` launches, plus the reference workflow."""
    data = json.loads(spec.read_text())
    data["config"]["service"]["name"] = name
    settings = build_settings(
        data["config"], config_path=Path(data["config_path"]), environ=data["environ"]
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    app.launch(settings, role="worker")
    try:
        stop.wait()
    finally:
        app.shutdown()


def ideal_makespan(branches: int, events: int, cap: int, job: float) -> float:
    """Waves of ``cap`` jobs; a branch's own events can never run side by side."""
    waves = math.ceil(branches * events / cap) if cap < branches else events
    return max(waves, events) * job


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    project = folder / "project"
    project.mkdir()
    (project / "bauplan_project.yml").write_text("project:\n  id: bench\n  name: bench\n")
    database = os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    config: dict[str, Any] = {
        "service": {"state_dir": str(folder / "state")},
        "bauplan": {
            "mode": "rehearse",
            "rehearse_seconds": args.job_seconds,
            "poll_interval": args.poll_interval,
            "poll_max_interval": args.poll_interval,
        },
        "queue": {
            "polling_interval": args.queue_polling,
            "per_branch_concurrency": 1,
            # A per-process cap is split across the processes: the total stays --cap.
            f"{args.cap_kind}_concurrency": args.cap
            if args.cap_kind == "global"
            else args.cap // args.workers,
        },
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
        json.dumps({"config": config, "config_path": str(config_path), "environ": environ})
    )
    settings = build_settings(config, config_path=config_path, environ=environ)
    app.prepare_database(settings)
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
        arrived = workers.arrive([lambda r=r: enqueuer.enqueue(r) for r in requests])
        rows = _wait_final(enqueuer.client, run_ids)
        makespan = _makespan(rows, arrived, args)
        spans = {
            (r.attributes or {}).get("job_id"): (
                (r.dequeued_at or 0) / 1000,
                (r.completed_at or r.updated_at or 0) / 1000,
                (r.created_at or 0) / 1000,
            )
            for r in rows
        }
        statuses = sorted({str(r.status) for r in rows})
    finally:
        enqueuer.close()
        workers.stop()
    raw = reference(settings, args, folder) if args.reference else None
    jobs = Ledger(ledger_path(settings)).jobs()
    by_ref: dict[str, list[tuple[float, float]]] = {}
    for job in jobs:
        by_ref.setdefault(job["ref"], []).append((job["started_ts"], job["finished_ts"]))
    before = [j["started_ts"] - spans[j["job_id"]][0] for j in jobs if j["job_id"] in spans]
    after = [spans[j["job_id"]][1] - j["finished_ts"] for j in jobs if j["job_id"] in spans]
    ideal = ideal_makespan(args.branches, args.events, args.cap, args.job_seconds)
    return {
        "benchmark": "branches",
        "database": "postgresql" if database else "sqlite",
        "branches": args.branches,
        "events_per_branch": args.events,
        "runs": len(requests),
        "per_branch_concurrency": 1,
        "global_cap": args.cap,
        "cap_kind": args.cap_kind,
        "worker_processes": args.workers,
        "job_seconds": args.job_seconds,
        "poll_interval": args.poll_interval,
        "queue_polling_interval": args.queue_polling,
        "arrival": args.arrival,
        "enqueue_seconds": arrived["enqueue_seconds"],
        "makespan_seconds": round(makespan, 3),
        "ideal_makespan_seconds": round(ideal, 3),
        "ratio_to_ideal": round(makespan / ideal, 3),
        "target_ratio": 1.2,
        "max_overlap_per_branch": max(max_overlap(v) for v in by_ref.values()) - 1,
        "max_concurrent_jobs": max_overlap([(j["started_ts"], j["finished_ts"]) for j in jobs]),
        "jobs_submitted": len(jobs),
        "mean_start_to_submit_seconds": round(sum(before) / max(1, len(before)), 3),
        "mean_job_end_to_run_end_seconds": round(sum(after) / max(1, len(after)), 3),
        "final_statuses": statuses,
        "reference_raw_dbos": raw,
        "reference_ratio_to_ideal": None
        if raw is None
        else round(raw["makespan_seconds"] / ideal, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--branches", type=int, default=20)
    parser.add_argument("--events", type=int, default=3)
    parser.add_argument("--cap", type=int, default=10)
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="skip the raw-DBOS reference run on the same queue",
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
