"""Whether any worker is alive, read from the executor heartbeats."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import make_settings
from workflows import workers
from workflows.app import prepare_database
from workflows.executors import beat
from workflows.store import Store


def test_a_worker_counts_as_alive_while_its_heartbeat_is_recent(
    tmp_path: Path, backend: str | None, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, backend, project_dir)
    prepare_database(settings)
    store = Store(settings.database_url())
    window = workers.seen_within(settings)
    try:
        assert workers.absent(settings) == "no worker has ever run on this system database"
        beat(store.engine, "host-worker-w1", now=time.time() - 90)
        assert workers.absent(settings) == (
            f"no worker has sent a heartbeat in the last {window:g}s (the last was "
            "host-worker-w1, 1m ago)"
        )
        beat(store.engine, "host-all-main", now=time.time() - window / 2)
        assert workers.absent(settings) is None
    finally:
        store.close()


def test_lately_is_a_few_heartbeat_intervals(tmp_path: Path, project_dir: Path) -> None:
    default = make_settings(tmp_path, None, project_dir)
    quick = make_settings(tmp_path, None, project_dir, queue={"takeover_after_seconds": 8})
    assert workers.seen_within(default) == 15.0  # beats every 5 s
    assert workers.seen_within(quick) == 6.0  # beats every 2 s, a quarter of the takeover
