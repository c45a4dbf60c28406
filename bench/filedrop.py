"""File-drop benchmark: last write -> enqueue latency, and burst throughput vs raw DBOS.

    python bench/filedrop.py                      # SQLite, short run
    python bench/filedrop.py --files 5000 --pg    # the issue's 5,000-file burst on PostgreSQL

Latency: files written one at a time; for each, the time from its last write to
its workflow's ``created_at`` (the enqueue), minus the settle window.
Throughput: N files renamed into the watched dir at once; enqueues per second
from the first to the last enqueue, next to the rate of N plain
``DBOSClient.enqueue`` calls (same queue, same options) measured in this run
on the same database (and of the same calls on as many threads as the watcher uses for
a burst). Only enqueueing is measured: no worker runs the queue.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trigger.core.matching import RunRequest
from trigger.core.settings import Settings, build_settings
from trigger.sources.files.offer import OFFER_THREADS
from trigger.sources.files.watcher import Watcher
from workflows import app
from workflows.queue import RUN_QUEUE, RUN_WORKFLOW, Enqueuer

PG_ADMIN = os.environ.get(
    "BAUPLAN_TRIGGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _settings(tmp: Path, landing: Path, settle: float, db_url: str | None) -> Settings:
    project = tmp / "project"
    project.mkdir()
    (project / "bauplan_project.yml").write_text("project:\n  id: bench\n")
    config = {
        "service": {"state_dir": str(tmp / "state")},
        "bauplan": {"mode": "rehearse"},
        "triggers": [
            {
                "name": "landing",
                "project_dir": str(project),
                "branch": "landing_{file_stem}",
                "parameters": {"source_file": "{file_path}"},
                "files": {"dir": str(landing), "settle_seconds": settle},
            }
        ],
    }
    env = {"DBOS_SYSTEM_DATABASE_URL": db_url} if db_url else {}
    return build_settings(config, config_path=tmp / "bauplan-trigger.toml", environ=env)


def _created(enqueuer: Enqueuer, prefix: str) -> dict[str, float]:
    rows = enqueuer.client.list_workflows(
        workflow_id_prefix=prefix, load_input=True, load_output=False
    )
    out: dict[str, float] = {}
    for row in rows:
        request = row.input["args"][0] if row.input else {}
        rel = (request.get("file") or {}).get("rel")
        if rel:
            out[rel] = (row.created_at or 0) / 1000
    return out


async def _until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark timed out waiting for enqueues")
        await asyncio.sleep(0.1)


async def _bench(args: argparse.Namespace, tmp: Path, db_url: str | None) -> dict[str, Any]:
    landing = tmp / "landing"
    landing.mkdir()
    settings = _settings(tmp, landing, args.settle, db_url)
    # Creates the system database schema; no worker is kept running.
    await asyncio.to_thread(app.launch, settings)
    await asyncio.to_thread(app.shutdown)
    enqueuer = Enqueuer(settings)
    prefix = "run:landing:"
    threads = OFFER_THREADS if settings.is_postgres else 1
    # The reference is measured before and after the watcher runs (disk noise on a shared
    # machine moves it a lot), with as many threads as the watcher uses for a burst.
    raw_before = _raw_rate(enqueuer, settings, args.files, threads=threads)
    enqueued_at: dict[str, float] = {}

    def enqueue(request: RunRequest) -> Any:
        result = enqueuer.enqueue(request)
        enqueued_at[(request.file or {})["rel"]] = time.time()
        return result

    watcher = Watcher(settings, settings.trigger("landing"), enqueue)
    task = asyncio.create_task(watcher.run())
    try:
        while watcher.last_scan_at is None:
            await asyncio.sleep(0.05)

        # Latency: one file at a time, written in two parts.
        last_write: dict[str, float] = {}
        for n in range(args.latency_files):
            rel = f"lat{n:04d}.csv"
            with (landing / rel).open("w") as handle:
                handle.write("id,qty\n")
                handle.flush()
                handle.write(f"{n},1\n")
            last_write[rel] = time.time()
            await asyncio.sleep(args.gap)
        await _until(lambda: len(enqueued_at) >= args.latency_files, 120)
        lat_ms = sorted((enqueued_at[r] - last_write[r] - args.settle) * 1000 for r in last_write)

        # Burst: N files appear at once (renamed in from a staging folder).
        staging = tmp / "staging"
        staging.mkdir()
        names = [f"burst{n:05d}.csv" for n in range(args.files)]
        for name in names:
            (staging / name).write_text("id,qty\n1,1\n")
        renamed_at = time.time()
        for name in names:
            os.rename(staging / name, landing / name)
        total = args.latency_files + args.files
        await _until(lambda: len(enqueued_at) >= total, 600)
        if len(_created(enqueuer, prefix)) != total:
            raise AssertionError("the database does not hold one workflow per file")
        burst = sorted(v for k, v in enqueued_at.items() if k.startswith("burst"))
        burst_rate = (len(burst) - 1) / max(burst[-1] - burst[0], 1e-6)
        ready_to_last = burst[-1] - (renamed_at + args.settle)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    raw_after = _raw_rate(enqueuer, settings, args.files, threads=threads)
    raw_sequential = raw_after if threads == 1 else _raw_rate(enqueuer, settings, args.files, 1)
    raw_rate = (raw_before + raw_after) / 2
    enqueuer.close()

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 1)

    return {
        "database": "postgresql" if db_url else "sqlite",
        "settle_seconds": args.settle,
        "latency_files": args.latency_files,
        "latency_minus_settle_ms": {
            "p50": pct(lat_ms, 0.50),
            "p95": pct(lat_ms, 0.95),
            "max": round(lat_ms[-1], 1),
            "mean": round(statistics.fmean(lat_ms), 1),
        },
        "latency_target_p95_ms": 250,
        "burst_files": args.files,
        "burst_enqueues_per_s": round(burst_rate, 1),
        "burst_last_enqueue_after_ready_s": round(ready_to_last, 2),
        "watcher_enqueue_threads": threads,
        "raw_dbos_enqueues_per_s": round(raw_rate, 1),
        "raw_dbos_before_after": [round(raw_before, 1), round(raw_after, 1)],
        "raw_dbos_enqueues_per_s_one_thread": round(raw_sequential, 1),
        "burst_vs_raw": round(burst_rate / raw_rate, 2),
        "burst_target_ratio": 0.7,
        "watcher": watcher.status(),
    }


def _raw_rate(enqueuer: Enqueuer, settings: Settings, count: int, threads: int) -> float:
    tag = uuid.uuid4().hex[:8]

    def one(n: int) -> None:
        request = RunRequest(
            run_id=f"raw:{tag}:{n}",
            trigger="landing",
            event_id=f"raw-{n}",
            event_kind="files",
            project_dir="/x",
            branch_suffix=f"landing_raw{n}",
            base_ref="main",
            parameters={"source_file": f"/x/{n}"},
            priority=100,
        )
        enqueuer.client.enqueue(
            {
                "workflow_name": RUN_WORKFLOW,
                "queue_name": RUN_QUEUE,
                "workflow_id": request.run_id,
                "queue_partition_key": f"rehearsal.landing_raw{n}",
                "priority": 100,
                "app_version": settings.service.application_version,
            },
            request.as_dict(),
        )

    started = time.perf_counter()
    if threads == 1:
        for n in range(count):
            one(n)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1000, help="burst size (issue: 5000)")
    parser.add_argument("--latency-files", type=int, default=40)
    parser.add_argument("--settle", type=float, default=0.5, help="settle_seconds")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between latency files")
    parser.add_argument("--pg", action="store_true", help=f"use a fresh database on {PG_ADMIN}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    db_url = None
    name = None
    if args.pg:
        import psycopg

        name = f"bt_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(_bench(args, Path(tmp), db_url))
    finally:
        if name:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
