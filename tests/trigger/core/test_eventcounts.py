"""The event totals are counters: every logged event raises them once, pruning the
log lowers nothing, and a database whose log predates them starts from that log."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support import make_settings
from trigger.core import db
from trigger.core.eventlog import EventLog, record_event

_TOTALS_IN_A_NEW_PROCESS = """
import json, sys
from trigger.core import db
from trigger.core.eventlog import EventLog
engine = db.engine(sys.argv[1])
print(json.dumps(EventLog(engine).totals()))
engine.dispose()
"""


@pytest.fixture
def log(tmp_path: Path, project_dir: Path, backend: str | None) -> Iterator[EventLog]:
    settings = make_settings(tmp_path, backend, project_dir, events={"retention_days": 1})
    settings.state_path.mkdir(parents=True, exist_ok=True)
    opened = EventLog(db.engine(settings.database_url()), 1)
    yield opened
    opened.engine.dispose()


def _totals_in_a_new_process(log: EventLog) -> list[list[object]]:
    url = log.engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-c", _TOTALS_IN_A_NEW_PROCESS, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found: list[list[object]] = json.loads(done.stdout)
    return found


_WRITE_IN_A_NEW_PROCESS = """
import sys
from trigger.core import db
from trigger.core.eventlog import EventLog, record_event
engine = db.engine(sys.argv[1])
log = EventLog(engine)
for n in range(40):
    record_event(log, "github", f"{sys.argv[2]}-{n}", "accepted")
engine.dispose()
"""


def test_pruning_the_log_lowers_no_total(log: EventLog) -> None:
    long_ago = time.time() - 3 * 86400
    record_event(log, "files", "old", "accepted", received_at=long_ago)
    record_event(log, "files", "new", "accepted")
    record_event(log, "github", "bad", "rejected", "bad signature")
    log.prune()  # (writing prunes too, at most once an hour)
    assert log.find("old") == []
    assert log.totals() == [("files", "accepted", 2), ("github", "rejected", 1)]


def test_a_new_process_reads_the_same_totals_and_adds_nothing(log: EventLog) -> None:
    for n in range(3):
        record_event(log, "manual", f"m{n}", "accepted")
    assert _totals_in_a_new_process(log) == [["manual", "accepted", 3]]
    assert _totals_in_a_new_process(log) == [["manual", "accepted", 3]]


def test_writers_in_many_threads_count_every_event_once(log: EventLog) -> None:
    def write(thread: int) -> None:
        for n in range(20):
            record_event(log, "github", f"t{thread}-{n}", "ignored", "no trigger matched")

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.totals() == [("github", "ignored", 80)]


def test_a_log_from_before_the_totals_is_counted_once_on_upgrade(log: EventLog) -> None:
    record_event(log, "github", "d1", "accepted")
    record_event(log, "github", "d2", "duplicate")
    with log.engine.begin() as conn:  # as an older version left the database
        on = "" if conn.dialect.name == "sqlite" else " ON bt_events"
        conn.execute(sa.text(f"DROP TRIGGER bt_events_counted{on}"))
        conn.execute(sa.text("DROP TABLE bt_event_counts"))
    assert _totals_in_a_new_process(log) == [["github", "accepted", 1], ["github", "duplicate", 1]]
    assert _totals_in_a_new_process(log) == [["github", "accepted", 1], ["github", "duplicate", 1]]


def test_writers_in_two_processes_at_once_count_every_event_once(log: EventLog) -> None:
    url = log.engine.url.render_as_string(hide_password=False)
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITE_IN_A_NEW_PROCESS, url, name])
        for name in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    assert log.totals() == [("github", "accepted", 80)]
