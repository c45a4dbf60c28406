"""Webhook ingest on PostgreSQL: durable acks against the raw DBOS enqueue rate, and
ack latency, each scenario on a fresh database it creates and drops.

Every figure comes from real ``bauplan-trigger serve`` subprocesses receiving signed
GitHub pushes (each a new delivery, so each 202 is an ack given only after its run
was committed to the queue; the runs in the database are counted to prove it). The
reference is measured in the same run on the same database: ``DBOSClient.enqueue``
(default client, so at most 5 pooled connections) from 8 threads, before and after
the hooks (a shared machine's load moves). Scenarios:

1. ``ingress_1``: one ``serve --role ingress``; ``--concurrency`` keep-alive clients
   send as fast as it answers. Also the HTTP ceiling: the same load on a route that
   answers 404 at once (no signature, no database).
2. ``ingress_2``: two ``serve --role ingress`` on two ports of the same database,
   the clients split evenly between them (what a load balancer in front would do;
   simpler and more even than SO_REUSEPORT's hash of each connection).
3. ``steady_ingress``: 100 requests/s, open loop (sends follow the clock, not the
   answers), to one ``--role ingress``: p50/p99 ack.
4. ``steady_all_backlog``: 1,500 runs enqueued first (webhooks on ``--backlog-branches``
   git branches, through an ingress that is then stopped), then ``serve --role all``
   (HTTP and the worker in one process) starts draining them with rehearsal jobs of
   ``--job-seconds`` (each job polled every ``--job-poll`` s, default 0.1 where the
   product's default is 2; the queue polled every 0.1 s; one run at a time per
   branch), and the steady 100 requests/s is measured while it drains. The
   backlog's waiting (ENQUEUED) and running counts at the start and end of the window
   show it really was draining. With ``--split`` the same backlog is drained by a
   ``serve --role worker`` while a ``serve --role ingress`` takes the steady load.
5. ``sequential``: one client, one request at a time on one keep-alive connection,
   next to a bare sequential ``DBOSClient.enqueue`` from this process, interleaved
   in rounds so both see the same load: p50 of each.

Each scenario reports where the CPU went (``/proc``): cores used by each ``serve``,
by this process (the load generator, or the raw client), by PostgreSQL's backends for
the scenario's database, by all PostgreSQL processes (another database's tests show
up here), and by the whole machine; with CPU ms per ack or per enqueue.

Prints one JSON object; ``targets`` holds issue 14's ratios and whether each is met.
The full run takes about three minutes; ``--quick`` about one.

    .venv/bin/python bench/ingest.py [--quick] [--only ingress_1,sequential]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    PG_ADMIN,
    ROOT,
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
from bench.loadgen import Connection, Pool, build_request

SECRET = "bench-secret"  # noqa: S105  (a throwaway for the benchmark)
PAYLOAD = json.loads((ROOT / "tests/trigger/payloads/github_push.json").read_text())
RAW_THREADS = 8
SCENARIOS = ("ingress_1", "ingress_2", "steady_ingress", "steady_all_backlog", "sequential")


def _signed(delivery: str, ref: str = "refs/heads/main") -> tuple[bytes, dict[str, str]]:
    body = json.dumps({**PAYLOAD, "ref": ref}).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def _requests(url: str, tag: str, count: int, branches: int = 0) -> list[bytes]:
    """Signed before any clock starts: the load generator only writes bytes."""
    return [
        build_request(
            url,
            *_signed(
                f"{tag}-{n}", f"refs/heads/b{n % branches}" if branches else "refs/heads/main"
            ),
        )
        for n in range(count)
    ]


class Site:
    """A scenario's database, folder, config and the ``serve`` processes on it."""

    def __init__(self, url: str, args: argparse.Namespace, label: str) -> None:
        self.url = url
        self.database = url.rsplit("/", 1)[1]
        self.work = scratch(f"bt-bench-{label}-")
        project = self.work / "pipelines" / "orders"
        project.mkdir(parents=True)
        (project / "bauplan_project.yml").write_text("project:\n  id: bench\n  name: orders\n")
        self.config = write_config(
            self.work / "bauplan-trigger.toml",
            {
                "service": {"state_dir": str(self.work / "state")},
                "bauplan": {
                    "mode": "rehearse",
                    "rehearse_seconds": args.job_seconds,
                    "poll_interval": args.job_poll,
                    "poll_max_interval": max(0.5, args.job_poll),
                    "retry_interval": 0.1,
                },
                "queue": {"polling_interval": 0.1},
            },
            [
                (
                    {
                        "name": "orders",
                        "project_dir": str(project),
                        "branch": "orders_{git_branch}",
                    },
                    {"github": {"repo": "acme/lakehouse", "secret_env": "BENCH_GITHUB_SECRET"}},
                )
            ],
        )
        self.procs: list[Serve] = []

    def serve(self, role: str, name: str, port: int | None = None) -> Serve:
        port = port or free_port()
        env = serve_env(
            self.url,
            BENCH_GITHUB_SECRET=SECRET,
            BAUPLAN_TRIGGER_SERVICE__LISTEN=f"127.0.0.1:{port}",
            BAUPLAN_TRIGGER_SERVICE__NAME=name,
        )
        proc = Serve(
            self.config, role, f"http://127.0.0.1:{port}", self.work / f"serve-{name}.log", env
        )
        self.procs.append(proc.start())
        return proc

    def count(self, like: str, statuses: tuple[str, ...] | None = None) -> int:
        sql = "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE %s"
        params: list[Any] = [like]
        if statuses:
            sql += " AND status = ANY(%s)"
            params.append(list(statuses))
        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()


