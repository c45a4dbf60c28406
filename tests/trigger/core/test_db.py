"""``trigger.core.db``: the one engine builder, and the one update-else-insert."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from trigger.core import db

_ROOT = Path(__file__).resolve().parents[3]


def test_only_the_builder_creates_engines() -> None:
    """Options drift apart when every module builds its own engine (one lacked SQLite's
    busy timeout): outside ``trigger/core/db.py`` nothing calls ``create_engine``."""
    calls = [
        f"{path.relative_to(_ROOT)}:{n}"
        for package in ("trigger", "workflows")
        for path in sorted((_ROOT / package).rglob("*.py"))
        if path != _ROOT / "trigger" / "core" / "db.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bcreate_engine\(", line)
    ]
    assert calls == []


def test_a_pooled_engine_checks_its_connections_and_waits_for_sqlite_locks(
    tmp_path: Path,
) -> None:
    engine = db.engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with engine.connect() as conn:
            # sqlite3's timeout is the busy timeout SQLite reports, in milliseconds.
            busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        assert busy == db.SQLITE_BUSY_TIMEOUT * 1000
        assert engine.pool._pre_ping  # no public way to ask
    finally:
        engine.dispose()


def test_put_row_inserts_once_then_updates(tmp_path: Path) -> None:
    table = sa.Table(
        "beats",
        sa.MetaData(),
        sa.Column("name", sa.String(20), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    engine = db.engine(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        table.create(engine)
        for at in (1.0, 2.0):
            with engine.begin() as conn:
                db.put_row(conn, table, {"name": "w1"}, {"at": at})
        with engine.connect() as conn:
            assert conn.execute(sa.select(table)).all() == [("w1", 2.0)]
    finally:
        engine.dispose()


def test_a_sqlite_system_database_is_kept_in_wal_mode_and_the_writer_has_savepoints(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'w.sqlite'}"
    db.use_wal(url)
    engine = db.writer(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (v TEXT PRIMARY KEY)")
            conn.exec_driver_sql("INSERT INTO t VALUES ('kept')")
            with pytest.raises(sa.exc.IntegrityError), conn.begin_nested():
                conn.exec_driver_sql("INSERT INTO t VALUES ('gone')")
                conn.exec_driver_sql("INSERT INTO t VALUES ('kept')")
    finally:
        engine.dispose()
    plain = sa.create_engine(url)
    with plain.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert [r[0] for r in conn.exec_driver_sql("SELECT v FROM t")] == ["kept"]
    plain.dispose()
