"""Test helpers that are not fixtures: settings, waiting, subprocesses, the CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

# The checkout, and the example configuration files users copy.
REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "config"

if TYPE_CHECKING:
    from trigger.core.event import Event
    from trigger.core.matching import RunRequest
    from trigger.core.settings import Settings

PG_ADMIN_URL = os.environ.get(
    "BAUPLAN_TRIGGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
T = TypeVar("T")

_pg_state: dict[str, tuple[str, str]] = {}


def _probe_postgres(url: str = PG_ADMIN_URL) -> tuple[str, str]:
    """("ok", ""), ("unreachable", why) when nothing listens, or ("broken", why) when a
    server listens but refuses us (an auth failure, a missing database): a broken set-up
    is never a reason to skip."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(url)
    address = (str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432))
    try:
        socket.create_connection(address, timeout=3).close()
    except OSError as exc:
        return "unreachable", f"nothing listens on {address[0]}:{address[1]} ({exc})"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return "broken", " ".join(str(exc).split())
    return "ok", ""


def require_postgres() -> None:
    """Skip a PostgreSQL test when no server answers, but fail it in CI (``CI=true``), and
    fail it everywhere when a server answered and refused us."""
    if "state" not in _pg_state:
        _pg_state["state"] = _probe_postgres()
    kind, why = _pg_state["state"]
    verdict = postgres_verdict(kind, in_ci=os.environ.get("CI") == "true")
    if verdict == "skip":
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({why})")
    if verdict == "fail":
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} cannot be used ({kind}: {why})")


def postgres_verdict(kind: str, *, in_ci: bool) -> str:
    """What a PostgreSQL test does after the probe: run, skip (only when nothing listens,
    outside CI) or fail."""
    if kind == "ok":
        return "run"
    return "skip" if kind == "unreachable" and not in_ci else "fail"


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    import psycopg

    require_postgres()
    name = f"bt_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def make_project(folder: Path, project_id: str, name: str) -> Path:
    """A Bauplan project folder, as far as rehearsal mode can tell."""
    folder.mkdir(parents=True)
    (folder / "bauplan_project.yml").write_text(f"project:\n  id: {project_id}\n  name: {name}\n")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_config(tmp_path: Path, project_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A rehearsal-mode config with fast polling; overrides replace whole sections."""
    config: dict[str, Any] = {
        "service": {"state_dir": str(tmp_path / "state"), "listen": f"127.0.0.1:{free_port()}"},
        "bauplan": {
            "mode": "rehearse",
            "rehearse_seconds": 0.2,
            "poll_interval": 0.1,
            "poll_max_interval": 0.5,
            "retry_interval": 0.1,
        },
        "queue": {"polling_interval": 0.1, "notice_polling_interval": 0.1},
        "triggers": [
            {
                "name": "orders",
                "project_dir": str(project_dir),
                "branch": "orders_{run_date}",
                "inputs": ["run_date"],
                "parameters": {"run_date": "{run_date}", "source": "fire"},
            }
        ],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def make_settings(tmp_path: Path, backend: str | None, project_dir: Path, **overrides: Any) -> Any:
    from trigger.core.settings import build_settings

    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    return build_settings(
        base_config(tmp_path, project_dir, **overrides),
        config_path=tmp_path / "bauplan-trigger.toml",
        environ=env,
    )


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(to_toml(config))
    tomllib.loads(path.read_text())  # fail here, not in the service, on a bad fixture
    return path


def to_toml(data: dict[str, Any]) -> str:
    """Just enough TOML writing for test configs (tables, arrays of tables, scalars)."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list) or _inline(v)}
    for key, value in scalars.items():
        lines.append(f"{key} = {_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict) and not _inline(value):
            lines.append(f"\n[{key}]")
            lines.append(_table_body(value, key))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines.append(f"\n[[{key}]]")
                lines.append(_table_body(item, key))
    return "\n".join(lines) + "\n"


def _inline(value: Any) -> bool:
    return isinstance(value, list) and not (value and isinstance(value[0], dict))


def _table_body(table: dict[str, Any], prefix: str) -> str:
    lines = []
    nested = []
    for key, value in table.items():
        if isinstance(value, dict) and key not in ("parameters", "per_branch_limit", "headers"):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {_value(value)}")
    for key, value in nested:
        lines.append(f"[{prefix}.{key}]")
        lines.append(_table_body(value, f"{prefix}.{key}"))
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def wait_until(
    check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)
        last = check()
    return last


def final_run(enqueuer: Any, run_id: str, timeout: float = 90) -> dict[str, Any]:
    """Wait for a run to end; its record (``workflows.records.show_run``)."""
    from trigger.core.runstatus import FINAL_STATUSES
    from workflows.records import show_run

    return wait_until(
        lambda: (r := show_run(enqueuer.client, run_id))["status"] in FINAL_STATUSES and r,
        timeout=timeout,
        what=f"run {run_id} to finish",
    )


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BAUPLAN", "DBOS_"))}
    env.update(extra or {})
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trigger.cli", *args],
        capture_output=True,
        text=True,
        env=cli_env(env),
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


class ServeProcess:
    """``bauplan-trigger serve`` as a real subprocess, with its stderr in a file."""

    def __init__(self, config: Path, tmp_path: Path, env: dict[str, str], role: str = "all"):
        self.config = config
        self.env = env
        self.role = role
        self.log_path = tmp_path / f"serve-{role}-{id(self)}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> None:
        self.starts += 1
        before = len(self.log())
        handle = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=cli_env(self.env),
        )
        handle.close()
        if wait:
            # A restarted worker recovers its runs as DBOS launches, so an armed crash can
            # end it before it says it is serving: that counts as started (and died).
            wait_until(
                lambda: "serving role=" in self.log()[before:] or self.exited(),
                timeout=60,
                what=f"serve to start (log: {self.log()[-2000:]})",
            )

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "trigger.cli",
            "serve",
            "--config",
            str(self.config),
            "--role",
            self.role,
        ]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def match(event: Event, settings: Settings) -> list[RunRequest]:
    """The run requests a manual fire of ``event`` asks for, decided as ``fire`` does."""
    from trigger.core.matching import decide
    from trigger.sources.manual import manual_filter

    return [d.request for d in decide(event, settings, manual_filter) if d.request is not None]
