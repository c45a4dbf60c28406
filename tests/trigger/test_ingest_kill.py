"""``kill -9`` of ``serve`` in the middle of a webhook burst (issue 14).

A delivery is logged if and only if its runs are enqueued, and the sender hears
back only after both are committed. So whenever the process dies, the system
database holds, for every delivery, either its event row and all its runs or
neither, and an acknowledged delivery always holds both. Sending everything again
to a restarted ``serve`` then finds every acknowledged delivery a duplicate and
completes the rest, one run per delivery.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from dbos import DBOSClient

from tests.support import base_config, free_port, make_settings, write_config
from tests.trigger.burst import Answer, burst, raw_post
from tests.trigger.hookkit import body_of, github_headers, github_push, github_trigger
from trigger.core import db
from trigger.core.eventlog_store import decisions_table, events_table
from workflows.queue import RUN_WORKFLOW

pytestmark = pytest.mark.slow

DELIVERIES = 2000
CONNECTIONS = 24
KILL_AFTER_ACKS = 300


def _deliveries(url: str) -> tuple[list[str], list[bytes]]:
    """Signed pushes that all match the one trigger, each a new ``X-GitHub-Delivery``."""
    body = body_of(github_push())
    ids = [f"kill-{n:04d}" for n in range(DELIVERIES)]
    requests = [
        raw_post(f"{url}/hooks/github", body, github_headers(body, delivery=d)) for d in ids
    ]
    return ids, requests


def _event_rows(settings: Any) -> dict[str, list[tuple[str, list[str]]]]:
    """Each delivery's event rows, oldest first: (outcome, run ids its decisions name)."""
    engine = db.unpooled(settings.database_url())
    try:
        with engine.connect() as conn:
            events = conn.execute(
                sa.select(events_table.c.seq, events_table.c.event_id, events_table.c.outcome)
                .where(events_table.c.source == "github")
                .order_by(events_table.c.seq)
            ).all()
            named = conn.execute(
                sa.select(decisions_table.c.event_seq, decisions_table.c.run_id)
                .where(decisions_table.c.run_id.is_not(None))
                .order_by(decisions_table.c.event_seq, decisions_table.c.position)
            ).all()
    finally:
        engine.dispose()
    runs_of: dict[int, list[str]] = defaultdict(list)
    for seq, run_id in named:
        runs_of[seq].append(run_id)
    rows: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for seq, event_id, outcome in events:
        rows[event_id.removeprefix("gh-")].append((outcome, runs_of[seq]))
    return rows


def _run_workflows(settings: Any) -> list[str]:
    """The id of every run workflow in the system database, once per row."""
    client = DBOSClient(system_database_url=settings.database_url())
    try:
        found = client.list_workflows(name=RUN_WORKFLOW, load_input=False, load_output=False)
    finally:
        client.destroy()
    return [w.workflow_id for w in found]


def _some(items: Any, n: int = 5) -> str:
    items = sorted(items)
    return ", ".join(map(str, items[:n])) + (" ..." if len(items) > n else "")


def _acked_deliveries_have_their_event_and_runs(settings: Any, acked: dict[str, Answer]) -> None:
    rows = _event_rows(settings)
    workflows = set(_run_workflows(settings))
    accepted = {d: runs for d, rs in rows.items() for outcome, runs in rs if outcome == "accepted"}
    unlogged = [d for d in acked if d not in accepted]
    assert not unlogged, (
        f"{len(unlogged)} of {len(acked)} acknowledged deliveries have no accepted event row: "
        + _some(unlogged)
    )
    misnamed = [d for d, a in acked.items() if accepted[d] != a.body["runs"]]
    assert not misnamed, f"event rows name other runs than the ack did: {_some(misnamed)}"
    unrun = [d for d, a in acked.items() if not set(a.body["runs"]) <= workflows]
    assert not unrun, (
        f"{len(unrun)} of {len(acked)} acknowledged deliveries lack runs: {_some(unrun)}"
    )


