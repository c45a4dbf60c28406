"""``on_burst`` and debounce on real DBOS, with the rehearsal ledger as the truth."""

from __future__ import annotations

import time
from typing import Any

from tests.support import wait_until
from tests.workflows.flow_support import final, fire, ledger, release
from workflows.records import list_runs, show_run


def _orders(project_dir: Any, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": "orders",
            "project_dir": str(project_dir),
            "branch": "orders_{run_date}",
            "inputs": ["run_date", "n"],
            "parameters": {"run_date": "{run_date}", "n": "{n}"},
            **extra,
        }
    ]


def _fire(settings: Any, enqueuer: Any, i: int) -> str:
    return fire(settings, enqueuer, f"e{i}", run_date="d1", n=str(i))


def _follow(enqueuer: Any, run_id: str) -> str:
    """Follow superseded_by pointers to the run that finally replaced this one."""
    seen = set()
    while True:
        run = show_run(enqueuer.client, run_id)
        if not run.get("superseded_by") or run_id in seen:
            return run_id
        seen.add(run_id)
        run_id = run["superseded_by"]


def _burst(settings: Any, enqueuer: Any) -> tuple[str, list[str]]:
    first = _fire(settings, enqueuer, 0)
    wait_until(lambda: ledger(settings).jobs(), what="the first job to be running")
    return first, [_fire(settings, enqueuer, i) for i in range(1, 20)]


def test_latest_runs_only_the_newest_waiting_event(launched: Any, project_dir: Any) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang"},
        triggers=_orders(project_dir, on_burst="latest"),
    )
    first, burst = _burst(settings, enqueuer)
    newest = burst[-1]
    for run_id in burst[:-1]:
        run = final(enqueuer, run_id)
        assert run["status"] == "superseded", run
        assert run["dbos_status"] == "CANCELLED"
        assert _follow(enqueuer, run_id) == newest
    # The running job was left alone: still one job, still running.
    assert [j["status"] for j in ledger(settings).jobs()] == ["RUNNING"]
    wait_until(lambda: release(settings) >= 0 and len(ledger(settings).jobs()) == 2, what="newest")
    release(settings)
    assert final(enqueuer, first)["status"] == "succeeded"
    assert final(enqueuer, newest)["status"] == "succeeded"
    jobs = ledger(settings).jobs()
    assert [j["parameters"]["n"] for j in jobs] == ["0", "19"]
    assert all(j["status"] == "COMPLETE" for j in jobs)
    superseded = list_runs(enqueuer.client, status="superseded", limit=100)
    assert {r["id"] for r in superseded} == set(burst[:-1])


def test_cancel_also_cancels_the_running_job(launched: Any, project_dir: Any) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang"},
        triggers=_orders(project_dir, on_burst="cancel"),
    )
    first, burst = _burst(settings, enqueuer)
    newest = burst[-1]
    cancelled = final(enqueuer, first)
    assert cancelled["status"] == "cancelled"
    first_job = ledger(settings).jobs()[0]
    assert cancelled["job_id"] == first_job["job_id"]
    assert first_job["status"] == "ABORT"
    assert cancelled["superseded_by"] in burst
    assert f"job {first_job['job_id']} cancelled: replaced by run" in cancelled["error"]
    # A burst member that got the branch after the first job ended is cancelled in turn.
    for run_id in burst[:-1]:
        run = final(enqueuer, run_id)
        assert run["status"] in ("superseded", "cancelled"), run
    # Pointers are complete once every older run has ended.
    for run_id in [first, *burst[:-1]]:
        assert _follow(enqueuer, run_id) == newest
    wait_until(
        lambda: ledger(settings).jobs()[-1]["parameters"]["n"] == "19", what="the newest job"
    )
    release(settings)
    assert final(enqueuer, newest)["status"] == "succeeded"
    jobs = ledger(settings).jobs()
    assert [j["status"] for j in jobs] == ["ABORT"] * (len(jobs) - 1) + ["COMPLETE"]
    assert jobs[-1]["parameters"]["n"] == "19"
    completed = [
        r
        for r in map(lambda i: show_run(enqueuer.client, i), [first, *burst])
        if r["status"] == "succeeded"
    ]
    assert [r["id"] for r in completed] == [newest]


def test_queue_runs_every_event(launched: Any, project_dir: Any) -> None:
    settings, enqueuer = launched(bauplan={"rehearse_seconds": 0.05}, triggers=_orders(project_dir))
    ids = [_fire(settings, enqueuer, i) for i in range(5)]
    assert all(final(enqueuer, run_id)["status"] == "succeeded" for run_id in ids)
    assert len(ledger(settings).jobs()) == 5


def test_debounce_turns_a_burst_into_one_run_of_the_newest_event(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05},
        triggers=_orders(project_dir, debounce_seconds=3.0),
    )
    ids = [_fire(settings, enqueuer, i) for i in range(6)]
    # The newest event waits out its own debounce from the moment it arrived.
    waiting = show_run(enqueuer.client, ids[-1], settings)
    assert waiting["status"] == "waiting", waiting
    assert waiting["waiting_reason"].startswith("debouncing: starts at "), waiting
    assert final(enqueuer, ids[-1])["status"] == "succeeded"
    for run_id in ids[:-1]:
        assert final(enqueuer, run_id)["status"] == "superseded"
    assert [j["parameters"]["n"] for j in ledger(settings).jobs()] == ["5"]


def _fire_at(settings: Any, enqueuer: Any, offsets: list[float]) -> list[str]:
    """Fire event i at ``start + offsets[i]`` seconds; slow enqueues do not shift the rest."""
    start = time.monotonic()
    ids = []
    for i, offset in enumerate(offsets):
        due = start + offset
        wait_until(lambda due=due: time.monotonic() >= due, timeout=10, interval=0.01)
        ids.append(_fire(settings, enqueuer, i))
    return ids


def test_max_wait_lets_a_steady_stream_still_run(launched: Any, project_dir: Any) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05},
        triggers=_orders(project_dir, debounce_seconds=1.0, max_wait_seconds=2.0),
    )
    # Two streams with an event every 0.4 s: never a quiet second inside either, so only
    # max_wait starts a run, 2 s after each stream's first event (at 2.0 s and 5.5 s),
    # with that stream's newest event. The second stream begins 1.5 s after the first
    # run was due (DBOS releases delayed runs once a second), so it is a burst of its own.
    ids = _fire_at(settings, enqueuer, [0.0, 0.4, 0.8, 1.2, 1.6, 3.5, 3.9, 4.3, 4.7, 5.1])
    runs = {run_id: final(enqueuer, run_id)["status"] for run_id in ids}
    ran = [run_id for run_id, status in runs.items() if status == "succeeded"]
    assert ran == [ids[4], ids[9]], runs
    assert {runs[i] for i in ids if i not in ran} == {"superseded"}
    assert [j["parameters"]["n"] for j in ledger(settings).jobs()] == ["4", "9"]
