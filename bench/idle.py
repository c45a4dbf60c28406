"""Idle cost: the CPU a worker and its PostgreSQL spend while nothing happens.

Every branch holds one running run (blocked far longer than the window) and one
waiting behind it, and nothing else happens: whatever CPU is used is the cost of
waiting (queue polls, schedules, heartbeats), which should not grow with the
number of branches. Each scenario gets a fresh PostgreSQL database, builds its
backlog, waits until every branch has its running and its waiting run, lets the
start-up settle, and then measures ``--window`` seconds:

- ``plain``, ``limiter``, ``global``: the references, bare DBOS in a worker process
  of its own (this script re-started with ``--ref-worker``): a partitioned queue with
  ``partition_concurrency=1``; the same with a ``partition_limiter``; the same with a
  ``global_concurrency``. The running workflow is blocked in a long ``DBOS.sleep``.
- ``serve``: ``bauplan-trigger serve --role worker`` on a config written here
  (PostgreSQL, rehearsal jobs that outlast the window, the job poll at 60 s so that
  polling jobs is not what is measured, a per-branch limit and a global cap with
  room to spare), the runs enqueued through the product's ingest path
  (``workflows.intake.Enqueuer``, as ``fire`` and the hooks do).
- ``quickstart``: ``serve`` on ``config/quickstart.toml`` (SQLite state in a temporary
  folder) with nothing to do: the first thing a new user sees in ``top``.

CPU is utime + stime from /proc: the worker (or serve) process, plus the PostgreSQL
backends connected to the scenario's database, as % of one core. Each scenario
also names where the worker's CPU went, per thread (names from ``py-spy dump``
when py-spy is installed, else thread ids), and counts the steps DBOS checkpointed
during the window (job polls that fell into it). Prints one JSON object with the
ratio cost(most branches) / cost(fewest branches) for each scenario.

    .venv/bin/python bench/idle.py                          # 10 and 1000 branches
    .venv/bin/python bench/idle.py --branches 10,300 --window 20 --only plain,serve
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    PG_ADMIN,
    ROOT,
    Serve,
    _cpu_seconds,
    free_port,
    fresh_database,
    scratch,
    serve_env,
    wait_quiet,
    write_config,
)

REF_QUEUE = "bench-idle"
REF_WORKFLOW = "bench.idle.sleep"
REF_VERSION = "idle"
REFERENCES = ("plain", "limiter", "global")
SCENARIOS = (*REFERENCES, "serve", "quickstart")
# The per-branch limit of the references and of ours: at most this many starts a period.
LIMIT = {"limit": 10, "period": 60.0}
BLOCKED_SECONDS = 3600.0
_TICK = os.sysconf("SC_CLK_TCK")


# -- the reference worker (a process of its own, so its CPU is its own) ------------------


def ref_worker(kind: str, url: str, polling: float, cap: int) -> None:
    """Bare DBOS: one partitioned queue with the scenario's limits, and a workflow that
    only sleeps. Writes ``ready`` on stdout once launched; stops on SIGTERM."""
    from dbos import DBOS

    @DBOS.workflow(name=REF_WORKFLOW)
    def blocked(seconds: float) -> None:
        DBOS.sleep(seconds)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    DBOS(
        config={
            "name": "bench-idle",
            "system_database_url": url,
            "application_version": REF_VERSION,
            "executor_id": f"idle-{kind}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    DBOS.register_queue(
        REF_QUEUE,
        partition_concurrency=1,
        partition_limiter=LIMIT if kind == "limiter" else None,  # type: ignore[arg-type]
        global_concurrency=cap if kind == "global" else None,
        polling_interval_sec=polling,
    )
    print("ready", flush=True)
    stop.wait()
    # Its workflows sleep for an hour in executor threads that nothing interrupts; the
    # database is dropped next, so there is nothing to wind down.
    os._exit(0)


def _ref_backlog(url: str, branches: int) -> list[str]:
    """One running-to-be and one waiting workflow per branch, enqueued before the worker
    starts (so the first of each branch is the one that runs)."""
    from dbos import DBOS, DBOSClient, EnqueueOptions

    DBOS.migrate(url)
    client = DBOSClient(system_database_url=url)
    try:
        options: list[EnqueueOptions] = [
            {
                "workflow_name": REF_WORKFLOW,
                "queue_name": REF_QUEUE,
                "workflow_id": f"idle:b{b}-{i}",
                "queue_partition_key": f"ref.b{b}",
                "priority": 100,
                "app_version": REF_VERSION,
            }
            for i in range(2)
            for b in range(branches)
        ]
        _in_threads([lambda o=o: client.enqueue(o, BLOCKED_SECONDS) for o in options])
    finally:
        client.destroy()
    return [o["workflow_id"] for o in options]


def _in_threads(calls: list[Callable[[], object]], threads: int = 4) -> None:
    it = iter(calls)
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                call = next(it, None)
            if call is None:
                return
            call()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


# -- waiting for the set-up ----------------------------------------------------------------


def _query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
    """None when the server has no connection to spare right now (a shared machine)."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]
    except psycopg.OperationalError:
        return None


