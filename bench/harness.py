"""What the PostgreSQL benchmarks share: a throwaway database, ``serve`` as a
subprocess, the raw ``DBOSClient.enqueue`` reference, and per-process CPU.

The benchmarks drive the product only from outside (the ``serve`` command, its
config file, HTTP, the watched folder) and read results only from DBOS's own
tables, so they keep measuring the same thing whatever the ingest internals
become. The reference is plain ``DBOSClient.enqueue`` with the options an ingress
passes (partition key, priority, app version, attributes, a deterministic id that
must be new) and an input of the same size as a run request; its queue and
workflow names are the bench's own, which costs DBOS the same insert and keeps a
worker on the same database from trying to run the rows.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get(
    "BAUPLAN_TRIGGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
RAW_QUEUE = "bench-raw"
RAW_WORKFLOW = "bench.raw"
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def fresh_database(admin: str = PG_ADMIN) -> Iterator[str]:
    """A new, empty PostgreSQL database for one scenario; dropped afterwards."""
    name = f"bt_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def write_config(path: Path, tables: dict[str, dict[str, Any]], triggers: list[Any]) -> Path:
    """A config file from plain tables; each trigger is (table, {sub-table: table})."""
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for trig, subs in triggers:
        lines.append("[[triggers]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in trig.items()]
        for sub, table in subs.items():
            lines.append(f"[triggers.{sub}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Serve:
    """One ``bauplan-trigger serve`` subprocess, its log in ``log``."""

    config: Path
    role: str
    url: str
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        cmd = [sys.executable, "-m", "trigger.cli", "serve", "--config", str(self.config)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--role", self.role],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=ROOT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout: float = 90) -> None:
        """Until ``/healthz`` answers 200: the listener is bound and the database set up."""
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"serve --role {self.role} exited; see {self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"serve --role {self.role} did not become healthy; see {self.log}")
            time.sleep(0.2)

    def health(self) -> dict[str, Any]:
        import httpx

        body: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=5).json()
        return body

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve_env(url: str, **extra: str) -> dict[str, str]:
    """The bench's environment without our or DBOS's settings, pointed at ``url``."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("BAUPLAN", "DBOS_"))}
    return keep | {"DBOS_SYSTEM_DATABASE_URL": url} | extra


# -- the raw reference ---------------------------------------------------------------


def _raw_input(n: int) -> dict[str, Any]:
    """About the size of a push's run request (ids, branch, parameters, git fields)."""
    return {
        "run_id": f"run:orders:gh-raw-{n}",
        "trigger": "orders",
        "event_id": f"gh-raw-{n}",
        "event_kind": "github",
        "project_dir": "/tmp/bench/pipelines/orders",
        "branch_suffix": "orders_main",
        "base_ref": "main",
        "parameters": {"git_sha": "9f3c2b1a" * 5, "git_branch": "main"},
        "priority": 100,
        "notify": [],
        "file": None,
        "git_source": None,
        "git_sha": "9f3c2b1a" * 5,
        "project_subdir": None,
    }


def raw_options(tag: str, n: int) -> dict[str, Any]:
    branch = f"rehearsal.orders_raw{n % 50}"
    return {
        "workflow_name": RAW_WORKFLOW,
        "queue_name": RAW_QUEUE,
        "workflow_id": f"raw:{tag}:{n}",
        "workflow_id_reuse_policy": "reject",
        "queue_partition_key": branch,
        "priority": 100,
        "app_version": "1",
        "attributes": {
            "trigger": "orders",
            "event_id": f"gh-raw-{n}",
            "event_kind": "github",
            "branch": branch,
            "priority": 100,
        },
    }