def _no_event_without_its_runs_and_no_run_without_its_event(settings: Any) -> None:
    rows = _event_rows(settings)
    workflows = set(_run_workflows(settings))
    accepted = {d: runs for d, rs in rows.items() for outcome, runs in rs if outcome == "accepted"}
    runless = [d for d, runs in accepted.items() if not runs or not set(runs) <= workflows]
    assert not runless, (
        f"{len(runless)} of {len(accepted)} accepted event rows lack runs they name: "
        + _some(runless)
    )
    logged = {run for rs in rows.values() for _, runs in rs for run in runs}
    orphans = workflows - logged
    assert not orphans, (
        f"{len(orphans)} of {len(workflows)} enqueued runs have no event row naming them "
        f"({len(accepted)} accepted event rows): {_some(orphans)}"
    )


def _burst_killed_after_acks(serve: Any, url: str, requests: list[bytes]) -> dict[int, Answer]:
    """The burst, with ``serve`` killed by SIGKILL when the acks reach KILL_AFTER_ACKS."""
    acks = 0

    def kill_after_a_few_hundred_acks(_: int, answer: Answer) -> None:
        nonlocal acks
        acks += answer.acked
        if acks == KILL_AFTER_ACKS:
            serve.kill9()

    answers = asyncio.run(burst(url, requests, CONNECTIONS, kill_after_a_few_hundred_acks))
    statuses = Counter(a.status for a in answers.values())
    assert acks >= KILL_AFTER_ACKS, f"the burst ended before the kill: answers {statuses}"
    assert serve.proc.returncode == -signal.SIGKILL, "serve died by SIGKILL"
    return answers


def test_a_kill_9_mid_burst_keeps_every_delivery_logged_if_and_only_if_its_runs_are_enqueued(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any
) -> None:
    overrides: dict[str, Any] = {
        "triggers": [github_trigger(project_dir)],
        # Not what this test is about: a slow moment on a busy machine must not turn
        # an ack into a 503.
        "service": {"listen": f"127.0.0.1:{free_port()}", "enqueue_timeout": 120.0},
    }
    config = write_config(tmp_path / "bt.toml", base_config(tmp_path, project_dir, **overrides))
    settings = make_settings(tmp_path, backend, project_dir, **overrides)
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    url = f"http://{settings.service.listen}"
    ids, requests = _deliveries(url)
    # An ingress enqueues and never runs: the runs stay in the database to be counted.
    serve = serve_process(config, env, role="ingress")

    first = _burst_killed_after_acks(serve, url, requests)
    acked = {ids[i]: a for i, a in first.items() if a.acked}
    assert len(acked) < DELIVERIES, "the kill came in the middle of the burst"
    assert {a.status for a in acked.values()} == {202}
    assert all(len(a.body["runs"]) == 1 for a in acked.values()), "one trigger matches each"
    _acked_deliveries_have_their_event_and_runs(settings, acked)
    _no_event_without_its_runs_and_no_run_without_its_event(settings)

    serve.start()
    again = {ids[i]: a for i, a in asyncio.run(burst(url, requests, CONNECTIONS)).items()}
    serve.stop()
    assert len(again) == DELIVERIES, "every delivery is answered after the restart"
    not_duplicates = [
        d for d in acked if (again[d].status, again[d].body["duplicate"]) != (200, True)
    ]
    assert not not_duplicates, (
        f"{len(not_duplicates)} deliveries acknowledged before the kill were not answered "
        f"as duplicates: {_some(not_duplicates)}"
    )
    answers = Counter((a.status, a.body.get("duplicate")) for a in again.values())
    assert set(answers) <= {(202, False), (200, True)}, answers
    runs_of = {d: a.body["runs"] for d, a in again.items()}
    assert all(len(runs) == 1 for runs in runs_of.values()), "one trigger matches each"
    assert all(runs_of[d] == a.body["runs"] for d, a in acked.items())

    workflows = _run_workflows(settings)
    duplicated = [run for run, n in Counter(workflows).items() if n > 1]
    assert not duplicated, f"workflow ids enqueued twice: {_some(duplicated)}"
    assert sorted(workflows) == sorted(run for runs in runs_of.values() for run in runs)
    assert len(workflows) == DELIVERIES
    rows = _event_rows(settings)
    accepted = {d: [runs for outcome, runs in rows[d] if outcome == "accepted"] for d in ids}
    wrong = [d for d in ids if accepted[d] != [runs_of[d]]]
    assert not wrong, (
        f"{len(wrong)} deliveries do not have exactly one accepted event row naming their "
        f"run: {_some(wrong)}"
    )
