"""The event log's own contract: lookups by any identity, pagination, retention."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import make_settings
from trigger.eventlog import EventLog, _make_engine, record_event


def _log(tmp_path: Path, backend: str | None, project_dir: Path, days: float = 30) -> EventLog:
    settings = make_settings(tmp_path, backend, project_dir, events={"retention_days": days})
    settings.state_path.mkdir(parents=True, exist_ok=True)
    return EventLog(_make_engine(settings.database_url()), days)


def test_events_are_found_by_any_identity_and_paged(
    tmp_path: Path, backend: str | None, project_dir: Path
) -> None:
    log = _log(tmp_path, backend, project_dir)
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
    assert log.counts() == [("github", "accepted", 5)]
    log.engine.dispose()


def test_old_events_are_pruned_with_their_decisions_and_keys(
    tmp_path: Path, backend: str | None, project_dir: Path
) -> None:
    log = _log(tmp_path, backend, project_dir, days=1)
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
    log.engine.dispose()