def _statuses(url: str) -> dict[str, int]:
    rows = _query(
        url,
        "SELECT status, count(*) FROM dbos.workflow_status "
        # Runs only: under a global cap each running run also has its job workflow.
        "WHERE workflow_uuid LIKE 'idle:%%' "
        "OR (workflow_uuid LIKE 'run:%%' AND name = 'bauplan_trigger.run') GROUP BY status",
    )
    return {str(s): int(n) for s, n in rows or []}


def _steps_between(url: str, start_ms: int, end_ms: int) -> int | None:
    rows = _query(
        url,
        "SELECT count(*) FROM dbos.operation_outputs WHERE completed_at_epoch_ms BETWEEN %s AND %s",
        (start_ms, end_ms),
    )
    return None if rows is None else int(rows[0][0])


def _wait_for(
    what: str, ready: Callable[[], bool], proc: subprocess.Popen[Any], limit: float
) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {limit:g}s")
        time.sleep(0.5)


def _settled(url: str, branches: int, jobs: Callable[[], int] | None = None) -> Callable[[], bool]:
    """Every branch has its running and its waiting run (and, for ours, its job)."""

    def check() -> bool:
        counts = _statuses(url)
        if counts.get("PENDING", 0) != branches or counts.get("ENQUEUED", 0) != branches:
            return False
        return jobs is None or jobs() >= branches

    return check


# -- where the CPU went, per thread --------------------------------------------------------


