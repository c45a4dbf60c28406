"""The worker killed at every step boundary of a run, then restarted: every run ends,
and each one submitted exactly one Bauplan job.

One real ``serve`` per database. Each phase arms rehearsed crashes (``rehearsal
fault step:NAME EXIT_AFTER``, and ``EXIT_AFTER`` on ``run`` itself) for one kind of
run, starts that run, and restarts the worker after every death until the run is
final (its notice workflows included); the deaths are counted and each armed crash
is found in the log. Runs of every kind meet their boundaries: plain (``launch``,
``wait``, ``finish``, and the steps of its two notice workflows), a rate-limited one
(between recording its start and submitting), a cancelling trigger (``cancel``), a
file drop (``start``, ``check_file``, ``prepare_branch``, ``submit``, between its
marker and the file, ``move_file``) and a pushed commit (``start``,
``prepare_branch``, ``prepare_code``, ``submit``, ``remove_code``), a job that outlives
its timeout (the ``wait`` that finds it late, the ``stop`` that cancels it, ``finish``)
and a run that waited too long (``launch``, ``finish``), and a publishing run (the
instant Bauplan merged, ``publish``, ``delete_branch``). 200 jobs of the
same user sit in the reconcile window. Under a global cap, a rate-limited run and
its job workflow meet theirs (``launch`` with its hand-over, the job workflow's
``submit`` with the moment between recording and submitting, ``wait``, ``finish``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.support import base_config, free_port, match, wait_until, write_config
from tests.trigger.hookkit import make_repo
from tests.workflows.notify.conftest import notifier_config, notify_env
from tests.workflows.notify.receiver import Receiver
from trigger.core.event import manual_event
from trigger.core.runstatus import FINAL_STATUSES
from trigger.core.settings import build_settings
from workflows.bauplan.rehearsal import Ledger, RehearsalClient
from workflows.bauplan.rehearsal_refs import merges
from workflows.intake import Enqueuer
from workflows.notify.outbox import NOTICE_WORKFLOW
from workflows.records import list_runs, show_run
from workflows.runtime import ledger_path
from workflows.steps import code as workspace
from workflows.store import Store, starts

pytestmark = pytest.mark.slow

PLAIN = ["launch", "notify webhook:ops started", "wait", "finish", "notify webhook:ops succeeded"]
GATED = ["submit.reserved", "launch", "wait", "finish"]
FILE = ["start", "check_file", "prepare_branch", "submit", "move_file.marker", "move_file"]
GIT = ["start", "prepare_branch", "prepare_code", "submit", "remove_code"]
TIMED_OUT = ["wait", "stop", "finish"]
EXPIRED = ["launch", "finish"]
PUBLISH = ["publish", "delete_branch"]


class Worker:
    """The serve process, restarted after every death, deaths counted."""

    def __init__(self, serve: Any, enqueuer: Enqueuer, ledger: Ledger) -> None:
        self.serve = serve
        self.enqueuer = enqueuer
        self.ledger = ledger
        self.deaths = 0

    def arm(self, steps: list[str]) -> None:
        for step in steps:
            self.ledger.inject_fault(f"step:{step}", "EXIT_AFTER")

    def dead(self) -> bool:
        return self.serve.proc is not None and self.serve.proc.poll() is not None

    def final(self, run_ids: list[str]) -> bool:
        """The runs ended, and so did the notice workflows they started."""
        runs = [show_run(self.enqueuer.client, run_id) for run_id in run_ids]
        if not all(run["status"] in FINAL_STATUSES for run in runs):
            return False
        notices = self.enqueuer.client.list_workflows(
            name=NOTICE_WORKFLOW, load_input=False, load_output=False
        )
        mine = [n for n in notices if (n.attributes or {}).get("run_id") in run_ids]
        return all(str(n.status) in ("SUCCESS", "ERROR", "CANCELLED") for n in mine)

    def recover(self, run_ids: list[str], deaths: int) -> None:
        """Restart after each death until the runs are final; exactly ``deaths`` deaths."""
        expected = self.deaths + deaths
        while True:
            wait_until(
                lambda: self.dead() or self.final(run_ids),
                timeout=90,
                interval=0.1,
                what=f"a death or the end of {run_ids} (log: {self.serve.log()[-3000:]})",
            )
            if not self.dead():
                break
            self.deaths += 1
            self.serve.start()
        assert self.deaths == expected, self.serve.log()[-3000:]
        assert self.ledger.faults() == []


def _fire(settings: Any, enqueuer: Enqueuer, trigger: str, event_id: str, **inputs: str) -> str:
    [request] = match(manual_event(trigger, inputs, event_id=event_id), settings)
    return enqueuer.enqueue(request).run_id


def test_a_worker_killed_at_every_step_boundary_submits_each_run_once_and_ends_every_run(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any
) -> None:
    hook = Receiver()
    landing = tmp_path / "landing"
    landing.mkdir()
    upstream = tmp_path / "upstream"
    sha = make_repo(upstream)[0]
    config = base_config(
        tmp_path,
        project_dir,
        service={"state_dir": str(tmp_path / "state"), "listen": f"127.0.0.1:{free_port()}"},
        triggers=[
            {
                "name": "orders",
                "project_dir": str(project_dir),
                "branch": "orders_{run_date}",
                "inputs": ["run_date"],
                "parameters": {"run_date": "{run_date}"},
                "notify": ["ops"],
                # Longer than a notice takes to go out: the run's ``wait`` death must not
                # fall while its ``started`` notice is on the wire, which would deliver
                # it again on restart (at least once, as designed, but not what this
                # test counts).
                "rehearse_seconds": 1.0,
            },
            {
                "name": "gated",
                "project_dir": str(project_dir),
                "branch": "gated",
                "per_branch_limit": {"runs": 1, "period_seconds": 600},
            },
            {
                "name": "swap",
                "project_dir": str(project_dir),
                "branch": "swap",
                "on_burst": "cancel",
                "rehearse_seconds": 3.0,
            },
            {
                "name": "slow",
                "project_dir": str(project_dir),
                "branch": "slow",
                "rehearse_outcome": "hang",
                "timeout_seconds": 1,
            },
            {
                "name": "stale",
                "project_dir": str(project_dir),
                "branch": "stale",
                "max_queue_seconds": 0.001,  # any wait on the queue is longer
            },
            {
                "name": "wap",
                "project_dir": str(project_dir),
                "branch": "wap",
                "rehearse_seconds": 0.1,
                "publish": {"into": "main", "delete_branch_after": True},
            },
            {
                "name": "landing",
                "project_dir": str(project_dir),
                "branch": "landing_{file_stem}",
                "parameters": {"source_file": "{file_path}"},
                "files": {
                    "dir": str(landing),
                    "patterns": ["*.csv"],
                    "ready_marker": "{name}.done",
                    "after": "move",
                    "poll_interval": 0.1,
                },
            },
        ],
        notifiers=notifier_config(hook=hook.url, on=["started", "succeeded", "failed"]),
    )
    path = write_config(tmp_path / "bauplan-trigger.toml", config)
    env = {
        **notify_env(hook=hook.url),
        **({"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}),
    }
    settings = build_settings(config, config_path=path, environ=env)
    ledger = Ledger(ledger_path(settings))
    enqueuer = Enqueuer(settings)
    worker = Worker(serve_process(path, env), enqueuer, ledger)
    begun = time.monotonic()
    runs: list[str] = []
    try:
        # A plain run, killed after each of its checkpoints and notices.
        worker.arm(PLAIN)
        runs.append(_fire(settings, enqueuer, "orders", "plain", run_date="a"))
        worker.recover(runs[-1:], len(PLAIN))

        # A rate-limited trigger's run, killed also between recording its start and
        # submitting: resumed, it records its start again instead of beside the first.
        worker.arm(GATED)
        runs.append(_fire(settings, enqueuer, "gated", "gated"))
        worker.recover(runs[-1:], len(GATED))

        # Killed the instant Bauplan accepted the job, with 200 jobs of the same user in
        # the window: a claimed one of the same project on the same branch, another
        # project's on that branch, the rest on other branches.
        runs.append(_fire(settings, enqueuer, "orders", "claimed", run_date="a"))
        worker.recover(runs[-1:], 0)
        seeder = RehearsalClient(ledger, seconds=0)
        other = tmp_path / "audit"
        other.mkdir()
        (other / "bauplan_project.yml").write_text("project:\n  id: audit\n  name: audit\n")
        seeded = {seeder.run(project_dir=str(other), ref="rehearsal.orders_a", detach=True).job_id}
        for n in range(199):
            ref = f"rehearsal.elsewhere_{n}"
            seeded.add(seeder.run(project_dir=str(project_dir), ref=ref, detach=True).job_id)
        ledger.inject_fault("run", "EXIT_AFTER")
        runs.append(_fire(settings, enqueuer, "orders", "accepted", run_date="a"))
        worker.recover(runs[-1:], 1)

        # A running job cancelled by a newer run, killed right after the cancel.
        runs.append(_fire(settings, enqueuer, "swap", "first"))
        wait_until(lambda: any(j["ref"] == "rehearsal.swap" for j in ledger.jobs()))
        worker.arm(["cancel"])
        runs.append(_fire(settings, enqueuer, "swap", "second"))
        worker.recover(runs[-2:], 1)

        # A file drop with a companion marker, moved when done.
        worker.arm(FILE)
        (landing / "day.csv").write_text("id\n1\n")
        (landing / "day.csv.done").write_text("")
        file_run = wait_until(
            lambda: [r["id"] for r in list_runs(enqueuer.client, trigger="landing")],
            what="the file's run",
        )
        runs.extend(file_run)
        worker.recover(runs[-1:], len(FILE))

        # A pushed commit, checked out into its own workspace.
        worker.arm(GIT)
        [template] = match(manual_event("orders", {"run_date": "g"}, event_id="push"), settings)
        pushed = replace(
            template,
            run_id="run:orders:push",
            git_source=str(upstream),
            git_sha=sha,
            project_subdir="pipelines/orders",
            notify=[],
        )
        runs.append(enqueuer.enqueue(pushed).run_id)
        worker.recover(runs[-1:], len(GIT))

        # A job that never ends, cancelled at its timeout: killed after the wait that
        # found it late, after the cancel, and after the outcome.
        worker.arm(TIMED_OUT)
        runs.append(_fire(settings, enqueuer, "slow", "slow"))
        worker.recover(runs[-1:], len(TIMED_OUT))

        # A publishing run, killed the instant Bauplan merged (before the step's
        # checkpoint), after the publish step and after deleting its branch.
        ledger.inject_fault("merge_branch", "EXIT_AFTER")
        worker.arm(PUBLISH)
        published = _fire(settings, enqueuer, "wap", "wap")
        worker.recover([published], 1 + len(PUBLISH))

        # A run that waited longer than its max_queue_seconds: it ends with no job.
        worker.arm(EXPIRED)
        runs.append(_fire(settings, enqueuer, "stale", "stale"))
        worker.recover(runs[-1:], len(EXPIRED))
        elapsed = time.monotonic() - begun
        records = {run_id: show_run(enqueuer.client, run_id) for run_id in runs}
        wap = show_run(enqueuer.client, published)
    finally:
        enqueuer.close()
        hook.close()

    print(f"crash suite: {worker.deaths} deaths and restarts in {elapsed:.1f}s")
    statuses = [records[run_id]["status"] for run_id in runs]
    assert statuses == (
        ["succeeded"] * 4 + ["cancelled", "succeeded"] + ["succeeded"] * 2 + ["failed", "expired"]
    )
    timed_out, expired = records[runs[-2]], records[runs[-1]]
    assert timed_out["error"] == f"timed out after 1 s (job {timed_out['job_id']} cancelled)"
    assert expired["job_id"] is None and "max_queue_seconds = 0.001" in expired["error"]
    runs = runs[:-1]  # the expired run has no job
    # Exactly one submission per run: the ledger holds the seeds and one job per run.
    job_ids = [records[run_id]["job_id"] for run_id in runs]
    jobs = {j["job_id"]: j for j in ledger.jobs()}
    assert len(set(job_ids)) == len(runs)
    assert set(jobs) == seeded | set(job_ids) | {wap["job_id"]}
    assert f"run {runs[3]} adopted job {job_ids[3]}" in worker.serve.log()
    log = worker.serve.log()
    assert jobs[timed_out["job_id"]]["status"] == "ABORT"
    # The publishing run merged exactly once, and its branch is gone.
    [merge] = [m for m in merges(ledger) if m["properties"]["bauplan_trigger_run"] == published]
    assert len(merges(ledger)) == 1 and merge["into_branch"] == "main"
    assert wap["status"] == "succeeded" and wap["publish"]["state"] == "published"
    assert wap["publish"]["commit"] == merge["hash"] and wap["publish"]["branch_deleted"]
    assert not RehearsalClient(ledger).has_branch("rehearsal.wap")
    for step in {*PLAIN, *GATED, "cancel", *FILE, *GIT, *TIMED_OUT, *EXPIRED, *PUBLISH}:
        assert f"exiting right after step {step}," in log, step
    # The notices were each delivered once; the file and its marker were both moved.
    kinds = [r.json()["type"] for r in hook.received()]
    assert kinds == ["run.started", "run.succeeded"] * 3
    assert sorted(p.name for p in (landing / "processed").iterdir()) == ["day.csv", "day.csv.done"]
    assert not (landing / "day.csv").exists() and not (landing / "day.csv.done").exists()
    assert not workspace.workspace_path(settings.state_path, "run:orders:push").exists()
    assert jobs[records["run:orders:push"]["job_id"]]["code_version"] == sha
    # The 200 were all in the window the crashed submission reconciled.
    store = Store(settings.database_url())
    accepted = store.submission(runs[3])
    # The gated run's start is in its window once, confirmed.
    with store.engine.connect() as conn:
        recorded = [(r.run_id, r.confirmed) for r in conn.execute(starts.select())]
    assert recorded == [(runs[1], True)]
    store.close()
    assert accepted is not None
    assert all(jobs[j]["started_ts"] >= accepted.started_at - 5 for j in seeded)


CAPPED = ["launch", "submit.reserved", "submit", "wait", "finish"]


def test_a_worker_killed_at_every_step_of_a_capped_rate_limited_run_submits_it_once(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any
) -> None:
    config = base_config(
        tmp_path,
        project_dir,
        service={"state_dir": str(tmp_path / "state"), "listen": f"127.0.0.1:{free_port()}"},
        queue={"global_concurrency": 2, "per_branch_limit": {"runs": 1, "period_seconds": 600}},
    )
    path = write_config(tmp_path / "bauplan-trigger.toml", config)
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    settings = build_settings(config, config_path=path, environ=env)
    ledger = Ledger(ledger_path(settings))
    enqueuer = Enqueuer(settings)
    worker = Worker(serve_process(path, env), enqueuer, ledger)
    try:
        worker.arm(CAPPED)
        first = _fire(settings, enqueuer, "orders", "capped", run_date="a")
        worker.recover([first], len(CAPPED))
        # Its start was recorded once: the next run of the branch waits for the window.
        second = _fire(settings, enqueuer, "orders", "next", run_date="a")
        waiting = wait_until(
            lambda: (
                (r := show_run(enqueuer.client, second, settings)).get("phase") == "rate-limited"
                and r
            ),
            what="the next run to be rate-limited",
        )
        record = show_run(enqueuer.client, first)
    finally:
        enqueuer.close()
    assert record["status"] == "succeeded"
    assert waiting["waiting_reason"].endswith("(1 starts in the last 600s, limit 1)")
    assert [j["job_id"] for j in ledger.jobs()] == [record["job_id"]]
    log = worker.serve.log()
    for step in CAPPED:
        assert f"exiting right after step {step}," in log, step
