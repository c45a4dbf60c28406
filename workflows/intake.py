"""The ingest writer: an event's log rows and its runs, committed in one transaction.

Every source hands an :class:`Intake` (the event, every trigger's verdict, the run
requests) to the process's :class:`Enqueuer`. Its writer thread takes the intakes
that arrived together and, in one transaction on the system database:

1. finds which events were received before (a redelivery is a ``duplicate``,
   whatever it decided the first time, and enqueues nothing);
2. enqueues each new run with ``DBOSClient.enqueue_in_transaction``; a run whose
   workflow id exists is a duplicate (DBOS answers it without an SQL error, so this
   needs no savepoint); coalescing (``workflows.coalesce``) retires older runs in
   the same transaction. If anything in the group fails, the group is written again
   with a savepoint per event and per run, so only what failed fails;
3. inserts the event rows, verdicts and lookup keys (``trigger.core.eventlog``).

The caller hears back only after the commit, so an event is logged if and only if
its runs are enqueued, and one commit covers a whole burst. A caller that gives up
(``enqueue_timeout``) leaves nothing behind (``trigger.core.batch``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
import sqlalchemy.exc
from dbos import DBOSClient

from trigger.core import db
from trigger.core.batch import Abandoned, GroupCommit, Ticket
from trigger.core.errors import EnqueueUnavailableError
from trigger.core.event import Event
from trigger.core.eventlog import Outcome, dispatch_entry, event_log
from trigger.core.eventlog_store import Entry, ensure_tables, events_table, write_batch
from trigger.core.logfields import ids
from trigger.core.matching import Decision, RunRequest
from trigger.core.settings import Settings
from trigger.core.settings.flow import coalesces
from workflows import coalesce
from workflows.branch_flow import spec_for
from workflows.dbos_compat import DBOSWorkflowIDInUseError, WorkflowTable
from workflows.queue import RUN_WORKFLOW, Enqueued, UsernameCache, enqueue_options
from workflows.steps.branch import user_branch

log = logging.getLogger(__name__)

# An event is "received before" once the log holds it as having passed verification.
_RECEIVED = ("accepted", "duplicate", "ignored")


@dataclass
class Intake:
    """One event and what it asks for; ``event`` is None for runs that are not an
    event of their own (an operator's retry, which the control log records)."""

    event: Event | None
    decisions: list[Decision] = field(default_factory=list)
    requests: list[RunRequest] = field(default_factory=list)
    source_addr: str | None = None
    # Log an event that starts nothing new (ignored, or a duplicate)? A folder rescan
    # offers every file again: only a new run is news there.
    log_idle: bool = True
    # The caller logs its own line (a webhook's delivery line); ours goes to debug.
    quiet: bool = False
    # Why an event that no trigger was asked about starts nothing (a webhook's event
    # kind that starts no runs), for its log entry.
    ignored_because: str | None = None


@dataclass(frozen=True)
class Taken:
    """What became of an intake, once committed."""

    outcome: Outcome  # accepted, duplicate or ignored
    runs: list[Enqueued]
    seq: int | None  # its event row, when one was written
    entry: Entry | None = None
    # Parked runs this intake superseded: woken once the transaction commits.
    woken: tuple[str, ...] = ()

    @property
    def new_runs(self) -> list[Enqueued]:
        return [r for r in self.runs if not r.duplicate]


class Enqueuer:
    """The process's hand-over to the queue: a ``DBOSClient`` and the ingest writer."""

    def __init__(
        self, settings: Settings, client: DBOSClient | None = None, *, writers: int | None = None
    ) -> None:
        """``writers``: group-commit threads on PostgreSQL (default ``db.WRITER_THREADS``;
        SQLite has one writer at a time, so one thread)."""
        self.settings = settings
        url = settings.database_url()
        # Fail fast when the database is gone (DBOS would otherwise block for minutes):
        # a webhook sender needs its 503 within seconds to retry.
        self.client = client or DBOSClient(system_database_url=url, retry_connection_errors=False)
        self.usernames = UsernameCache(settings)
        threads = 1 if db.is_sqlite(url) else writers or db.WRITER_THREADS
        self.engine = db.writer(url, threads)
        ensure_tables(self.engine)
        self._table = WorkflowTable(self.client)
        self._log = event_log(url, settings.events.retention_days)
        self._writer: GroupCommit[Intake, Taken] = GroupCommit(
            self.engine,
            self._write,
            name="ingest-writer",
            careful=self._write_guarded,
            after_write=self._written,
            threads=threads,
        )

    def close(self) -> None:
        self.client.destroy()
        self.engine.dispose()

    def submit(self, intake: Intake) -> Ticket[Intake, Taken]:
        return self._writer.submit(intake)

    def take(self, intake: Intake, timeout: float | None = None) -> Taken:
        """Hand ``intake`` over and wait for its commit (see :func:`unavailable`)."""
        try:
            return self.submit(intake).result(timeout)
        except Exception as exc:
            raise unavailable(exc) from None

    async def take_async(self, intake: Intake, timeout: float | None = None) -> Taken:
        try:
            return await self.submit(intake).wait(timeout)
        except Exception as exc:
            raise unavailable(exc) from None

    def enqueue(self, request: RunRequest, *, quiet: bool = False) -> Enqueued:
        """One run with no event of its own (a retry), through the same writer."""
        return self.take(Intake(None, requests=[request], quiet=quiet)).runs[0]

    # -- the writer thread ----------------------------------------------------------

    def _write(
        self, conn: sa.Connection, intakes: Sequence[Intake], *, guarded: bool = False
    ) -> list[Taken | Exception]:
        """The group's transaction. First unguarded: DBOS answers an existing workflow id
        without an SQL error, so a duplicate needs no savepoint, and any failure fails
        the attempt; the writer then calls :meth:`_write_guarded`."""
        runs = coalesce.Runs(conn, self._table, RUN_WORKFLOW)
        username = self.usernames.get()
        branches = {
            r.run_id: user_branch(username, r.branch_suffix) for i in intakes for r in i.requests
        }
        runs.take_turns(
            [
                (r.trigger, branches[r.run_id])
                for i in intakes
                for r in i.requests
                if _coalesces(self.settings, r)
            ]
        )
        seen = _received(conn, [i.event.id for i in intakes if i.event is not None])
        outcomes = self._each(conn, runs, intakes, branches, seen, guarded=guarded)
        logged = [(n, t.entry) for n, t in enumerate(outcomes) if isinstance(t, Taken) and t.entry]
        seqs = write_batch(conn, [entry for _, entry in logged])
        for (n, _entry), seq in zip(logged, seqs, strict=True):
            done = outcomes[n]
            assert isinstance(done, Taken)
            outcomes[n] = replace(done, seq=seq)
        return outcomes

    def _write_guarded(
        self, conn: sa.Connection, intakes: Sequence[Intake]
    ) -> list[Taken | Exception]:
        return self._write(conn, intakes, guarded=True)

    def _each(
        self,
        conn: sa.Connection,
        runs: coalesce.Runs,
        intakes: Sequence[Intake],
        branches: dict[str, str],
        seen: set[str],
        *,
        guarded: bool,
    ) -> list[Taken | Exception]:
        """Each intake's enqueues and entry. ``guarded``: a savepoint per event and per
        run, so whatever one of them meets fails it alone; otherwise the first failure
        fails the pass."""
        outcomes: list[Taken | Exception] = []
        for intake in intakes:
            repeat = intake.event is not None and intake.event.id in seen
            if not guarded:
                outcomes.append(self._one(conn, runs, intake, branches, repeat, guarded=False))
            else:
                try:
                    with conn.begin_nested():
                        outcomes.append(self._one(conn, runs, intake, branches, repeat))
                except sqlalchemy.exc.DBAPIError as exc:
                    if exc.connection_invalidated:
                        raise  # the connection is gone: the whole group fails
                    outcomes.append(self._failed(intake, exc))
                    continue
                except Exception as exc:  # this event alone could not be taken
                    outcomes.append(self._failed(intake, exc))
                    continue
            if intake.event is not None:
                seen.add(intake.event.id)
        return outcomes

    @staticmethod
    def _failed(intake: Intake, exc: Exception) -> Exception:
        # A database error's text carries the statement and its values: its name only.
        why = type(exc).__name__ if isinstance(exc, sqlalchemy.exc.DBAPIError) else str(exc)
        log.error(
            "event %s could not be enqueued: %s",
            _name(intake),
            why,
            extra=ids(event_id=_event_id(intake)),
        )
        return exc

    def _one(
        self,
        conn: sa.Connection,
        runs: coalesce.Runs,
        intake: Intake,
        branches: dict[str, str],
        repeat: bool,
        *,
        guarded: bool = True,
    ) -> Taken:
        results: dict[str, Enqueued] = {}
        woken_before = len(runs.woken)
        for request in intake.requests:
            branch = branches[request.run_id]
            if repeat:
                results[request.run_id] = Enqueued(request.run_id, branch, duplicate=True)
                continue
            trig = self.settings.find_trigger(request.trigger)
            keys = spec_for(self.settings, trig).partition_keys(branch)
            burst = coalesce.Burst.before(runs, trig, request.run_id, branch, keys)
            key = keys[0] if len(keys) == 1 else runs.least_busy(keys)
            options = enqueue_options(self.settings, request, branch, key, burst)
            try:
                with conn.begin_nested() if guarded else contextlib.nullcontext():
                    self.client.enqueue_in_transaction(conn, options, request.as_dict())
            except DBOSWorkflowIDInUseError:
                results[request.run_id] = Enqueued(request.run_id, branch, duplicate=True)
                continue
            burst.after(runs, request.run_id)
            results[request.run_id] = Enqueued(request.run_id, branch, duplicate=False)
        enqueued = list(results.values())
        woken = tuple(runs.woken[woken_before:])
        if intake.event is None:
            return Taken(
                "accepted" if any(not r.duplicate for r in enqueued) else "duplicate",
                enqueued,
                None,
                woken=woken,
            )
        entry = dispatch_entry(
            intake.event,
            intake.decisions,
            results,
            source_addr=intake.source_addr,
            repeat=repeat,
            ignored_because=intake.ignored_because,
        )
        entry.quiet = intake.quiet
        outcome: Outcome = entry.outcome  # type: ignore[assignment]
        if outcome != "accepted" and not intake.log_idle:
            return Taken(outcome, enqueued, None, woken=woken)
        return Taken(outcome, enqueued, None, entry, woken)

    def _written(
        self, intakes: Sequence[Intake], outcomes: Sequence[Taken | BaseException]
    ) -> None:
        """After each commit: the lines, and the log's housekeeping."""
        entries = []
        for intake, taken in zip(intakes, outcomes, strict=True):
            if not isinstance(taken, Taken):
                continue
            if taken.entry is not None:
                entries.append(taken.entry)
            for run in taken.new_runs:
                (log.debug if intake.quiet else log.info)(
                    "enqueued run %s event=%s branch=%s",
                    run.run_id,
                    _name(intake),
                    run.branch,
                    extra=ids(run_id=run.run_id, event_id=_event_id(intake), branch=run.branch),
                )
            for run_id in taken.woken:
                coalesce.wake(self.client, run_id, "superseded")
        self._log.written(entries)


# Built once: a fresh IN clause per group would be compiled again every time.
_RECEIVED_QUERY = sa.select(events_table.c.event_id).where(
    events_table.c.event_id.in_(sa.bindparam("ids", expanding=True)),
    events_table.c.outcome.in_(_RECEIVED),
)


def _received(conn: sa.Connection, event_ids: list[str]) -> set[str]:
    """Which of these events the log already holds as received."""
    if not event_ids:
        return set()
    return {row[0] for row in conn.execute(_RECEIVED_QUERY, {"ids": sorted(set(event_ids))})}


def _coalesces(settings: Settings, request: RunRequest) -> bool:
    trig = settings.find_trigger(request.trigger)
    return trig is not None and coalesces(trig)


def _event_id(intake: Intake) -> str | None:
    return intake.event.id if intake.event is not None else None


def _name(intake: Intake) -> str:
    return (
        intake.event.id if intake.event is not None else ",".join(r.run_id for r in intake.requests)
    )


def unavailable(exc: Exception) -> Exception:
    """What a caller learns when the writer could not take its intake."""
    if isinstance(exc, Abandoned):
        return EnqueueUnavailableError("the system database did not take the runs in time; retry")
    if isinstance(exc, EnqueueUnavailableError):
        return exc
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return EnqueueUnavailableError(
            f"the system database did not take the enqueue ({type(exc).__name__}); "
            "retry when it is reachable"
        )
    return exc