def _thread_cpu(pid: int) -> dict[int, float]:
    out: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                raw = (task / "stat").read_text()
            except OSError:
                continue
            fields = raw[raw.rindex(")") + 2 :].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def _thread_names(pid: int) -> dict[int, str]:
    """Python thread names by native id, from ``py-spy dump`` (empty without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    try:
        text = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=90
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {int(m[1]): m[2] for m in re.finditer(r'^Thread (\d+) \([^)]*\): "(.*)"$', text, re.M)}


def _group(name: str) -> str:
    """Many threads of one kind (DBOS's executor threads) count as one line."""
    name = re.sub(r"^Thread-\d+ \((.*)\)$", r"\1", name)
    return re.sub(r"_\d+$", "_*", name)


@contextlib.contextmanager
def per_thread(pid: int, into: dict[str, Any]) -> Iterator[None]:
    before, t0 = _thread_cpu(pid), time.perf_counter()
    yield
    after, wall = _thread_cpu(pid), time.perf_counter() - t0
    names = _thread_names(pid)
    used: dict[str, float] = {}
    for tid, cpu in after.items():
        key = _group(names.get(tid, f"tid {tid}"))
        used[key] = used.get(key, 0.0) + cpu - before.get(tid, 0.0)
    into["threads_pct"] = {
        k: round(v / wall * 100, 2)
        for k, v in sorted(used.items(), key=lambda kv: -kv[1])
        if v > 0 or len(used) < 20
    }


# -- the scenarios ---------------------------------------------------------------------------


def _backends(admin: str, database: str) -> list[int]:
    rows = _query(admin, "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))
    return [int(r[0]) for r in rows or []]


def _measure(
    url: str, pid: int, window: float, settle: float, admin: str, quiet: float
) -> dict[str, Any]:
    """The worker's and its database's CPU over ``window``, unrounded until the end (a
    clock tick is 10 ms: 0.05% of a core over 20 s)."""
    time.sleep(settle)
    out: dict[str, Any] = {"machine_busy_before_cores": wait_quiet(quiet, 0.6, 2.0)}
    database = url.rsplit("/", 1)[1]
    start_ms = int(time.time() * 1000)
    with per_thread(pid, out):
        pg0 = {p: _cpu_seconds(p) for p in _backends(admin, database)}
        w0, t0 = _cpu_seconds(pid) or 0.0, time.perf_counter()
        time.sleep(window)
        w1, wall = _cpu_seconds(pid) or 0.0, time.perf_counter() - t0
        pg1 = {p: _cpu_seconds(p) for p in _backends(admin, database)}
    # A backend that ended inside the window is missed; one that began counts from zero.
    pg = sum((pg1[p] or 0.0) - (pg0.get(p) or 0.0) for p in pg1 if pg1[p] is not None)
    worker = (w1 - w0) / wall * 100
    return {
        "worker_pct": round(worker, 1),
        "postgres_pct": round(pg / wall * 100, 1),
        "total_pct": round(worker + pg / wall * 100, 1),
        "postgres_backends": len(pg1),
        "steps_checkpointed_in_window": _steps_between(url, start_ms, int(time.time() * 1000)),
        **out,
    }


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a worker whose runs are blocked for an hour: a clean stop would wait for
    their threads, and the scenario's database is dropped next anyway."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def reference(kind: str, branches: int, args: argparse.Namespace) -> dict[str, Any]:
    with fresh_database(args.admin) as url:
        began = time.monotonic()
        _ref_backlog(url, branches)
        command = [sys.executable, __file__, "--ref-worker", kind, "--url", url]
        proc = subprocess.Popen(
            [*command, "--polling", str(args.polling), "--cap", str(args.cap)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise SystemExit(f"reference worker {kind} did not start")
            _wait_for("the backlog to settle", _settled(url, branches), proc, args.setup_limit)
            setup = time.monotonic() - began
            out = _measure(url, proc.pid, args.window, args.settle, args.admin, args.quiet)
        finally:
            _stop(proc)
    return {"setup_seconds": round(setup, 1), **out}


def _project(folder: Path) -> Path:
    project = folder / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "bauplan_project.yml").write_text("project:\n  id: idle\n  name: idle\n")
    return project


def ours(branches: int, args: argparse.Namespace) -> dict[str, Any]:
    from tests.support import match
    from trigger.core.event import manual_event
    from trigger.core.settings import load_settings
    from workflows import app
    from workflows.bauplan.rehearsal import Ledger
    from workflows.intake import Enqueuer
    from workflows.runtime import ledger_path

    folder = scratch("bench-idle-")
    with fresh_database(args.admin) as url:
        config = write_config(
            folder / "bauplan-trigger.toml",
            {
                "service": {"state_dir": str(folder / "state"), "name": "idle"},
                "bauplan": {
                    "mode": "rehearse",
                    "rehearse_seconds": BLOCKED_SECONDS,
                    "poll_interval": 60,
                    "poll_max_interval": 60,
                },
                "queue": {
                    "polling_interval": args.polling,
                    "per_branch_concurrency": 1,
                    "per_branch_limit": {
                        "runs": LIMIT["limit"],
                        "period_seconds": LIMIT["period"],
                    },
                    "global_concurrency": args.cap,
                },
            },
            [
                (
                    {
                        "name": "idle",
                        "project_dir": str(_project(folder)),
                        "branch": "idle_{branch_id}",
                        "inputs": ["branch_id", "n"],
                        "parameters": {"n": "{n}"},
                    },
                    {},
                )
            ],
        )
        env = serve_env(url)
        settings = load_settings(config, environ=env)
        began = time.monotonic()
        app.prepare_database(settings)
        enqueuer = Enqueuer(settings)
        try:
            requests = [
                match(
                    manual_event("idle", {"branch_id": f"b{b}", "n": str(i)}, event_id=f"b{b}-{i}"),
                    settings,
                )[0]
                for i in range(2)
                for b in range(branches)
            ]
            _in_threads([lambda r=r: enqueuer.enqueue(r) for r in requests])
        finally:
            enqueuer.close()
        log = folder / "worker.log"
        serve = Serve(config, "worker", "", log, env).start()
        assert serve.proc is not None
        ledger = Ledger(ledger_path(settings))
        try:
            _wait_for(
                "every branch's running job and waiting run",
                _settled(url, branches, lambda: len(ledger.jobs())),
                serve.proc,
                args.setup_limit,
            )
            setup = time.monotonic() - began
            out = _measure(url, serve.pid, args.window, args.settle, args.admin, args.quiet)
        finally:
            _stop(serve.proc)
    shutil.rmtree(folder, ignore_errors=True)
    return {"setup_seconds": round(setup, 1), **out}


def quickstart(args: argparse.Namespace) -> dict[str, Any]:
    """``serve`` as a new user starts it: the quickstart config, nothing to do."""
    folder = scratch("bench-idle-qs-")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAUPLAN", "DBOS_"))}
    env |= {
        "BAUPLAN_TRIGGER_SERVICE__STATE_DIR": str(folder / "state"),
        "BAUPLAN_TRIGGER_SERVICE__LISTEN": f"127.0.0.1:{port}",
    }
    serve = Serve(
        ROOT / "config" / "quickstart.toml", "all", f"http://127.0.0.1:{port}", folder / "log", env
    ).start()
    try:
        serve.wait_ready()
        time.sleep(args.settle)
        out: dict[str, Any] = {"machine_busy_before_cores": wait_quiet(args.quiet, 0.6, 2.0)}
        with per_thread(serve.pid, out):
            before, t0 = _cpu_seconds(serve.pid) or 0.0, time.perf_counter()
            time.sleep(args.window)
            used = (_cpu_seconds(serve.pid) or 0.0) - before
        wall = time.perf_counter() - t0
    finally:
        serve.stop()
    shutil.rmtree(folder, ignore_errors=True)
    return {"serve_pct": round(used / wall * 100, 1), **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--branches", default="10,1000", help="comma-separated branch counts")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after set-up")
    parser.add_argument(
        "--quiet", type=float, default=5.0, help="at most this long, wait for a quiet machine"
    )
    parser.add_argument("--setup-limit", type=float, default=300.0)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=",".join(SCENARIOS))
    parser.add_argument("--polling", type=float, default=0.1, help="queue polling interval")
    parser.add_argument("--admin", default=PG_ADMIN)
    parser.add_argument("--cap", type=int, help="global cap (default 2 x most branches)")
    parser.add_argument("--ref-worker", choices=REFERENCES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.branches.split(","))
    args.cap = args.cap or 2 * counts[-1]
    if args.ref_worker:
        ref_worker(args.ref_worker, args.url, args.polling, args.cap)
        return
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; pick from {','.join(SCENARIOS)}")
    started = time.monotonic()
    result: dict[str, Any] = {
        "benchmark": "idle",
        "window_seconds": args.window,
        "queue_polling_interval": args.polling,
        "global_cap": args.cap,
        "per_branch_limit": LIMIT,
        "job_poll_seconds": 60,
        "branches": counts,
        "scenarios": {},
    }
    for name in only:
        if name == "quickstart":
            result["scenarios"][name] = quickstart(args)
            continue
        runs: dict[str, Any] = {}
        for n in counts:
            runs[str(n)] = reference(name, n, args) if name in REFERENCES else ours(n, args)
        low, high = runs[str(counts[0])]["total_pct"], runs[str(counts[-1])]["total_pct"]
        result["scenarios"][name] = {
            "by_branches": runs,
            "ratio_most_to_fewest": round(high / max(low, 0.1), 2),
        }
    result["target"] = {"ratio_most_to_fewest": 1.3, "serve_total_pct": 25.0}
    result["elapsed_seconds"] = round(time.monotonic() - started, 1)
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
