"""Our tables in the system database, and databases written by an earlier release."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from tests.support import make_settings
from workflows.bauplan.adapter import Bauplan
from workflows.bauplan.rehearsal import Ledger, RehearsalClient
from workflows.steps import submit as submission
from workflows.store import Store

_FIRST_RELEASE = """
CREATE TABLE bt_submissions (
    run_id VARCHAR(300) NOT NULL PRIMARY KEY,
    ref VARCHAR(300) NOT NULL,
    started_at FLOAT NOT NULL,
    job_id VARCHAR(200) UNIQUE
)
"""


def test_a_submissions_table_from_the_first_release_gains_its_new_columns_at_start(
    tmp_path: Path, backend: str | None, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, backend, project_dir)
    settings.state_path.mkdir(parents=True)
    url = settings.database_url()
    Store(url, create_database=True).close()  # the database itself, on PostgreSQL
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE bt_submissions"))
        conn.execute(sa.text(_FIRST_RELEASE))
        conn.execute(
            sa.text("INSERT INTO bt_submissions VALUES ('run:old', 'rehearsal.b', :t, NULL)"),
            {"t": __import__("time").time()},
        )
    engine.dispose()

    store = Store(url)
    Store(url).close()  # a second process starting on the migrated table
    try:
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("bt_submissions")}
        assert {"project_dir", "project_id", "project_name", "parameters", "state"} <= columns
        old = store.submission("run:old")
        assert old is not None and old.unresolved and old.project_id is None
        # The old row recorded only its ref: a lone job on that ref is adopted.
        client = RehearsalClient(Ledger(tmp_path / "ledger.sqlite"), seconds=0)
        job = client.run(project_dir=str(project_dir), ref="rehearsal.b", detach=True).job_id
        assert submission.recorded_job(store, Bauplan(client), "run:old") == job
        assert store.claimed_job_ids([job]) == {job}
    finally:
        store.close()
