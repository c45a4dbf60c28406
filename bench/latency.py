"""Event -> submit latency of bauplan-trigger next to the raw DBOS floor.

For each database (SQLite, then PostgreSQL if reachable) one process launches
DBOS with our run queue and a bare partitioned queue with the same polling
interval. Events are sent one at a time, alternating between:

- floor: ``DBOSClient.enqueue`` of a bare workflow that only reads the clock;
  latency = workflow start - enqueue call;
- ours: a manual event matched, enqueued through ``Enqueuer`` and run by the
  real run workflow against zero-length rehearsal jobs; latency = the ledger's
  submitted_at - enqueue call; per-run overhead = run end - enqueue call.

Target (issue 3): our p95 <= 3 x the floor's p95. Prints JSON.

    .venv/bin/python bench/latency.py [--events 40] [--sqlite-only]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dbos import DBOS, DBOSClient

from tests.support import match
from trigger.core.event import manual_event
from trigger.core.settings import build_settings
from workflows import app
from workflows.bauplan.rehearsal import Ledger
from workflows.intake import Enqueuer
from workflows.records import show_run

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BARE_QUEUE = "bench-bare"


@DBOS.workflow(name="bench.bare")
def bare(sent_at: float) -> float:
    return time.time() - sent_at


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index] * 1000, 1)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": pct(values, 0.5),
        "p95_ms": pct(values, 0.95),
        "mean_ms": round(statistics.mean(values) * 1000, 1),
    }


def measure(url: str | None, events: int, workdir: Path) -> dict[str, Any]:
    project = workdir / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "bauplan_project.yml").write_text("project:\n  name: bench\n")
    env = {"DBOS_SYSTEM_DATABASE_URL": url} if url else {}
    settings = build_settings(
        {
            "service": {"state_dir": str(workdir / "state")},
            "bauplan": {"mode": "rehearse", "rehearse_seconds": 0, "poll_interval": 0.05},
            "queue": {"polling_interval": 0.1},
            "triggers": [
                {
                    "name": "bench",
                    "project_dir": str(project),
                    "branch": "bench_{lane}",
                    "inputs": ["lane"],
                }
            ],
        },
        environ=env,
    )
    app.launch(settings)
    DBOS.register_queue(BARE_QUEUE, partition_concurrency=1, polling_interval_sec=0.1)
    enqueuer = Enqueuer(settings)
    client: DBOSClient = enqueuer.client
    ledger = Ledger(settings.state_path / "rehearsal.sqlite")
    floor: list[float] = []
    ours_submit: list[float] = []
    ours_total: list[float] = []
    try:
        for i in range(events + 2):  # the first two warm up the queue threads
            sent = time.time()
            handle = client.enqueue(
                {
                    "workflow_name": "bench.bare",
                    "queue_name": BARE_QUEUE,
                    "workflow_id": f"bare-{i}",
                    "queue_partition_key": f"lane{i % 4}",
                    "priority": 100,
                    "app_version": settings.service.application_version,
                },
                sent,
            )
            started = handle.get_result()
            if i >= 2:
                floor.append(float(started))

            event = manual_event("bench", {"lane": f"l{i % 4}"}, event_id=f"ev-{i}")
            [request] = match(event, settings)
            sent = time.time()
            enqueuer.enqueue(request)
            deadline = time.monotonic() + 60
            while True:
                run = show_run(client, request.run_id)
                if run["status"] in ("succeeded", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run {request.run_id} did not finish")
                time.sleep(0.005)
            ended = time.time()
            job = next(j for j in ledger.jobs() if j["job_id"] == run["job_id"])
            if i >= 2:
                ours_submit.append(job["started_ts"] - sent)
                ours_total.append(ended - sent)
    finally:
        enqueuer.close()
        app.shutdown()
    floor_s, ours_s = summary(floor), summary(ours_submit)
    return {
        "database": "postgresql" if url else "sqlite",
        "events": events,
        "floor_event_to_start": floor_s,
        "ours_event_to_submit": ours_s,
        "ours_event_to_run_end": summary(ours_total),
        "per_run_overhead_ms": round(
            (statistics.median(ours_total) - statistics.median(floor)) * 1000, 1
        ),
        "p95_ratio_vs_floor": round(ours_s["p95_ms"] / max(floor_s["p95_ms"], 0.1), 2),
        "target_p95_ratio": 3.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(measure(None, args.events, Path(tmp) / "sqlite"))
    if not args.sqlite_only:
        import psycopg

        name = f"bt_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            with tempfile.TemporaryDirectory() as tmp:
                url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
                results.append(measure(url, args.events, Path(tmp) / "pg"))
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
