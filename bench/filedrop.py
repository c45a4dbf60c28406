"""File-drop ingest on PostgreSQL: a burst of files renamed into a watched folder,
enqueued by a real ``serve`` process, against the raw DBOS enqueue rate.

    .venv/bin/python bench/filedrop.py --files 5000 --pg     # issue 14's burst
    .venv/bin/python bench/filedrop.py --quick --pg          # 1,000 files

The product runs as a subprocess, ``bauplan-trigger serve --role ingress``, on a
fresh PostgreSQL database this script creates and drops, with one trigger whose
``[triggers.files]`` watches a folder (one branch per file, so nothing is held back
per branch). The ``ingress`` role runs the folder watchers and the HTTP ingress but
never launches DBOS's executor, so no run starts: what is measured is enqueueing
alone, whatever the watcher's internals are.

- burst: ``--files`` files written to a staging folder on the same file system,
  then all renamed into the watched folder at once. The rate is taken from the
  runs' own ``created_at`` in ``dbos.workflow_status``: (N - 1) / (last - first).
  Also how long after the files became ready (renamed + ``settle_seconds``) the
  first and the last were enqueued.
- reference: ``DBOSClient.enqueue`` of the same number of runs from 8 threads
  (bench/harness.py says which options), in this process, on the same database,
  before and after the burst (a shared machine's load moves); the ratio is against
  their mean. The one-thread rate is shown too.
- latency (``--latency-files``, 0 to skip): files written one at a time in two
  writes; each file's enqueue ``created_at`` minus its last write minus the settle
  window.

CPU during the burst is taken per process from ``/proc``: ``serve``, this process,
PostgreSQL's backends for the database, all PostgreSQL processes, everything else.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    PG_ADMIN,
    CpuMeter,
    RawClient,
    Serve,
    free_port,
    fresh_database,
    quantiles_ms,
    scratch,
    serve_env,
    wait_quiet,
    write_config,
)

RAW_THREADS = 8
PREFIX = "run:landing:"


def _runs(url: str) -> dict[str, float]:
    """Every file run's workflow id and ``created_at`` (epoch seconds)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT workflow_uuid, created_at FROM dbos.workflow_status "
            "WHERE workflow_uuid LIKE %s",
            (PREFIX + "%",),
        ).fetchall()
    return {wid: created / 1000 for wid, created in rows}


def _wait_for_runs(url: str, count: int, timeout: float, proc: Serve) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(url)
        if len(runs) >= count:
            return runs
        if proc.proc is not None and proc.proc.poll() is not None:
            raise SystemExit(f"serve exited with {len(runs)} of {count} runs; see {proc.log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(runs)} of {count} runs after {timeout}s; see {proc.log}")
        time.sleep(0.2)


