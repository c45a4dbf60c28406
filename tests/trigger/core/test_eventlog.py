"""The event log's own contract: lookups by any identity, pagination, retention."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import make_settings, wait_until
from trigger.core import db
from trigger.core.eventlog import EventLog, make_entry, record_event


@pytest.fixture
def open_log(tmp_path: Path, project_dir: Path) -> Iterator[Callable[..., EventLog]]:
    """Event logs on ``backend``; their engines are disposed even when a test fails, so
    no pooled connection is left for the garbage collector to find in a later test."""
    opened: list[EventLog] = []

    def open_(backend: str | None, days: float = 30) -> EventLog:
        settings = make_settings(tmp_path, backend, project_dir, events={"retention_days": days})
        settings.state_path.mkdir(parents=True, exist_ok=True)
        opened.append(EventLog(db.engine(settings.database_url()), days))
        return opened[-1]

    yield open_
    for log in opened:
        log.engine.dispose()


def test_events_are_found_by_any_identity_and_paged(
    open_log: Callable[..., EventLog], backend: str | None
) -> None:
    log = open_log(backend)
    for n in range(5):
        record_event(
            log,
            "github",
            f"d-{n}",
            "accepted",
            None,
            "10.0.0.1",
            [("orders", True, None, f"run:orders:d-{n}"), ("other", False, "repo differs", None)],
            attributes={"git_sha": f"sha{n}", "delivery_id": f"d-{n}", "raw": {"no": "dicts"}},
        )
    assert [e["event_id"] for e in log.find("sha3")] == ["d-3"]
    assert [e["event_id"] for e in log.find("run:orders:d-1")] == ["d-1"]
    found = log.find("d-2")[0]
    assert found["decisions"][1] == {
        "trigger": "other",
        "matched": False,
        "reason": "repo differs",
        "run_id": None,
    }
    assert "raw" not in found["attributes"]  # only plain values are kept
    page = log.recent(limit=2)
    assert [e["event_id"] for e in page] == ["d-4", "d-3"]
    following = log.recent(limit=2, before=page[-1]["seq"])
    assert [e["event_id"] for e in following] == ["d-2", "d-1"]
    assert log.totals() == [("github", "accepted", 5)]


def test_old_events_are_pruned_with_their_decisions_and_keys(
    open_log: Callable[..., EventLog], backend: str | None
) -> None:
    log = open_log(backend, days=1)
    old = time.time() - 2 * 86400
    record_event(
        log,
        "files",
        "old",
        "accepted",
        None,
        None,
        [("t", True, None, "run:t:old")],
        received_at=old,
    )
    record_event(log, "files", "new", "ignored", "no trigger matched", None)
    log.prune()  # recording already prunes, at most once an hour per process
    assert log.find("old") == [] and log.find("run:t:old") == []
    assert [e["event_id"] for e in log.recent()] == ["new"]


def test_entries_written_together_each_get_their_own_row_in_order(
    open_log: Callable[..., EventLog], backend: str | None
) -> None:
    log = open_log(backend)
    futures = [
        log.submit(
            make_entry(
                source="github",
                event_id=f"burst-{n}",
                outcome="accepted",
                decisions=[("orders", True, None, f"run:orders:burst-{n}")],
            )
        )
        for n in range(40)
    ]
    seqs = [f.result(timeout=30) for f in futures]
    assert seqs == sorted(seqs) and len(set(seqs)) == 40
    for n, seq in enumerate(seqs):
        entry = log.get(seq)
        assert entry is not None and entry["event_id"] == f"burst-{n}"
        assert entry["decisions"][0]["run_id"] == f"run:orders:burst-{n}"
        assert [e["seq"] for e in log.find(f"run:orders:burst-{n}")] == [seq]


def test_a_failed_group_fails_every_waiter_and_the_writer_keeps_going(
    open_log: Callable[..., EventLog], backend: str | None
) -> None:
    log = open_log(backend)
    broken = make_entry(source="github", event_id="bad", outcome="ignored")
    broken.outcome = None  # type: ignore[assignment]  (violates NOT NULL on both databases)
    with pytest.raises(sa.exc.IntegrityError):
        log.submit(broken).result(timeout=30)
    assert log.record(source="github", event_id="after", outcome="accepted") > 0
    assert [e["event_id"] for e in log.recent()] == ["after"]


def test_the_writer_thread_stops_when_idle_and_starts_again(
    open_log: Callable[..., EventLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    import trigger.core.batch as batch

    monkeypatch.setattr(batch, "_IDLE_SECONDS", 0.2)
    log = open_log(None)
    log.record(source="manual", event_id="one", outcome="accepted")
    wait_until(
        lambda: not any(t.name == "event-log-writer" for t in threading.enumerate()),
        timeout=10,
        what="the idle writer thread to stop",
    )
    assert log.record(source="manual", event_id="two", outcome="accepted") > 0


def test_a_duplicate_names_when_its_event_was_first_accepted(
    open_log: Callable[..., EventLog], backend: str | None
) -> None:
    log = open_log(backend)
    first = time.time() - 3600  # within the retention, so pruning keeps it
    log.record(source="github", event_id="gh-1", outcome="accepted", received_at=first)
    seq = log.record(
        source="github",
        event_id="gh-1",
        outcome="duplicate",
        reason="duplicate of event gh-1: it was received before",
        duplicate_of="gh-1",
    )
    entry = log.get(seq)
    assert entry is not None
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(first))
    assert entry["reason"] == f"duplicate of event gh-1 first received {stamp} UTC"


def test_a_new_process_prunes_on_its_first_write_however_long_the_host_has_been_up(
    open_log: Callable[..., EventLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    import trigger.core.eventlog

    # The event log's clock on a host booted seconds ago (wait_until keeps the real one).
    booted = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    fresh_host = types.SimpleNamespace(**{**booted, "monotonic": lambda: 5.0})
    monkeypatch.setattr(trigger.core.eventlog, "time", fresh_host)
    log = open_log(None, days=1)
    log.record(
        source="files", event_id="stale", outcome="accepted", received_at=time.time() - 2 * 86400
    )
    # The writer prunes right after the group that carried the entry is committed.
    wait_until(lambda: log.find("stale") == [], timeout=10, what="the first write to prune")
