"""Our own tables, kept in the DBOS system database (SQLite file or PostgreSQL).

DBOS checkpoints a step's result only after the step returns, so a process
killed between Bauplan accepting a run and that checkpoint would submit again
on recovery. The submissions table closes that window: a submit step writes
what identifies its submission (ref, project, parameters, time) before calling
Bauplan and the job id right after, and a re-executed step reconciles with
Bauplan instead of submitting blindly (``workflows.steps.submit``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa

from trigger.core import db

log = logging.getLogger(__name__)

metadata = sa.MetaData()

CALLING, ACCEPTED, REFUSED = "calling", "accepted", "refused"

submissions = sa.Table(
    "bt_submissions",
    metadata,
    sa.Column("run_id", sa.String(300), primary_key=True),
    sa.Column("ref", sa.String(300), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("job_id", sa.String(200), nullable=True, unique=True),
    # Added in the second release; rows written before have NULL here.
    sa.Column("project_dir", sa.Text, nullable=True),
    sa.Column("project_id", sa.String(300), nullable=True),
    sa.Column("project_name", sa.String(300), nullable=True),
    sa.Column("parameters", sa.Text, nullable=True),
    sa.Column("state", sa.String(20), nullable=True),
)
sa.Index("ix_bt_submissions_ref", submissions.c.ref)

# The per-branch rate windows (``workflows.ratelimit``): one row per run that reserved
# a start, and one row per window to lock on PostgreSQL while a start is reserved.
starts = sa.Table(
    "bt_starts",
    metadata,
    sa.Column("run_id", sa.String(300), primary_key=True),
    sa.Column("window", sa.String(400), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    # True once the job was submitted (``at`` is then no earlier than the submit).
    sa.Column("confirmed", sa.Boolean, nullable=False),
)
sa.Index("ix_bt_starts_window", starts.c.window, starts.c.at)
windows = sa.Table("bt_windows", metadata, sa.Column("window", sa.String(400), primary_key=True))
# Bound parameters per IN list: far below SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500


@dataclass(frozen=True)
class Submission:
    run_id: str
    ref: str
    started_at: float
    job_id: str | None
    project_dir: str | None = None
    project_id: str | None = None
    project_name: str | None = None
    parameters: str | None = None  # JSON with sorted keys
    state: str | None = None

    @property
    def unresolved(self) -> bool:
        """A call to Bauplan began and nobody knows whether it started a job."""
        return self.job_id is None and self.state in (None, CALLING)


def _submission(row: sa.Row[object]) -> Submission:
    return Submission(**{c.name: getattr(row, c.name) for c in submissions.columns})


class Store:
    def __init__(self, url: str, *, create_database: bool = False) -> None:
        self.url = url
        if create_database and not url.startswith("sqlite"):
            _create_postgres_database(url)
        self.engine = db.engine(url)
        _create_tables(self.engine)
        _migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def submission(self, run_id: str) -> Submission | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(submissions).where(submissions.c.run_id == run_id)).first()
        return None if row is None else _submission(row)

    def begin_submission(
        self,
        run_id: str,
        ref: str,
        *,
        project_dir: str,
        project_id: str | None,
        project_name: str | None,
        parameters: str,
        again: bool = False,
    ) -> float:
        """Write what identifies the submission, before calling Bauplan; ``again`` when a
        row for this run exists already (an earlier attempt that got as far as this)."""
        started = time.time()
        values = {
            "ref": ref,
            "started_at": started,
            "project_dir": project_dir,
            "project_id": project_id,
            "project_name": project_name,
            "parameters": parameters,
            "state": CALLING,
        }
        with self.engine.begin() as conn:
            if again:
                conn.execute(
                    sa.update(submissions).where(submissions.c.run_id == run_id).values(**values)
                )
            else:
                conn.execute(sa.insert(submissions).values(run_id=run_id, **values))
        return started

    def claimed_job_ids(self, job_ids: list[str]) -> set[str]:
        """Which of ``job_ids`` some run has recorded as its own."""
        claimed: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(job_ids), _IN_CHUNK):
                chunk = job_ids[start : start + _IN_CHUNK]
                rows = conn.execute(
                    sa.select(submissions.c.job_id).where(submissions.c.job_id.in_(chunk))
                )
                claimed.update(str(r.job_id) for r in rows)
        return claimed

    def unresolved_submissions(self, ref: str, *, besides: str) -> list[Submission]:
        """Other runs' calls to Bauplan on ``ref`` whose outcome nobody knows: runs
        submitting right now, or interrupted while they did."""
        query = sa.select(submissions).where(
            submissions.c.ref == ref,
            submissions.c.run_id != besides,
            submissions.c.job_id.is_(None),
            sa.or_(submissions.c.state.is_(None), submissions.c.state == CALLING),
        )
        with self.engine.connect() as conn:
            return [_submission(row) for row in conn.execute(query)]

    def finish_submission(self, run_id: str, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(submissions)
                .where(submissions.c.run_id == run_id)
                .values(job_id=job_id, state=ACCEPTED)
            )

    def refuse_submission(self, run_id: str) -> None:
        """Bauplan answered the call with an error: it started no job."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(submissions).where(submissions.c.run_id == run_id).values(state=REFUSED)
            )


def _migrate(engine: sa.Engine) -> None:
    """Add what a table written by an earlier release lacks: columns, then the index.

    Several processes may start at once; a column or index another one added in the
    meantime is not an error."""
    present = {c["name"] for c in sa.inspect(engine).get_columns(submissions.name)}
    missing = [c for c in submissions.columns if c.name not in present]
    postgres = engine.dialect.name == "postgresql"
    for column in missing:
        kind = column.type.compile(dialect=engine.dialect)
        guard = "IF NOT EXISTS " if postgres else ""
        add = f"ALTER TABLE {submissions.name} ADD COLUMN {guard}{column.name} {kind}"
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(add))
        except sa.exc.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise
            continue
        log.info("added column %s to %s", column.name, submissions.name)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"CREATE INDEX IF NOT EXISTS ix_bt_submissions_ref ON {submissions.name} (ref)")
        )


# Serialises our CREATE TABLEs on PostgreSQL: two processes starting at once on a new
# database would otherwise both see a table missing and one would fail creating it.
_DDL_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"bauplan-trigger.ddl").digest()[:8], "big", signed=True
)


def _create_tables(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        metadata.create_all(engine, checkfirst=True)
        return
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK_KEY})
        metadata.create_all(conn, checkfirst=True)


def _create_postgres_database(url: str) -> None:
    """DBOS creates the system database on launch; we need it a moment earlier."""
    target = sa.make_url(url)
    admin = db.unpooled(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            ).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    except (sa.exc.ProgrammingError, sa.exc.IntegrityError):
        pass  # created concurrently by another process (DuplicateDatabase or UniqueViolation)
    finally:
        admin.dispose()