def _watching(proc: Serve, timeout: float = 60) -> None:
    """Until the watcher has scanned its folder once (as ``/healthz`` reports it), so
    the files that follow are seen as new events, not as the first scan."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watchers = proc.health().get("checks", {}).get("files", {}).get("watchers")
        if watchers is None:  # /healthz no longer says: give the first scan a moment
            time.sleep(2)
            return
        if watchers and all(w.get("last_scan_at") for w in watchers):
            return
        time.sleep(0.1)
    raise SystemExit(f"the watcher never finished its first scan; see {proc.log}")


def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    work = scratch("bt-filedrop-")
    landing, staging, project = work / "landing", work / "staging", work / "project"
    for folder in (landing, staging, project):
        folder.mkdir()
    (project / "bauplan_project.yml").write_text("project:\n  id: bench\n  name: load\n")
    config = write_config(
        work / "bauplan-trigger.toml",
        {
            "service": {"state_dir": str(work / "state")},
            "bauplan": {"mode": "rehearse"},
        },
        [
            (
                {
                    "name": "landing",
                    "project_dir": str(project),
                    "branch": "landing_{file_stem}",
                    "parameters": {"source_file": "{file_path}"},
                },
                {"files": {"dir": str(landing), "settle_seconds": args.settle}},
            )
        ],
    )
    port = free_port()
    env = serve_env(url, BAUPLAN_TRIGGER_SERVICE__LISTEN=f"127.0.0.1:{port}")
    proc = Serve(config, "ingress", f"http://127.0.0.1:{port}", work / "serve.log", env)
    proc.start()
    try:
        proc.wait_ready()
        _watching(proc)
        raw = RawClient(url)
        idle = wait_quiet(args.wait_quiet) if args.wait_quiet else None
        raw_before = raw.rate(args.files, RAW_THREADS)

        latency_ms: list[float] = []
        if args.latency_files:
            last_write: dict[str, float] = {}
            for n in range(args.latency_files):
                path = landing / f"lat{n:04d}.csv"
                with path.open("w") as handle:
                    handle.write("id,qty\n")
                    handle.flush()
                    handle.write(f"{n},1\n")
                last_write[str(path)] = time.time()
                time.sleep(args.gap)
            runs = _wait_for_runs(url, args.latency_files, 120, proc)
            latency_ms = _latencies(raw, runs, last_write, args.settle)
        before_burst = set(_runs(url))

        names = [f"burst{n:05d}.csv" for n in range(args.files)]
        for name in names:
            (staging / name).write_text("id,qty\n1,1\n")
        database = url.rsplit("/", 1)[1]
        with CpuMeter(database, {"serve": proc.pid, "bench_process": os.getpid()}, args.pg) as cpu:
            renamed_at = time.time()
            for name in names:
                os.rename(staging / name, landing / name)
            renamed_by = time.time()
            runs = _wait_for_runs(url, len(before_burst) + args.files, 900, proc)
        burst = sorted(t for wid, t in runs.items() if wid not in before_burst)
        raw_after = raw.rate(args.files, RAW_THREADS)
        raw_one = raw.rate(min(args.files, 2000), 1)
        raw.close()
        health = proc.health().get("checks", {}).get("files")
    finally:
        proc.stop()
    shutil.rmtree(work)  # kept, with the serve log, when the run fails

    rate = (len(burst) - 1) / max(burst[-1] - burst[0], 1e-6)
    reference = (raw_before + raw_after) / 2
    lat = quantiles_ms([ms / 1000 for ms in latency_ms]) if latency_ms else None
    return {
        "database": "postgresql",
        "role": "ingress",
        "burst_files": args.files,
        "burst_runs_enqueued": len(burst),
        "burst_enqueues_per_s": round(rate, 1),
        "burst_first_to_last_s": round(burst[-1] - burst[0], 2),
        "burst_renames_took_s": round(renamed_by - renamed_at, 2),
        "burst_first_enqueue_after_first_ready_s": round(burst[0] - renamed_at - args.settle, 2),
        "burst_last_enqueue_after_last_ready_s": round(burst[-1] - renamed_by - args.settle, 2),
        "raw_8_thread_enqueue_per_s": round(reference, 1),
        "raw_before_after_per_s": [round(raw_before, 1), round(raw_after, 1)],
        "raw_1_thread_enqueue_per_s": round(raw_one, 1),
        "ratio_to_raw": round(rate / reference, 3),
        "target_ratio": 0.8,
        "target_met": rate / reference >= 0.8,
        "settle_seconds": args.settle,
        "latency_files": args.latency_files,
        "latency_minus_settle": lat,
        "latency_mean_ms": round(statistics.fmean(latency_ms), 1) if latency_ms else None,
        "machine_busy_cores_before": idle,
        "cpu_burst": cpu.report(len(burst), "enqueue"),
        "watcher_health": health,
    }


def _latencies(
    raw: RawClient, runs: dict[str, float], last_write: dict[str, float], settle: float
) -> list[float]:
    """Each latency file's created_at - last write - settle, in ms; a run is matched to
    its file by the file's path appearing anywhere in the run's input."""
    rows = raw.client.list_workflows(workflow_ids=list(runs), load_input=True, load_output=False)
    out = []
    for row in rows:
        text = str(row.input)
        path = next((p for p in last_write if p in text), None)
        if path is not None:
            out.append((runs[row.workflow_id] - last_write[path] - settle) * 1000)
    if len(out) != len(last_write):
        raise SystemExit(f"matched {len(out)} of {len(last_write)} latency files to their runs")
    return sorted(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, help="burst size (default 5000; --quick 1000)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--latency-files", type=int, default=20, help="0 skips the latency part")
    parser.add_argument("--settle", type=float, default=0.5, help="settle_seconds")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between latency files")
    parser.add_argument(
        "--pg",
        nargs="?",
        const=PG_ADMIN,
        default=PG_ADMIN,
        help=f"admin URL of the PostgreSQL server (default {PG_ADMIN}); a fresh database "
        "is created on it and dropped. PostgreSQL is the only backend measured.",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before measuring, wait up to this long for the machine to be idle",
    )
    args = parser.parse_args()
    args.files = args.files or (1000 if args.quick else 5000)
    with fresh_database(args.pg) as url:
        result = run(args, url)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
