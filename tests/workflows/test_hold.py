"""The exclusive hold on an executor id: one live holder, named to whoever is refused,
and gone the moment its process is, however it ends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import PG_ADMIN_URL, base_config, wait_until
from trigger.core.errors import ExecutorHeldError
from trigger.core.settings import build_settings
from workflows import hold
from workflows.store import Store

EXECUTOR = "host-worker-w1"

_HOLDER = """
import json, sys
from trigger.core.settings import build_settings
from workflows import hold
data, env, executor = json.loads(sys.argv[1])
hold.take(build_settings(data, environ=env), executor)
print("held", flush=True)
sys.stdin.read()  # hold until the test kills this process or closes our stdin
"""


@pytest.fixture
def settings_data(tmp_path: Path, backend: str | None, project_dir: Path) -> tuple[Any, Any]:
    data = base_config(tmp_path, project_dir)
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    return data, env


@pytest.fixture
def settings(settings_data: tuple[Any, Any]) -> Any:
    data, env = settings_data
    return build_settings(data, environ=env)


def _held_by(settings: Any, executor: str = EXECUTOR) -> hold.Holder | None:
    store = Store(settings.database_url(), create_database=True)
    try:
        return hold.held_by(settings, store.engine, executor)
    finally:
        store.close()


def test_a_second_take_is_refused_naming_the_holder_until_the_first_is_released(
    settings: Any,
) -> None:
    first = hold.take(settings, EXECUTOR)
    try:
        with pytest.raises(ExecutorHeldError) as refused:
            hold.take(settings, EXECUTOR)
        message = str(refused.value)
        assert f"executor id {EXECUTOR!r} is held by a live process (pid {os.getpid()} " in message
        assert f"on host {socket.gethostname()}, since 20" in message
        assert "[service] name" in message and "--role" in message
        holder = _held_by(settings)
        assert holder is not None and holder.pid == os.getpid()
        other = hold.take(settings, "host-worker-w2")  # another executor id is free
        other.release()
    finally:
        first.release()
    assert _held_by(settings) is None
    hold.take(settings, EXECUTOR).release()


def test_a_holder_killed_with_kill_9_frees_the_executor_id_at_once(
    settings_data: tuple[Any, Any], settings: Any
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, json.dumps([*settings_data, EXECUTOR])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ExecutorHeldError, match=f"pid {holder.pid} "):
            hold.take(settings, EXECUTOR)
        holder.kill()
        holder.wait(timeout=30)
        # The server ends the session when its socket closes; no waiting out a timeout.
        taken = wait_until(lambda: _try_take(settings), timeout=5, what="the hold to be free")
        taken.release()
    finally:
        holder.kill()
        holder.wait(timeout=30)
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()


def _try_take(settings: Any) -> hold.Hold | None:
    try:
        return hold.take(settings, EXECUTOR)
    except ExecutorHeldError:
        return None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_lock_file_left_by_a_dead_process_does_not_block_a_restart(settings: Any) -> None:
    path = hold.lock_path(settings, EXECUTOR)
    assert path.parent == settings.state_path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": 999999, "since": 1.0}))
    taken = hold.take(settings, EXECUTOR)
    try:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        taken.release()


@pytest.fixture
def new_database(backend: str) -> Any:
    """The URL of a PostgreSQL database that does not exist yet; dropped afterwards."""
    import psycopg

    name = f"bt_new_{uuid.uuid4().hex[:12]}"
    yield backend.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_two_takes_at_once_on_a_database_not_created_yet_one_holds_one_is_told_who(
    tmp_path: Path, project_dir: Path, new_database: str
) -> None:
    settings = build_settings(
        base_config(tmp_path, project_dir), environ={"DBOS_SYSTEM_DATABASE_URL": new_database}
    )
    start = threading.Barrier(2)
    outcomes: list[Any] = []

    def contend() -> None:
        start.wait()
        try:
            outcomes.append(hold.take(settings, EXECUTOR))
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=contend) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        refusals = [o for o in outcomes if isinstance(o, Exception)]
        assert len(outcomes) == 2 and len(refusals) == 1
        assert isinstance(refusals[0], ExecutorHeldError)
        assert f"pid {os.getpid()} on host" in str(refusals[0])
    finally:
        for outcome in outcomes:
            if not isinstance(outcome, Exception):
                outcome.release()


def _cut_session(settings: Any, executor: str = EXECUTOR) -> None:
    """What a database restart or a network cut does to the holder's session."""
    engine = sa.create_engine(settings.database_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            backend = conn.execute(
                sa.text("SELECT backend_pid FROM bt_holds WHERE executor_id = :e"),
                {"e": executor},
            ).scalar()
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": backend}).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_hold_that_lost_its_session_takes_it_again_unless_another_process_did(
    settings: Any,
) -> None:
    first = hold.take(settings, EXECUTOR)
    try:
        _cut_session(settings)
        wait_until(lambda: _held_by(settings) is None, timeout=10, what="the session to end")
        assert first.check()
        assert _held_by(settings) is not None
        with pytest.raises(ExecutorHeldError):
            hold.take(settings, EXECUTOR)

        _cut_session(settings)
        wait_until(lambda: _held_by(settings) is None, timeout=10, what="the session to end")
        second = hold.take(settings, EXECUTOR)
        try:
            assert not first.check()
        finally:
            second.release()
    finally:
        first.release()
