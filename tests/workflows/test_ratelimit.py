"""The per-branch rate windows on both databases: a start fits or says when it will,
concurrent reservers never overfill a window, and a start that was recorded but not
submitted (a crash, a cancel, a supersede) never stays counted by mistake."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import wait_until
from trigger.core.settings.flow import BranchLimit
from workflows.ratelimit import IN_FLIGHT_SECONDS, Windows, describe, earliest
from workflows.store import Store, starts

TWO_PER_MINUTE = BranchLimit(runs=2, period_seconds=60)


@pytest.fixture
def windows(settings_factory: Any) -> Iterator[Windows]:
    settings = settings_factory()
    settings.state_path.mkdir(parents=True, exist_ok=True)
    url = settings.database_url()
    Store(url, create_database=True).close()  # our tables
    made = Windows(url)
    yield made
    made.close()


def _recorded(windows: Windows, window: str) -> dict[str, tuple[float, bool]]:
    with windows.engine.connect() as conn:
        rows = conn.execute(starts.select().where(starts.c.window == window)).all()
    return {r.run_id: (r.at, r.confirmed) for r in rows}


def _submitted(windows: Windows, window: str, run_id: str) -> float:
    slot = windows.reserve(window, run_id, TWO_PER_MINUTE)
    assert slot.wait_seconds() == 0, slot
    windows.confirm(run_id)
    return slot.at


def test_starts_fit_until_the_window_is_full_then_say_when(windows: Windows) -> None:
    first = _submitted(windows, "u.b", "r1")
    _submitted(windows, "u.b", "r2")
    full = windows.reserve("u.b", "r3", TWO_PER_MINUTE)
    assert full.count == 2
    assert first + 60 - 1 < full.at <= first + 60 + 1
    assert 58 < full.wait_seconds() <= 60
    assert "r3" not in _recorded(windows, "u.b")  # a full window records nothing
    assert describe(full.as_dict()).endswith("(2 starts in the last 60s, limit 2)")
    # Another branch, or another namespace of the same branch, has its own window.
    assert windows.reserve("u.other", "r4", TWO_PER_MINUTE).wait_seconds() == 0
    assert windows.reserve("u.b~c1-r1p10", "r5", TWO_PER_MINUTE).wait_seconds() == 0


def test_a_run_reserving_again_after_a_crash_replaces_its_unsubmitted_start(
    windows: Windows,
) -> None:
    _submitted(windows, "u.b", "r1")
    windows.reserve("u.b", "r2", TWO_PER_MINUTE)  # recorded, then the worker died
    assert _recorded(windows, "u.b")["r2"][1] is False
    again = windows.reserve("u.b", "r2", TWO_PER_MINUTE)  # resumed: its own start is not in the way
    assert again.wait_seconds() == 0 and again.count == 1
    assert sorted(_recorded(windows, "u.b")) == ["r1", "r2"]


def test_a_submitted_start_keeps_its_place_and_moves_to_the_submit_time(windows: Windows) -> None:
    slot = windows.reserve("u.b", "r1", TWO_PER_MINUTE)
    submitted = wait_until(lambda: (now := time.time()) > slot.at and now, what="time to pass")
    windows.confirm("r1")
    at, confirmed = _recorded(windows, "u.b")["r1"]
    assert confirmed and at >= submitted > slot.at
    # A resumed run that already submitted finds its start; nothing is added.
    assert windows.reserve("u.b", "r1", TWO_PER_MINUTE).at == at
    assert len(_recorded(windows, "u.b")) == 1


def test_release_gives_back_only_an_unsubmitted_start(windows: Windows) -> None:
    _submitted(windows, "u.b", "done")
    windows.reserve("u.b", "cancelled", TWO_PER_MINUTE)
    windows.release(["done", "cancelled", "never-seen"])
    assert list(_recorded(windows, "u.b")) == ["done"]


def test_a_start_in_flight_makes_others_look_again_shortly(windows: Windows) -> None:
    windows.reserve("u.b", "submitting", TWO_PER_MINUTE)
    other = windows.reserve("u.b", "next", TWO_PER_MINUTE)
    assert 0 < other.wait_seconds() <= 1
    windows.confirm("submitting")
    assert windows.reserve("u.b", "next", TWO_PER_MINUTE).wait_seconds() == 0


def test_a_start_left_unconfirmed_by_a_crash_counts_at_its_time_after_a_while(
    windows: Windows,
) -> None:
    windows.reserve("u.b", "crashed", TWO_PER_MINUTE)
    with windows.engine.begin() as conn:
        conn.execute(
            starts.update()
            .where(starts.c.run_id == "crashed")
            .values(at=time.time() - IN_FLIGHT_SECONDS - 1)
        )
    assert windows.reserve("u.b", "next", TWO_PER_MINUTE).wait_seconds() == 0
    assert windows.reserve("u.b", "third", TWO_PER_MINUTE).count == 2


def test_concurrent_reservers_never_put_more_starts_in_a_window_than_the_limit(
    windows: Windows,
) -> None:
    limit = BranchLimit(runs=3, period_seconds=60)
    granted: list[str] = []
    lock = threading.Lock()

    def reserver(n: int) -> None:
        slot = windows.reserve("u.busy", f"r{n}", limit)
        if slot.wait_seconds() == 0:
            windows.confirm(f"r{n}")
            with lock:
                granted.append(f"r{n}")

    threads = [threading.Thread(target=reserver, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(granted) <= 3
    assert sorted(_recorded(windows, "u.busy")) == sorted(granted)


@given(
    ages=st.lists(st.floats(min_value=0, max_value=59.999), max_size=8),
    runs=st.integers(min_value=1, max_value=5),
)
def test_earliest_is_the_first_moment_fewer_than_the_limit_remain_in_the_window(
    ages: list[float], runs: int
) -> None:
    now, limit = 1_000.0, BranchLimit(runs=runs, period_seconds=60)
    times = [now - age for age in ages]
    at = earliest(times, limit, now)
    assert at >= now
    within = [t for t in times if at - 60 < t <= at]
    assert len(within) < runs  # a start at ``at`` fits
    if at > now:  # and not a moment sooner
        assert len([t for t in times if at - 0.002 - 60 < t]) >= runs
