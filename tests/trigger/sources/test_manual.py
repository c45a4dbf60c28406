"""``fire`` for every kind of trigger: the event its own source would make, through the
one ingest path, or one sentence saying why not and what would do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support import final_run, make_settings
from tests.trigger.firekit import branch_at, kinds, queued, settled
from tests.trigger.hookkit import make_repo
from trigger.core.errors import FireError
from trigger.core.fileversion import FileVersion, event_id
from trigger.sources.manual import Fire, fire, fired_event, plain_refusal
from workflows.bauplan.rehearsal import Ledger
from workflows.runtime import ledger_path


@pytest.fixture
def fired(launched: Any, tmp_path: Path, project_dir: Path, landing: Path) -> Any:
    upstream = tmp_path / "upstream"
    shas = make_repo(upstream)
    settings, enqueuer = launched(triggers=kinds(project_dir, landing, upstream))
    return settings, enqueuer, upstream, shas


def test_a_schedule_trigger_fires_as_a_tick_of_this_second(fired: Any) -> None:
    _, enqueuer, _, _ = fired
    before = datetime.now(UTC).replace(microsecond=0)
    first = fire(enqueuer, Fire("nightly", fired_by="ana"))
    after = datetime.now(UTC)
    request = queued(enqueuer.client, first.run.run_id)
    at = datetime.fromisoformat(str(request.parameters["at"]))
    assert (
        before <= at <= after
        and at.utcoffset() == at.astimezone(ZoneInfo("Europe/Berlin")).utcoffset()
    )
    assert request.parameters["day"] == at.date().isoformat()
    assert request.branch_suffix == f"nightly_{at.date().isoformat().replace('-', '_')}"
    assert first.event.kind == "schedule" and first.event.attributes["fired_by"] == "ana"
    # Without a key each fire is a new tick; with one, asking again is the same run.
    assert fire(enqueuer, Fire("nightly")).run.run_id != first.run.run_id
    keyed = fire(enqueuer, Fire("nightly", event_id="now-1"))
    again = fire(enqueuer, Fire("nightly", event_id="now-1"))
    assert (keyed.run.run_id, keyed.run.duplicate) == ("run:nightly:now-1", False)
    assert (again.run.run_id, again.run.duplicate) == ("run:nightly:now-1", True)


def test_a_file_trigger_fires_with_a_file_as_the_watcher_would(fired: Any, landing: Path) -> None:
    settings, enqueuer, _, _ = fired
    drop = settled(landing / "orders-2026.csv")
    first = fire(enqueuer, Fire("landing", file=str(drop)))
    request = queued(enqueuer.client, first.run.run_id)
    assert request.parameters == {
        "source_file": str(drop),
        "rel": "orders-2026.csv",
        "size": str(drop.stat().st_size),
    }
    assert request.branch_suffix == "landing_orders_2026"
    assert request.file is not None and request.file["rel"] == "orders-2026.csv"
    info = drop.stat()
    version = FileVersion("orders-2026.csv", info.st_size, info.st_mtime_ns)
    trig = settings.trigger("landing")
    assert trig.files is not None
    # The watcher's own identity: a file it offers too runs once.
    assert first.event.id == event_id("landing", trig.files, version, None)
    again = fire(enqueuer, Fire("landing", file="orders-2026.csv"))  # relative to the dir
    assert (again.run.run_id, again.run.duplicate) == (first.run.run_id, True)


def test_a_git_trigger_fires_with_a_commit_fetched_and_run_like_a_push(fired: Any) -> None:
    settings, enqueuer, upstream, (old, new) = fired
    first = fire(enqueuer, Fire("orders", sha=new, branch="main"))
    request = queued(enqueuer.client, first.run.run_id)
    assert request.parameters == {"sha": new, "short": new[:7], "repo": "acme/lakehouse"}
    assert request.branch_suffix == "orders_main"
    assert (request.git_source, request.git_sha) == (str(upstream), new)
    assert request.project_subdir == "pipelines/orders"
    assert first.event.attributes["head_message"] == "second"
    assert first.event.attributes["git_ref"] == "refs/heads/main"
    run = final_run(enqueuer, first.run.run_id)
    assert run["status"] == "succeeded", run["error"]
    [job] = Ledger(ledger_path(settings)).jobs()
    assert job["code_version"] == new
    again = fire(enqueuer, Fire("orders", sha=new.upper(), branch="refs/heads/main"))
    assert (again.run.run_id, again.run.duplicate) == (first.run.run_id, True)
    older = fire(enqueuer, Fire("orders", sha=old, branch="main"))
    assert older.run.run_id != first.run.run_id and not older.run.duplicate
    # A branch made after the mirror was: fetched again before it is judged.
    branch_at(upstream, "later", new)
    later = fire(enqueuer, Fire("orders", sha=new, branch="later"))
    assert queued(enqueuer.client, later.run.run_id).branch_suffix == "orders_later"


def test_a_git_trigger_without_a_source_takes_the_sha_as_a_push_gives_it(fired: Any) -> None:
    _, enqueuer, _, (_, new) = fired
    pushed = fire(enqueuer, Fire("pushed", sha=new))
    assert pushed.event.kind == "gitlab" and pushed.event.attributes["git_ref"] is None
    assert queued(enqueuer.client, pushed.run.run_id).parameters == {"sha": new}


def _settings(tmp_path: Path, project_dir: Path, landing: Path) -> tuple[Any, Path, list[str]]:
    upstream = tmp_path / "upstream"
    shas = make_repo(upstream)
    settings = make_settings(
        tmp_path, None, project_dir, triggers=kinds(project_dir, landing, upstream)
    )
    return settings, upstream, shas


def _refusal(settings: Any, **asked: Any) -> FireError:
    trig = settings.trigger(asked.pop("trigger"))
    with pytest.raises(FireError) as refused:
        fired_event(settings, trig, Fire(trig.name, **asked), {})
    return refused.value


def test_a_file_the_watcher_would_not_offer_is_refused_naming_it_and_why(
    tmp_path: Path, project_dir: Path, landing: Path
) -> None:
    settings, _, _ = _settings(tmp_path, project_dir, landing)
    (landing / "sub").mkdir()
    outside = settled(tmp_path / "elsewhere.csv")
    (landing / "link.csv").symlink_to(outside)
    fresh = landing / "fresh.csv"
    fresh.write_text("x\n")
    cases = {
        str(outside): f"file {outside} is not inside {landing}, the folder trigger 'landing'",
        str(settled(landing / "notes.txt")): "does not match files.patterns (*.csv)",
        str(settled(landing / "orders.csv.tmp")): "is excluded",
        str(settled(landing / "sub" / "deep.csv")): "is in a sub-folder",
        str(landing / "missing.csv"): f"file {landing / 'missing.csv'} does not exist",
        str(landing / "link.csv"): "outside the watched dir; not following",
        str(fresh): "counts as finished once unchanged for 1s (files.settle_seconds)",
    }
    for path, words in cases.items():
        refused = _refusal(settings, trigger="landing", file=path)
        assert words in str(refused) and refused.field == "file", (path, str(refused))
    assert "watches no folder" in str(_refusal(settings, trigger="nightly", file=str(fresh)))


def test_a_file_waits_for_its_ready_marker_when_the_trigger_has_one(
    tmp_path: Path, project_dir: Path, landing: Path
) -> None:
    triggers = kinds(project_dir, landing, tmp_path / "none")
    triggers[1]["files"]["ready_marker"] = "{name}.done"
    settings = make_settings(tmp_path, None, project_dir, triggers=triggers)
    drop = settled(landing / "a.csv")
    refused = _refusal(settings, trigger="landing", file=str(drop))
    assert "waits for its ready marker a.csv.done, which is not there yet" in str(refused)
    settled(landing / "a.csv.done", "")
    event, _ = fired_event(
        settings, settings.trigger("landing"), Fire("landing", file=str(drop)), {}
    )
    assert event.attributes["file_rel"] == "a.csv"


def test_a_bad_commit_or_branch_is_refused_before_anything_is_enqueued(
    tmp_path: Path, project_dir: Path, landing: Path
) -> None:
    settings, upstream, (old, new) = _settings(tmp_path, project_dir, landing)
    branch_at(upstream, "stale", old)
    cases = [
        ({"sha": "abc123"}, "sha", "commit 'abc123' is not a 40-character hex sha"),
        ({"sha": "f" * 40, "branch": "main"}, "sha", f"commit {'f' * 40} is not in {upstream}"),
        ({"sha": new, "branch": "a..b"}, "branch", "branch 'a..b' contains '..'"),
        ({"sha": new, "branch": "-x"}, "branch", "branch '-x' starts with '-'"),
        ({"sha": new, "branch": "stale"}, "branch", f"commit {new[:12]} is not on branch 'stale'"),
        ({"sha": new}, "branch", "uses git_branch in its templates; pass branch"),
        ({"branch": "main"}, "branch", "a branch goes with a commit: give the sha too; pass sha"),
    ]
    for asked, where, words in cases:
        refused = _refusal(settings, trigger="orders", **asked)
        assert words in str(refused) and refused.field == where, (asked, str(refused))
    assert "no [triggers.github] or [triggers.gitlab]" in str(
        _refusal(settings, trigger="nightly", sha=new)
    )


def test_a_plain_fire_says_what_each_kind_needs(
    tmp_path: Path, project_dir: Path, landing: Path
) -> None:
    settings, _, _ = _settings(tmp_path, project_dir, landing)
    said = {
        name: plain_refusal(settings.trigger(name))
        for name in ("nightly", "landing", "orders", "pushed", "hooked")
    }
    assert said["nightly"] is None
    assert str(said["landing"]) == (
        f"trigger 'landing' runs on files dropped in {landing} and its templates use "
        "file_path, file_rel, file_size, file_stem; pass file"
    )
    assert str(said["orders"]) == (
        "trigger 'orders' runs pipelines/orders of github pushes to acme/lakehouse; "
        "pass sha and branch"
    )
    assert str(said["pushed"]) == (
        "trigger 'pushed' runs on gitlab pushes to acme/lake and its templates use git_sha; "
        "pass sha (and branch)"
    )
    hooked = said["hooked"]
    assert hooked is not None and not hooked.needs
    assert "cannot be fired by hand: its templates use body_day" in str(hooked)
    assert "--" not in "".join(str(e) for e in said.values())
