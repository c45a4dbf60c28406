"""File drops end to end on real DBOS (SQLite and PostgreSQL) with the rehearsal client:
each finished file version is exactly one run, counted in the rehearsal ledger."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import wait_until
from tests.trigger.sources.files.support import WatcherThread, files_trigger
from workflows.bauplan.rehearsal import Ledger
from workflows.records import list_runs, show_run
from workflows.runtime import ledger_path

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def dropping(launched: Any, project_dir: Path, landing: Path) -> Iterator[Any]:
    """DBOS launched in-process plus a watcher thread enqueuing through DBOSClient."""
    threads: list[WatcherThread] = []
    state: dict[str, Any] = {}

    def start(
        bauplan: dict[str, Any] | None = None, queue: dict[str, Any] | None = None, **files: Any
    ) -> tuple[Any, Any, Ledger]:
        if "settings" not in state:
            state["settings"], state["enqueuer"] = launched(
                triggers=[files_trigger(project_dir, landing, **files)],
                bauplan={"rehearse_seconds": 0.0, **(bauplan or {})},
                queue={"polling_interval": 0.1, **(queue or {})},
            )
        settings, enqueuer = state["settings"], state["enqueuer"]
        thread = WatcherThread(settings, enqueuer).start()
        threads.append(thread)
        return thread, enqueuer, Ledger(ledger_path(settings))

    yield start
    for thread in threads:
        thread.stop()


def _finished(enqueuer: Any, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        runs = list_runs(enqueuer.client, trigger="landing", limit=100_000)
        done = [r for r in runs if r["status"] in FINAL]
        return runs if len(runs) == count and len(done) == count else None

    return wait_until(check, timeout=timeout, interval=0.5, what=f"{count} finished runs")


def test_one_file_is_one_run_with_the_file_parameters(dropping: Any, landing: Path) -> None:
    _, enqueuer, ledger = dropping()
    path = landing / "orders_2026-11-23.csv"
    path.write_text("id,qty\n1,2\n")
    [run] = _finished(enqueuer, 1)
    assert run["status"] == "succeeded"
    assert run["branch"] == "rehearsal.landing_orders_2026_11_23"
    [job] = ledger.jobs()
    assert job["parameters"] == {
        "source_file": str(path),
        "rel": "orders_2026-11-23.csv",
        "size": str(len("id,qty\n1,2\n")),
        "ext": "csv",
    }
    shown = show_run(enqueuer.client, run["id"])
    assert shown["event"]["file_name"] == "orders_2026-11-23.csv"
    assert path.exists()  # after = "leave"
    # The drop is in the event log, found by its path, and the watcher reports its scans.
    from trigger.core.eventlog import event_log
    from trigger.ops.explain import explain

    story = explain(str(path), event_log(enqueuer.settings), enqueuer.client, enqueuer.settings)
    assert [e["outcome"] for e in story["events"]] == ["accepted"]
    assert [r["id"] for r in story["runs"]] == [run["id"]]
    assert "files:landing" in event_log(enqueuer.settings).heartbeats()


def test_a_file_written_in_two_halves_runs_once_with_its_final_size(
    dropping: Any, landing: Path
) -> None:
    thread, enqueuer, ledger = dropping(settle_seconds=1.0)
    path = landing / "big.csv"
    with path.open("w") as handle:
        handle.write("a" * 5000)
        handle.flush()
        # The writer pauses for less than the settle window, then finishes.
        wait_until(lambda: thread.watcher.tracker.is_pending("big.csv"), what="first half seen")
        handle.write("b" * 5000)
    [run] = _finished(enqueuer, 1)
    assert run["status"] == "succeeded"
    [job] = ledger.jobs()
    assert job["parameters"]["size"] == "10000"


@pytest.mark.slow
def test_a_thousand_files_dropped_at_once_are_a_thousand_runs(dropping: Any, landing: Path) -> None:
    # A bounded worker, as in production: the rehearsal ledger is one SQLite file.
    thread, enqueuer, ledger = dropping(settle_seconds=0.2, queue={"worker_concurrency": 16})
    staging = landing.parent / "staging"
    staging.mkdir()
    for n in range(1000):
        (staging / f"f{n:04d}.csv").write_text(str(n))
    for n in range(1000):
        os.rename(staging / f"f{n:04d}.csv", landing / f"f{n:04d}.csv")
    runs = _finished(enqueuer, 1000, timeout=280)
    assert {r["status"] for r in runs} == {"succeeded"}
    jobs = ledger.jobs()
    assert len(jobs) == 1000
    assert len({j["parameters"]["rel"] for j in jobs}) == 1000
    assert thread.watcher.counts["enqueued"] == 1000


def test_files_dropped_while_stopped_run_at_start_and_a_restart_reruns_nothing(
    dropping: Any, landing: Path
) -> None:
    for n in range(5):
        (landing / f"early{n}.csv").write_text(str(n))
    first, enqueuer, ledger = dropping()
    _finished(enqueuer, 5)
    first.stop()
    second, _, _ = dropping()
    wait_until(lambda: second.watcher.counts["duplicates"] == 5, what="5 re-offers")
    assert second.watcher.counts["enqueued"] == 0
    assert len(ledger.jobs()) == 5
    assert len(list_runs(enqueuer.client, trigger="landing")) == 5


def test_after_move_sorts_files_by_outcome_without_overwriting(
    dropping: Any, landing: Path
) -> None:
    _, enqueuer, _ = dropping(after="move")
    (landing / "processed").mkdir()
    (landing / "processed" / "a.csv").write_text("an older a.csv")
    (landing / "a.csv").write_text("new")
    [run] = _finished(enqueuer, 1)
    assert run["status"] == "succeeded"
    moved = sorted(p.name for p in (landing / "processed").iterdir())
    assert len(moved) == 2 and "a.csv" in moved
    assert (landing / "processed" / "a.csv").read_text() == "an older a.csv"
    other = next(name for name in moved if name != "a.csv")
    assert other.startswith("a.") and other.endswith(".csv")
    assert not (landing / "a.csv").exists()


def test_a_failed_run_moves_its_file_to_failed(dropping: Any, landing: Path) -> None:
    _, enqueuer, _ = dropping(after="move", bauplan={"rehearse_outcome": "fail"})
    (landing / "bad.csv").write_text("x")
    [run] = _finished(enqueuer, 1)
    assert run["status"] == "failed"
    assert (landing / "failed" / "bad.csv").read_text() == "x"


def test_a_file_that_vanishes_before_its_run_starts_fails_the_run_clearly(
    dropping: Any, landing: Path
) -> None:
    # One branch for all files: the second run waits while the first one runs.
    _, enqueuer, ledger = dropping(branch="landing", bauplan={"rehearse_seconds": 3.0})
    (landing / "first.csv").write_text("1")
    wait_until(
        lambda: any(r["status"] == "running" for r in list_runs(enqueuer.client)),
        what="the first run to start",
    )
    (landing / "second.csv").write_text("2")
    waiting = wait_until(
        lambda: [r for r in list_runs(enqueuer.client) if r["status"] == "waiting"],
        what="the second run to be queued",
    )
    (landing / "second.csv").unlink()
    runs = {r["id"]: r for r in _finished(enqueuer, 2)}
    gone = runs[waiting[0]["id"]]
    assert gone["status"] == "failed"
    assert "second.csv" in gone["error"] and "is gone" in gone["error"]
    assert len(ledger.jobs()) == 1  # nothing submitted for the vanished file