async def _saturate(
    targets: list[str],
    path: str,
    total: int,
    concurrency: int,
    tag: str,
    code: int = 202,
    branches: int = 0,
) -> dict[str, Any]:
    """``concurrency`` closed-loop clients over ``targets`` (split evenly), ``total``
    requests in all; each client takes the next request when its last one is answered."""
    pools = [Pool(t + path) for t in targets]
    per_target = [_requests(t + path, tag, total, branches) for t in targets]
    for i, pool in enumerate(pools):  # open every connection before the clock starts
        warm = _requests(targets[i] + path, f"warm{i}-{tag}", concurrency // len(pools))
        await asyncio.gather(*(pool.send(raw) for raw in warm))
    counter = iter(range(total))
    codes: list[int] = []

    async def client(k: int) -> None:
        pool, prepared = pools[k % len(pools)], per_target[k % len(pools)]
        for n in counter:
            status, _ = await pool.send(prepared[n])
            codes.append(status)

    start = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    for pool in pools:
        await pool.close()
    acks = codes.count(code)
    return {
        "requests": total,
        "answered": acks,
        "other_answers": total - acks,
        "per_s": round(acks / elapsed, 1),
        "seconds": round(elapsed, 2),
    }


async def _steady(target: str, rate: float, seconds: float, tag: str) -> dict[str, Any]:
    total = int(rate * seconds)
    prepared = _requests(target + "/hooks/github", tag, total)
    pool = Pool(target + "/hooks/github")
    start = time.perf_counter()
    tasks = []
    for n, raw in enumerate(prepared):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(pool.send(raw)))
    results = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await pool.close()
    latencies = [lat for code, lat in results if code == 202]
    others = Counter(str(code) for code, _ in results if code != 202)  # 0: connection lost
    return {
        "offered_per_s": rate,
        "requests": total,
        "acks": len(latencies),
        "failures": total - len(latencies),
        "failure_codes": dict(others),
        "acks_per_s": round(len(latencies) / elapsed, 1),
        "connections_opened": pool.connects,
        **quantiles_ms(latencies),
    }


