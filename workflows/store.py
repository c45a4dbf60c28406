"""Our own tables, kept in the DBOS system database (SQLite file or PostgreSQL).

DBOS checkpoints a step's result only after the step returns, so a process
killed between Bauplan accepting a run and that checkpoint would submit again
on recovery. The submissions table closes that window: a submit step writes
its intent before calling Bauplan and the job id right after, and a re-executed
step reconciles with Bauplan instead of submitting blindly.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import sqlalchemy as sa

metadata = sa.MetaData()

submissions = sa.Table(
    "bt_submissions",
    metadata,
    sa.Column("run_id", sa.String(300), primary_key=True),
    sa.Column("ref", sa.String(300), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("job_id", sa.String(200), nullable=True, unique=True),
)


@dataclass(frozen=True)
class Submission:
    run_id: str
    ref: str
    started_at: float
    job_id: str | None


class Store:
    def __init__(self, url: str, *, create_database: bool = False) -> None:
        self.url = url
        if create_database and not url.startswith("sqlite"):
            _create_postgres_database(url)
        if url.startswith("sqlite"):
            self.engine = sa.create_engine(url, connect_args={"timeout": 30})
        else:
            self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5)
        _create_tables(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def submission(self, run_id: str) -> Submission | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(submissions).where(submissions.c.run_id == run_id)).first()
        return None if row is None else Submission(row.run_id, row.ref, row.started_at, row.job_id)

    def begin_submission(self, run_id: str, ref: str, *, again: bool = False) -> float:
        """Write the intent to submit, before calling Bauplan; ``again`` when a row for
        this run exists already (an earlier attempt that got as far as this)."""
        started = time.time()
        with self.engine.begin() as conn:
            if again:
                conn.execute(
                    sa.update(submissions)
                    .where(submissions.c.run_id == run_id)
                    .values(started_at=started, ref=ref)
                )
            else:
                conn.execute(
                    sa.insert(submissions).values(run_id=run_id, ref=ref, started_at=started)
                )
        return started

    def claimed_job_ids(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(submissions.c.job_id).where(submissions.c.job_id.in_(job_ids))
            )
            return {r.job_id for r in rows}

    def finish_submission(self, run_id: str, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(submissions).where(submissions.c.run_id == run_id).values(job_id=job_id)
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
    admin = sa.create_engine(
        target.set(database="postgres"), isolation_level="AUTOCOMMIT", pool_pre_ping=True
    )
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