class RawClient:
    """``DBOSClient`` with its default pool, as an application would build it."""

    def __init__(self, url: str) -> None:
        from dbos import DBOSClient

        self.client = DBOSClient(system_database_url=url)
        for n in range(5):  # open the pool before any clock starts
            self.enqueue(f"warm{uuid.uuid4().hex[:6]}", n)

    def enqueue(self, tag: str, n: int) -> None:
        self.client.enqueue(raw_options(tag, n), _raw_input(n))  # type: ignore[arg-type]

    def rate(self, total: int, threads: int) -> float:
        """Enqueues per second: ``total`` enqueues from ``threads`` threads."""
        tag = uuid.uuid4().hex[:8]
        counter = iter(range(total))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                self.enqueue(tag, n)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return total / (time.perf_counter() - start)

    def latencies(self, count: int) -> list[float]:
        """Seconds per enqueue, one at a time from one thread."""
        tag = uuid.uuid4().hex[:8]
        out = []
        for n in range(count):
            start = time.perf_counter()
            self.enqueue(tag, n)
            out.append(time.perf_counter() - start)
        return out

    def close(self) -> None:
        self.client.destroy()


# -- figures -------------------------------------------------------------------------


def quantiles_ms(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


# -- where the CPU goes --------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime, all threads


def _postgres_pids() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies over all cores since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


@dataclass
class CpuMeter:
    """CPU seconds over a window: named processes, the PostgreSQL backends serving the
    scenario's database, every PostgreSQL process on the machine (others' databases
    too, so a concurrent test run shows up), and the whole machine."""

    database: str
    processes: dict[str, int]
    admin: str = PG_ADMIN
    _start: dict[str, Any] = field(default_factory=dict)
    _t0: float = 0.0
    _end: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0

    def _backends(self) -> list[int]:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.database,)
            ).fetchall()
        return [row[0] for row in rows]

    def _snapshot(self) -> dict[str, Any]:
        backends = self._backends()
        return {
            "named": {name: _cpu_seconds(pid) for name, pid in self.processes.items()},
            "backends": {pid: _cpu_seconds(pid) for pid in backends},
            "postgres": {pid: _cpu_seconds(pid) for pid in _postgres_pids()},
            "machine": _machine_busy(),
        }

    def __enter__(self) -> CpuMeter:
        self._start = self._snapshot()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self._t0
        self._end = self._snapshot()

    def report(self, per: int | None = None, unit: str = "ack") -> dict[str, Any]:
        """Cores used by each (CPU seconds / wall seconds), and CPU ms per ``unit``."""
        start, end, wall = self._start, self._end, self.elapsed

        def delta(a: dict[int, float | None], b: dict[int, float | None]) -> float:
            return sum((b[p] or 0.0) - (a.get(p) or 0.0) for p in b if b[p] is not None)

        used = {
            name: (end["named"][name] or 0.0) - (start["named"][name] or 0.0)
            for name in self.processes
        }
        used["postgres_this_db"] = delta(start["backends"], end["backends"])
        used["postgres_all"] = delta(start["postgres"], end["postgres"])
        busy0, total0 = start["machine"]
        busy1, total1 = end["machine"]
        cores = os.cpu_count() or 1
        machine = (busy1 - busy0) / max(total1 - total0, 1) * cores * wall
        ours = sum(v for k, v in used.items() if k != "postgres_this_db")
        out: dict[str, Any] = {
            "window_s": round(wall, 2),
            "cores_used": {k: round(v / wall, 2) for k, v in used.items()}
            | {"everything_else": round(max(machine - ours, 0.0) / wall, 2)},
            "machine_busy_cores": round(machine / wall, 2),
            "machine_cores": cores,
        }
        if per:
            out[f"cpu_ms_per_{unit}"] = {k: round(v * 1000 / per, 3) for k, v in used.items()}
        return out


def wait_quiet(max_seconds: float, busy_cores: float = 0.3, for_seconds: float = 3.0) -> float:
    """Wait (at most ``max_seconds``) until the machine has used under ``busy_cores`` for
    ``for_seconds`` running: on a shared machine, someone's test run can take both
    cores. Returns the cores busy over the last quiet (or last) stretch."""
    deadline = time.monotonic() + max_seconds
    while True:
        busy0, total0 = _machine_busy()
        time.sleep(for_seconds)
        busy1, total1 = _machine_busy()
        busy = (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)
        if busy < busy_cores or time.monotonic() >= deadline:
            return round(busy, 2)
