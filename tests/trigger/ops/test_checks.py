"""``check`` tells the truth about the system database, and finding out creates nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import make_settings
from trigger.ops.checks import run_checks
from workflows.app import prepare_database
from workflows.sysdb import is_ready


def _database_row(settings: Any) -> dict[str, Any]:
    rows, _ = run_checks(settings)
    return next(row for row in rows if row["check"] == "system database")


def test_a_database_never_set_up_is_reported_as_such_until_it_is(
    tmp_path: Path, backend: str | None, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, backend, project_dir)
    row = _database_row(settings)
    assert row["result"] == "ok"
    assert row["detail"].endswith("is not set up yet; `serve` (or the first `fire`) sets it up")
    assert not settings.state_path.exists()
    prepare_database(settings)
    assert _database_row(settings)["detail"].endswith("is set up and answers")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_postgresql_database_that_does_not_exist_is_not_created_by_asking(
    tmp_path: Path, backend: str, project_dir: Path
) -> None:
    absent = f"{backend}_absent"
    settings = make_settings(tmp_path, absent, project_dir)
    assert "is not set up yet" in _database_row(settings)["detail"]
    assert is_ready(settings) is False
    admin = sa.create_engine(sa.make_url(backend).set(database="postgres"))
    try:
        with admin.connect() as conn:
            found = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": sa.make_url(absent).database},
            ).first()
    finally:
        admin.dispose()
    assert found is None


def test_a_database_that_cannot_be_reached_fails_with_the_drivers_words(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, "postgresql://postgres@127.0.0.1:9/nowhere", project_dir)
    row = _database_row(settings)
    assert row["result"] == "FAIL"
    assert row["detail"].startswith(
        'cannot reach the system database (connection to server at "127.0.0.1", port 9 '
        "failed: Connection refused)"
    )


def test_a_file_that_is_not_a_database_fails(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    settings.state_path.mkdir()
    (settings.state_path / "dbos.sqlite").write_text("not a database\n" * 100)
    row = _database_row(settings)
    assert row["result"] == "FAIL"
    assert "dbos.sqlite is not an SQLite database: move it away" in row["detail"]
