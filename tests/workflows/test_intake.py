"""The ingest writer on both databases: events and their runs, committed together.

No worker runs here: what matters is what one commit leaves in the system database
(the DBOS workflows and the event log), read back through DBOS and the log.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.workflows.flow_support import orders_trigger
from trigger.core.batch import Abandoned, Ticket
from trigger.core.event import Event, manual_event
from trigger.core.eventlog import event_log
from trigger.core.matching import decide
from trigger.sources.manual import manual_filter
from workflows.app import prepare_database
from workflows.intake import Enqueuer, Intake, Taken
from workflows.queue import RUN_WORKFLOW


@pytest.fixture
def enqueuer(settings_factory: Any, project_dir: Path) -> Iterator[Enqueuer]:
    settings = settings_factory(
        triggers=[
            orders_trigger(project_dir),
            {
                "name": "latest",
                "project_dir": str(project_dir),
                "branch": "latest",
                "on_burst": "latest",
            },
        ]
    )
    prepare_database(settings)
    # One writer thread, so what is handed over while it is held forms the next group.
    made = Enqueuer(settings, writers=1)
    yield made
    made.close()


def _intake(enqueuer: Enqueuer, event: Event) -> Intake:
    decisions = decide(event, enqueuer.settings, manual_filter)
    requests = [d.request for d in decisions if d.request is not None]
    return Intake(event, decisions, requests)


def _fire(trigger: str, event_id: str, **inputs: str) -> Event:
    return manual_event(trigger, inputs, event_id=event_id)


def _workflows(enqueuer: Enqueuer) -> dict[str, str]:
    rows = enqueuer.client.list_workflows(name=RUN_WORKFLOW, load_input=False)
    return {row.workflow_id: str(row.status) for row in rows}


def _logged(enqueuer: Enqueuer, event_id: str) -> list[str]:
    log = event_log(enqueuer.engine)
    return [e["outcome"] for e in log.find(event_id) if e["event_id"] == event_id]


@contextlib.contextmanager
def _commits(enqueuer: Enqueuer) -> Iterator[list[int]]:
    """Counts the writer's commits while the block runs."""
    seen: list[int] = []

    def on_commit(_conn: Any) -> None:
        seen.append(1)

    sa.event.listen(enqueuer.engine, "commit", on_commit)
    try:
        yield seen
    finally:
        sa.event.remove(enqueuer.engine, "commit", on_commit)


class Hold:
    def __init__(self) -> None:
        self.release = threading.Event()
        self.reached = threading.Event()

    def set(self) -> None:
        self.release.set()

    def wait_reached(self) -> None:
        assert self.reached.wait(60), "the writer never reached the held statement"