def _raw(raw: RawClient, count: int, meter: Callable[[], CpuMeter]) -> dict[str, Any]:
    with meter() as cpu:
        rate = raw.rate(count, RAW_THREADS)
    return {"per_s": round(rate, 1), "cpu": cpu.report(count, "enqueue")}


def ingress(args: argparse.Namespace, processes: int) -> dict[str, Any]:
    label = f"ingress_{processes}"
    with fresh_database(args.pg) as url:
        site = Site(url, args, label)
        try:
            procs = [site.serve("ingress", f"ingress{i + 1}") for i in range(processes)]
            for proc in procs:
                proc.wait_ready()
            raw = RawClient(url)
            pids = {f"serve_ingress{i + 1}": p.pid for i, p in enumerate(procs)}

            def meter(**extra: int) -> CpuMeter:
                return CpuMeter(site.database, {**extra, "bench_process": os.getpid()}, args.pg)

            before = _raw(raw, args.raw, meter)
            targets = [p.url for p in procs]
            ceiling = None
            if processes == 1:
                ceiling = asyncio.run(
                    _saturate(
                        targets, "/bench/no-such-route", args.requests, args.concurrency, "c", 404
                    )
                )
            with meter(**pids) as cpu:
                sat = asyncio.run(
                    _saturate(targets, "/hooks/github", args.requests, args.concurrency, "sat")
                )
            after = _raw(raw, args.raw, meter)
            raw.close()
            enqueued = site.count("run:orders:gh-sat-%")
        finally:
            site.close()
        shutil.rmtree(site.work)  # kept, with the serve logs, when a scenario fails
    reference = (before["per_s"] + after["per_s"]) / 2
    out: dict[str, Any] = {
        "ingress_processes": processes,
        "concurrency": args.concurrency,
        "raw_8_thread_enqueue_per_s": round(reference, 1),
        "raw_before_after_per_s": [before["per_s"], after["per_s"]],
        "acks_per_s": sat["per_s"],
        "ratio_to_raw": round(sat["per_s"] / reference, 3),
        "saturation": sat | {"runs_in_database": enqueued},
        "cpu_saturation": cpu.report(sat["answered"], "ack"),
        "cpu_raw_before": before["cpu"],
    }
    if ceiling is not None:
        out["http_ceiling_404_per_s"] = ceiling["per_s"]
    return out


def steady_ingress(args: argparse.Namespace) -> dict[str, Any]:
    with fresh_database(args.pg) as url:
        site = Site(url, args, "steady")
        try:
            proc = site.serve("ingress", "ingress1")
            proc.wait_ready()
            asyncio.run(_saturate([proc.url], "/hooks/github", 50, 4, "warm"))
            with CpuMeter(
                site.database, {"serve_ingress": proc.pid, "bench_process": os.getpid()}, args.pg
            ) as cpu:
                result = asyncio.run(_steady(proc.url, args.rate, args.seconds, "steady"))
        finally:
            site.close()
        shutil.rmtree(site.work)  # kept, with the serve logs, when a scenario fails
    return result | {"cpu": cpu.report(result["acks"], "ack")}


