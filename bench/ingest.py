"""Webhook ingest throughput and ack latency against ``serve`` on PostgreSQL.

Three measurements in one run, on one fresh PostgreSQL database:

1. raw: ``DBOSClient.enqueue`` of a trivial workflow on a bare queue, from
   ``--concurrency`` threads (the reference: what DBOS alone can take);
2. saturation: signed GitHub pushes (each a new delivery) sent by
   ``--concurrency`` concurrent clients to ``serve``; every 202 is an ack given
   only after the run is durably enqueued;
3. steady: pushes at a fixed ``--rate`` for ``--seconds`` (open loop: sends are
   scheduled by the clock, not by the previous answer), with p50/p99 latency.

Prints one JSON object. Default run is well under two minutes.

    .venv/bin/python bench/ingest.py [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import Pool, build_request  # noqa: E402
from tests.support import base_config, write_config  # noqa: E402

SECRET = "bench-secret"  # noqa: S105  (a throwaway for the benchmark)
PAYLOAD = json.loads((ROOT / "tests/trigger/payloads/github_push.json").read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _signed(delivery: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(PAYLOAD).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def raw_enqueue_rate(url: str, total: int, concurrency: int, tag: str) -> float:
    from dbos import DBOSClient

    client = DBOSClient(system_database_url=url)
    counter = iter(range(total))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            client.enqueue(
                {
                    "workflow_name": "bench.noop",
                    "queue_name": "bench-bare",
                    "workflow_id": f"raw-{tag}-{n}",
                    "priority": 1,
                },
                n,
            )

    for warm in range(5):
        client.enqueue(
            {
                "workflow_name": "bench.noop",
                "queue_name": "bench-bare",
                "workflow_id": f"w{tag}{warm}",
            }
        )
    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    client.destroy()
    return total / elapsed


def _requests(url: str, tag: str, count: int) -> list[bytes]:
    """Signed before the clock starts: the load generator only writes bytes."""
    return [build_request(url, *_signed(f"{tag}-{n}")) for n in range(count)]


async def saturation(
    url: str, total: int, concurrency: int, tag: str, code: int = 202
) -> dict[str, Any]:
    pool = Pool(url)
    for raw in _requests(url, f"{tag}-warm", concurrency):
        await pool.send(raw)
    pending = _requests(url, tag, total)
    pending.reverse()
    codes: list[int] = []

    async def worker() -> None:
        while pending:
            status, _ = await pool.send(pending.pop())
            codes.append(status)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await pool.close()
    acks = codes.count(code)
    return {"requests": total, "acks": acks, "acks_per_s": round(acks / elapsed, 1)}


async def steady(url: str, rate: float, seconds: float, tag: str) -> dict[str, Any]:
    total = int(rate * seconds)
    prepared = _requests(url, tag, total)
    pool = Pool(url)
    start = time.perf_counter()
    tasks = []
    for n, raw in enumerate(prepared):
        due = start + n / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(pool.send(raw)))
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await pool.close()
    latencies = sorted(lat for code, lat in results if code == 202)
    acks = len(latencies)
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    return {
        "offered_rate": rate,
        "requests": total,
        "acks": acks,
        "failures": total - acks,
        "acks_per_s": round(acks / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
    }


def _wait_for(log: Path, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if time.monotonic() > deadline:
            raise SystemExit(f"{log} never said {text!r}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "BAUPLAN_TRIGGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--requests", type=int, default=500, help="saturation and raw count")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--role", default="all", choices=["all", "ingress"])
    parser.add_argument(
        "--ingress-processes",
        type=int,
        default=1,
        help="with --role ingress: this many ingress processes share the port (reuse_port)",
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="with --role ingress: stop the worker once it has created the tables",
    )
    args = parser.parse_args()

    name = f"bt_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = args.pg.rsplit("/", 1)[0] + f"/{name}"
    work = Path(tempfile.mkdtemp(prefix="bt-bench-"))
    project = work / "pipelines" / "orders"
    project.mkdir(parents=True)
    (project / "bauplan_project.yml").write_text("project:\n  id: bench\n  name: orders\n")
    port = _free_port()
    config = base_config(
        work,
        project,
        service={"listen": f"127.0.0.1:{port}", "reuse_port": args.ingress_processes > 1},
        triggers=[
            {
                "name": "orders",
                "project_dir": str(project),
                "branch": "orders_{git_branch}",
                "github": {"repo": "acme/lakehouse", "secret_env": "BENCH_GITHUB_SECRET"},
            }
        ],
    )
    path = write_config(work / "bauplan-trigger.toml", config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAUPLAN", "DBOS_"))} | {
        "DBOS_SYSTEM_DATABASE_URL": url,
        "BENCH_GITHUB_SECRET": SECRET,
    }
    procs: list[subprocess.Popen[bytes]] = []

    def serve(role: str, n: int = 0) -> subprocess.Popen[bytes]:
        log = (work / f"serve-{role}{n or ''}.log").open("wb")
        cmd = [sys.executable, "-m", "trigger.cli", "serve", "--config", str(path)]
        proc = subprocess.Popen(
            [*cmd, "--role", role], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        procs.append(proc)
        return proc

    if args.role == "ingress":
        # An ingress never launches DBOS, so it cannot create the system tables:
        # the worker does, and must be up first.
        worker = serve("worker")
        _wait_for(work / "serve-worker.log", "serving role=worker")
        if args.no_worker:
            # Measure enqueueing alone: nothing dequeues while the hooks arrive.
            worker.terminate()
            worker.wait(timeout=60)
    proc = serve(args.role)
    if args.role == "ingress":
        for n in range(2, args.ingress_processes + 1):
            serve(args.role, n)
        for n in range(1, args.ingress_processes + 1):
            _wait_for(work / f"serve-ingress{'' if n == 1 else n}.log", "serving role=ingress")
    hook = f"http://127.0.0.1:{port}/hooks/github"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"serve did not start; see {work}")
            time.sleep(0.2)
        # Raw rate before and after the hooks: on a shared machine the load moves,
        # and the ratio is only fair against the reference measured around it.
        raw_before = raw_enqueue_rate(url, args.requests, args.concurrency, "a")
        # The HTTP ceiling on this machine: the same client and server, a route that
        # answers 404 at once (no route: no signature, no database, no event log).
        base = f"http://127.0.0.1:{port}/bench/no-such-route"
        ceiling = asyncio.run(saturation(base, args.requests, args.concurrency, "ceil", code=404))
        sat = asyncio.run(saturation(hook, args.requests, args.concurrency, "sat"))
        raw_after = raw_enqueue_rate(url, args.requests, args.concurrency, "b")
        stead = asyncio.run(steady(hook, args.rate, args.seconds, "steady"))
    finally:
        for each in procs:
            each.terminate()
            each.wait(timeout=60)
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        json.dumps(
            {
                "database": "postgresql",
                "role": args.role,
                "ingress_processes": args.ingress_processes if args.role == "ingress" else 1,
                "worker_running": not (args.role == "ingress" and args.no_worker),
                "concurrency": args.concurrency,
                "raw_dbos_enqueue_per_s": {
                    "before": round(raw_before, 1),
                    "after": round(raw_after, 1),
                },
                "http_ceiling_404_per_s": ceiling["acks_per_s"],
                "saturation": sat,
                "ratio_to_raw": round(sat["acks_per_s"] / ((raw_before + raw_after) / 2), 2),
                "steady": stead,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