@contextlib.contextmanager
def _held_at(enqueuer: Enqueuer, statement: str) -> Iterator[Hold]:
    """Stops the writer at its first statement starting with ``statement`` until
    released: what is handed over meanwhile waits for the next group."""
    hold = Hold()
    release, reached = hold.release, hold.reached

    def before(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if sql.lstrip().upper().startswith(statement) and not reached.is_set():
            reached.set()
            release.wait(60)

    sa.event.listen(enqueuer.engine, "before_cursor_execute", before)
    try:
        yield hold
    finally:
        release.set()
        sa.event.remove(enqueuer.engine, "before_cursor_execute", before)


def _one_group(enqueuer: Enqueuer, *intakes: Intake) -> list[Ticket[Intake, Taken]]:
    """Hands ``intakes`` over while the writer is held on a lead event that starts
    nothing, so they are taken together, as one group in one commit."""
    with _held_at(enqueuer, "SELECT") as hold:
        enqueuer.submit(_intake(enqueuer, _fire("nobody", f"lead-{uuid.uuid4().hex}")))
        hold.wait_reached()
        return [enqueuer.submit(intake) for intake in intakes]


def test_a_burst_of_events_is_logged_and_enqueued_in_one_commit(enqueuer: Enqueuer) -> None:
    with _commits(enqueuer) as commits, _held_at(enqueuer, "SELECT") as release:
        # The writer takes this one alone and is held inside its transaction...
        lead = enqueuer.submit(_intake(enqueuer, _fire("orders", "lead", run_date="d0")))
        # ...while these gather for the next group.
        burst = [
            enqueuer.submit(_intake(enqueuer, _fire("orders", f"e{n}", run_date=f"d{n}")))
            for n in range(1, 21)
        ]
        release.set()
        taken = [ticket.result(60) for ticket in burst]
    assert lead.result().outcome == "accepted"
    assert [t.outcome for t in taken] == ["accepted"] * 20
    assert len(commits) == 2, "the 20 events that waited together share one commit"
    runs = _workflows(enqueuer)
    for n, t in enumerate(taken, start=1):
        [run] = t.runs
        assert runs[run.run_id] == "ENQUEUED"
        assert _logged(enqueuer, f"e{n}") == ["accepted"]


def test_a_run_that_exists_already_is_a_duplicate_and_the_others_in_its_commit_go_on(
    enqueuer: Enqueuer,
) -> None:
    taken_before = enqueuer.take(_intake(enqueuer, _fire("orders", "x", run_date="d1")))
    [existing] = taken_before.runs
    # A new event whose run id is that run's: only the enqueue can tell.
    twin = _intake(enqueuer, _fire("orders", "x", run_date="d1"))
    twin.event = _fire("orders", "y", run_date="d1")
    tickets = _one_group(
        enqueuer,
        _intake(enqueuer, _fire("orders", "before", run_date="d2")),
        twin,
        _intake(enqueuer, _fire("orders", "after", run_date="d3")),
    )
    before, dup, after = (t.result(60) for t in tickets)
    assert (before.outcome, dup.outcome, after.outcome) == ("accepted", "duplicate", "accepted")
    assert dup.runs[0].run_id == existing.run_id and dup.runs[0].duplicate
    assert _logged(enqueuer, "y") == ["duplicate"]
    assert len(_workflows(enqueuer)) == 3


def test_a_redelivery_is_a_duplicate_whatever_it_decided_the_first_time(
    enqueuer: Enqueuer,
) -> None:
    nothing = _fire("nobody", "n1")  # fired for a trigger that does not exist: no run
    assert enqueuer.take(_intake(enqueuer, nothing)).outcome == "ignored"
    again = enqueuer.take(_intake(enqueuer, nothing))
    assert (again.outcome, again.runs) == ("duplicate", [])
    assert _logged(enqueuer, "n1") == ["ignored", "duplicate"]
    # Two deliveries of one new event in the same commit: the second is the duplicate.
    twice = _fire("orders", "twice", run_date="d9")
    pair = _one_group(enqueuer, _intake(enqueuer, twice), _intake(enqueuer, twice))
    outcomes = [t.result(60).outcome for t in pair]
    assert outcomes == ["accepted", "duplicate"]
    assert len(_workflows(enqueuer)) == 1


def test_an_event_given_up_on_before_its_commit_leaves_nothing_behind(
    enqueuer: Enqueuer,
) -> None:
    # The writer stops after enqueueing, at the event rows' insert, with both events in.
    with _held_at(enqueuer, "INSERT INTO BT_EVENTS") as release:
        kept = enqueuer.submit(_intake(enqueuer, _fire("orders", "kept", run_date="d1")))
        gone = enqueuer.submit(_intake(enqueuer, _fire("orders", "gone", run_date="d2")))
        with pytest.raises(Abandoned):
            gone.result(0.5)
        release.set()
        assert kept.result(60).outcome == "accepted"
    assert list(_workflows(enqueuer)) == [kept.result().runs[0].run_id]
    assert _logged(enqueuer, "gone") == []
    # The sender's retry is then the first attempt.
    retry = enqueuer.take(_intake(enqueuer, _fire("orders", "gone", run_date="d2")))
    assert retry.outcome == "accepted"


def test_a_newer_event_of_a_latest_trigger_retires_the_waiting_one_in_the_same_commit(
    enqueuer: Enqueuer,
) -> None:
    older = enqueuer.take(_intake(enqueuer, _fire("latest", "l1"))).runs[0].run_id
    tickets = _one_group(enqueuer, *(_intake(enqueuer, _fire("latest", f"l{n}")) for n in (2, 3)))
    middle, newest = (t.result(60).runs[0].run_id for t in tickets)
    assert _workflows(enqueuer) == {older: "CANCELLED", middle: "CANCELLED", newest: "ENQUEUED"}
    [row] = enqueuer.client.list_workflows(workflow_ids=[middle], load_input=False)
    assert row.attributes is not None
    assert (row.attributes["superseded_by"], row.attributes["outcome"]) == (newest, "superseded")


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_run_the_database_refuses_fails_alone_and_the_rest_of_its_commit_goes_on(
    enqueuer: Enqueuer,
) -> None:
    bad = _intake(enqueuer, _fire("orders", "bad", run_date="d2"))
    # PostgreSQL's jsonb cannot hold NUL (the run's attributes name its event): that
    # one insert fails with an SQL error.
    bad.requests = [replace(bad.requests[0], event_id="b\x00d")]
    tickets = _one_group(
        enqueuer,
        _intake(enqueuer, _fire("orders", "good1", run_date="d1")),
        bad,
        _intake(enqueuer, _fire("orders", "good2", run_date="d3")),
    )
    first, last = tickets[0].result(60), tickets[2].result(60)
    with pytest.raises(sa.exc.DataError):
        tickets[1].result(60)
    assert (first.outcome, last.outcome) == ("accepted", "accepted")
    assert sorted(_workflows(enqueuer)) == sorted([first.runs[0].run_id, last.runs[0].run_id])
    assert _logged(enqueuer, "bad") == []