def steady_all_backlog(args: argparse.Namespace) -> dict[str, Any]:
    backlog_like = "run:orders:gh-backlog-%"
    with fresh_database(args.pg) as url:
        site = Site(url, args, "backlog")
        try:
            port = free_port()
            filler = site.serve("ingress", "filler", port)
            filler.wait_ready()
            fill = asyncio.run(
                _saturate(
                    [filler.url],
                    "/hooks/github",
                    args.backlog,
                    16,
                    "backlog",
                    202,
                    args.backlog_branches,
                )
            )
            if fill["answered"] != args.backlog:
                raise SystemExit(f"the backlog got {fill['answered']} acks; see {site.work}")
            filler.stop()
            queued = site.count(backlog_like, ("ENQUEUED",))
            procs: dict[str, Any] = {}
            if args.split:  # the same work in two processes: a worker and an ingress
                procs["serve_worker"] = site.serve("worker", "worker")
                proc = procs["serve_ingress"] = site.serve("ingress", "ingress", port)
            else:
                proc = procs["serve_all"] = site.serve("all", "all", port)
            proc.wait_ready()
            # Measure once the worker is draining: DBOS's first dequeue takes ~1 s.
            deadline = time.monotonic() + 60
            while site.count(backlog_like, ("PENDING", "SUCCESS", "ERROR")) == 0:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the backlog never started draining; see {site.work}")
                time.sleep(0.1)
            asyncio.run(_saturate([proc.url], "/hooks/github", 20, 2, "warm"))
            at_start = _backlog(site, backlog_like)
            pids = {name: p.pid for name, p in procs.items()}
            with CpuMeter(site.database, {**pids, "bench_process": os.getpid()}, args.pg) as cpu:
                result = asyncio.run(_steady(proc.url, args.rate, args.seconds, "steady"))
            at_end = _backlog(site, backlog_like)
        finally:
            site.close()
        shutil.rmtree(site.work)  # kept, with the serve logs, when a scenario fails
    drained = at_end["finished"] - at_start["finished"]
    return result | {
        "backlog_runs": args.backlog,
        "backlog_enqueued_before_worker": queued,
        "backlog_fill_acks_per_s": fill["per_s"],
        "backlog_branches": args.backlog_branches,
        "job_seconds": args.job_seconds,
        "job_poll_seconds": args.job_poll,
        "split_worker_and_ingress": args.split,
        "backlog_at_window_start": at_start,
        "backlog_at_window_end": at_end,
        "backlog_finished_in_window": drained,
        "backlog_drain_per_s": round(drained / cpu.elapsed, 1),
        "cpu": cpu.report(result["acks"], "ack"),
    }


def _backlog(site: Site, like: str) -> dict[str, int]:
    with psycopg.connect(site.url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM dbos.workflow_status "
            "WHERE workflow_uuid LIKE %s GROUP BY status",
            (like,),
        ).fetchall()
    counts = {status: int(n) for status, n in rows}
    return {
        "waiting": counts.get("ENQUEUED", 0) + counts.get("DELAYED", 0),
        "running": counts.get("PENDING", 0),
        "finished": sum(
            n for s, n in counts.items() if s not in ("ENQUEUED", "DELAYED", "PENDING")
        ),
    }


