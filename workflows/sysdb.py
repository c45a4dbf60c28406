"""Whether the system database has been set up, found out without creating anything.

``serve`` sets the system database up on its first start (DBOS's migrations and our
tables, ``app.prepare_database``), and ``fire`` does the same so that a run can wait
in the queue for a worker. Every other command only reads: on a state folder or a
PostgreSQL database that was never set up, it says so in one line instead of leaving
an empty ``dbos.sqlite`` behind or failing on a missing table.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from trigger.core import db
from trigger.core.errors import SystemDatabaseError, SystemDatabaseMissingError
from trigger.core.settings import Settings

# psycopg's words when the server is up but the database was never created.
_NO_DATABASE = re.compile(r'database "[^"]*" does not exist')


def where(settings: Settings) -> str:
    """The system database as users may see it: the SQLite file, or the URL without
    its password."""
    if not settings.is_postgres:
        return str(sqlite_path(settings))
    return sa.make_url(settings.database_url()).render_as_string(hide_password=True)


def sqlite_path(settings: Settings) -> Path:
    return settings.state_path / "dbos.sqlite"


def is_ready(settings: Settings) -> bool:
    """True when DBOS's tables are there. False when the file or database does not exist
    yet (or is empty). A server that cannot be reached raises its own error."""
    if not settings.is_postgres:
        path = sqlite_path(settings)
        if not path.is_file() or path.stat().st_size == 0:
            return False
    engine = db.unpooled(settings.database_url())
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            schema = "dbos" if settings.is_postgres else None
            return all(
                inspector.has_table(name, schema=schema)
                for name in ("dbos_migrations", "workflow_status")
            )
    except sa.exc.OperationalError as exc:
        if settings.is_postgres and _NO_DATABASE.search(str(exc.orig)):
            return False
        raise
    except sa.exc.DatabaseError:
        raise SystemDatabaseError(
            f"{where(settings)} is not an SQLite database: move it away (serve then creates "
            "a new one) or fix [service] state_dir"
        ) from None
    finally:
        engine.dispose()


def require(settings: Settings) -> None:
    """For commands that only read: one line when there is nothing to read yet."""
    if not is_ready(settings):
        raise SystemDatabaseMissingError(where(settings))


def ensure(settings: Settings) -> bool:
    """Set the system database up when it is not yet; True when this call did."""
    if is_ready(settings):
        return False
    from workflows.app import prepare_database

    prepare_database(settings)
    return True