def sequential(args: argparse.Namespace) -> dict[str, Any]:
    rounds, per_round = args.rounds, max(args.sequential // args.rounds, 1)
    with fresh_database(args.pg) as url:
        site = Site(url, args, "sequential")
        try:
            proc = site.serve("ingress", "ingress1")
            proc.wait_ready()
            raw = RawClient(url)
            bare: list[float] = []
            ours: list[float] = []
            codes: list[int] = []

            async def one_client() -> None:
                hook = proc.url + "/hooks/github"
                conn = await Connection.open(hook)
                for raw_request in _requests(hook, "seq-warm", 20):
                    await conn.send(raw_request)
                for r in range(rounds):
                    bare.extend(await asyncio.to_thread(raw.latencies, per_round))
                    for raw_request in _requests(hook, f"seq{r}", per_round):
                        code, seconds = await conn.send(raw_request)
                        codes.append(code)
                        if code == 202:
                            ours.append(seconds)
                await conn.close()

            raw.latencies(20)
            with CpuMeter(
                site.database, {"serve_ingress": proc.pid, "bench_process": os.getpid()}, args.pg
            ) as cpu:
                asyncio.run(one_client())
            raw.close()
        finally:
            site.close()
        shutil.rmtree(site.work)  # kept, with the serve logs, when a scenario fails
    bare_q, ours_q = quantiles_ms(bare), quantiles_ms(ours)
    return {
        "requests": len(codes),
        "acks": len(ours),
        "rounds": rounds,
        "ack": ours_q,
        "bare_enqueue": bare_q,
        "ack_mean_ms": round(statistics.fmean(ours) * 1000, 2) if ours else None,
        "bare_enqueue_mean_ms": round(statistics.fmean(bare) * 1000, 2),
        "p50_ratio_to_bare": round((ours_q["p50_ms"] or 0) / (bare_q["p50_ms"] or 1), 2),
        # serve's CPU per ack; this process also made the bare enqueues.
        "cpu": cpu.report(len(ours), "ack"),
    }


def _target(value: float | None, limit: float, at_least: bool) -> dict[str, Any]:
    met = value is not None and (value >= limit if at_least else value <= limit)
    return {"value": value, ("min" if at_least else "max"): limit, "met": met}


def targets(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (1, 2):
        if f"ingress_{n}" in results:
            out[f"acks_ratio_ingress_{n}"] = _target(
                results[f"ingress_{n}"]["ratio_to_raw"], 0.8, True
            )
    if "steady_ingress" in results:
        out["steady_ingress_p99_ms"] = _target(results["steady_ingress"]["p99_ms"], 25, False)
    if "steady_all_backlog" in results:
        out["steady_all_backlog_p99_ms"] = _target(
            results["steady_all_backlog"]["p99_ms"], 50, False
        )
    if "sequential" in results:
        out["sequential_p50_ratio_to_bare"] = _target(
            results["sequential"]["p50_ratio_to_bare"], 2.0, False
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default=PG_ADMIN, help="admin URL; scenarios get fresh databases")
    parser.add_argument("--quick", action="store_true", help="smaller counts, shorter windows")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--requests", type=int, help="webhooks per saturation (default 4000)")
    parser.add_argument("--raw", type=int, help="raw enqueues per reference (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="saturation clients")
    parser.add_argument("--rate", type=float, default=100.0, help="steady requests/s")
    parser.add_argument("--seconds", type=float, help="steady window (default 15)")
    parser.add_argument("--backlog", type=int, default=1500)
    parser.add_argument("--backlog-branches", type=int, default=30)
    parser.add_argument("--job-seconds", type=float, default=0.2, help="rehearsal job length")
    parser.add_argument(
        "--split",
        action="store_true",
        help="steady_all_backlog with serve --role worker + --role ingress instead of all",
    )
    parser.add_argument(
        "--job-poll",
        type=float,
        default=0.1,
        help="[bauplan] poll_interval (0.1 keeps the worker busy; the product's default is 2)",
    )
    parser.add_argument("--sequential", type=int, help="sequential requests (default 600)")
    parser.add_argument("--rounds", type=int, default=6, help="sequential interleaving rounds")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario, wait up to this long for the machine to be idle",
    )
    args = parser.parse_args()
    quick = args.quick
    args.requests = args.requests or (1500 if quick else 4000)
    args.raw = args.raw or (1000 if quick else 3000)
    args.seconds = args.seconds or (6.0 if quick else 15.0)
    args.sequential = args.sequential or (240 if quick else 600)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose among {list(SCENARIOS)}")
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "ingress_1": lambda: ingress(args, 1),
        "ingress_2": lambda: ingress(args, 2),
        "steady_ingress": lambda: steady_ingress(args),
        "steady_all_backlog": lambda: steady_all_backlog(args),
        "sequential": lambda: sequential(args),
    }
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in chosen:
        idle = wait_quiet(args.wait_quiet) if args.wait_quiet else None
        results[name] = runners[name]() | {"machine_busy_cores_before": idle}
    raws = [
        results[k]["raw_8_thread_enqueue_per_s"] for k in ("ingress_1", "ingress_2") if k in results
    ]
    print(
        json.dumps(
            {
                "database": "postgresql",
                "machine_cores": os.cpu_count(),
                "quick": quick,
                "raw_8_thread_enqueue_per_s": round(statistics.fmean(raws), 1) if raws else None,
                **results,
                "targets": targets(results),
                "bench_seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
