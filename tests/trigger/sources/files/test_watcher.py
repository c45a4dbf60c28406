"""The file-drop source: config, readiness, identity, the watch loop.

The watch loop offers to the real ingest path on SQLite, with no worker: what it
queued is read back from DBOS (``support.Queued``); tests/trigger/sources/files/
test_runs.py runs the same loop with a worker on both databases.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support import CONFIG_DIR, make_settings, wait_until
from tests.trigger.properties import examples
from tests.trigger.sources.files.support import Queued, WatcherThread, files_trigger
from trigger.core.errors import ConfigError, WatchDirError
from trigger.core.event import Event
from trigger.core.fileversion import FileVersion, event_id, file_event
from trigger.core.matching import decide
from trigger.core.settings import build_settings
from trigger.core.settings.files import FilesSource, Matcher
from trigger.core.text import escaped, problem
from trigger.sources.files.folder import check_dir, watch_dir
from trigger.sources.files.offer import files_filter
from trigger.sources.files.tracker import Tracker
from trigger.sources.files.watcher import watcher_status
from workflows.app import prepare_database
from workflows.intake import Enqueuer


@pytest.fixture
def watch(tmp_path: Path, project_dir: Path, landing: Path) -> Iterator[Any]:
    started: list[tuple[WatcherThread, Enqueuer]] = []

    def start(**files: Any) -> tuple[WatcherThread, Queued]:
        settings = make_settings(
            tmp_path, None, project_dir, triggers=[files_trigger(project_dir, landing, **files)]
        )
        prepare_database(settings)
        enqueuer = Enqueuer(settings)
        thread = WatcherThread(settings, enqueuer)
        started.append((thread.start(), enqueuer))
        wait_until(lambda: thread.watcher.last_scan_at is not None, what="the first scan")
        return thread, Queued(enqueuer, thread)

    yield start
    for thread, enqueuer in started:
        thread.stop()
        enqueuer.close()


# -- config --------------------------------------------------------------------------


def test_defaults_and_a_relative_dir_resolved_from_the_config_file(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = make_settings(
        tmp_path, None, project_dir, triggers=[files_trigger(project_dir, Path("in"))]
    )
    trig = settings.trigger("landing")
    assert trig.sources() == ["manual", "files"]
    assert trig.files is not None
    assert watch_dir(settings, trig) == tmp_path / "in"
    plain = FilesSource(dir=Path("/x"))
    assert (plain.patterns, plain.recursive, plain.settle_seconds) == (["*"], False, 2.0)
    assert (plain.after, plain.identity, plain.rescan_seconds) == ("leave", "stat", 300.0)


def test_a_bad_files_key_is_one_clear_config_error(tmp_path: Path, project_dir: Path) -> None:
    trig = files_trigger(project_dir, tmp_path, after="delete")
    with pytest.raises(ConfigError, match=r"triggers\.landing\.files\.after"):
        make_settings(tmp_path, None, project_dir, triggers=[trig])
    trig = files_trigger(project_dir, tmp_path, ready_marker="../{name}.done")
    with pytest.raises(ConfigError, match="ready_marker"):
        make_settings(tmp_path, None, project_dir, triggers=[trig])


def test_templates_may_use_file_fields_only_on_file_triggers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file_name"):
        build_settings({"triggers": [{"name": "t", "project_dir": ".", "branch": "b_{file_name}"}]})


def test_default_excludes_done_folders_and_markers() -> None:
    matcher = Matcher(
        FilesSource(dir=Path("/x"), patterns=["*.csv"], recursive=True, exclude=["skip_*"])
    )
    wanted = ["a.csv", "sub/b.csv"]
    unwanted = [
        ".a.csv", "a.csv.tmp", "a.csv.part", "a.csv.partial", "a.csv.crdownload", "a.csv~",
        ".#a.csv", "processed/a.csv", "sub/failed/a.csv", ".cache/a.csv", "skip_a.csv", "a.txt",
    ]  # fmt: skip
    assert [matcher.wanted(rel) for rel in wanted] == [True, True]
    assert [rel for rel in unwanted if matcher.wanted(rel)] == []
    flat = Matcher(FilesSource(dir=Path("/x"), patterns=["*.csv"]))
    assert not flat.wanted("sub/b.csv")
    marked = Matcher(FilesSource(dir=Path("/x"), ready_marker="{name}.done"))
    assert marked.marker_for("sub/a.csv") == "sub/a.csv.done"
    assert marked.is_marker("a.csv.done") and not marked.wanted("a.csv.done")
    folder = Matcher(FilesSource(dir=Path("/x"), ready_marker="_SUCCESS", recursive=True))
    assert folder.marker_for("day1/part-0.parquet") == "day1/_SUCCESS"


# -- readiness and identity -----------------------------------------------------------


def test_a_file_is_ready_only_after_it_stops_changing_for_the_settle_window() -> None:
    tracker = Tracker(settle_seconds=2.0)
    tracker.observe("a.csv", (10, 1), now=0.0)
    assert tracker.due(1.9) == []
    tracker.observe("a.csv", (20, 2), now=1.5)  # second half written
    assert tracker.due(2.5) == []
    [(rel, _key)] = tracker.due(3.5)
    assert tracker.confirm(rel, (20, 2), now=3.5)
    tracker.observe("a.csv", (20, 2), now=4.0)  # seen again by a rescan: nothing new
    assert tracker.due(10.0) == []
    tracker.observe("b.csv", (1, 1), now=0.0)
    [(rel, _)] = tracker.due(2.0)
    assert not tracker.confirm(rel, None, now=2.0)  # vanished before it was offered
    assert len(tracker) == 0


def test_event_ids_follow_the_file_version_or_its_content() -> None:
    stat = FilesSource(dir=Path("/x"))
    content = FilesSource(dir=Path("/x"), identity="content")
    v1 = FileVersion("a.csv", 10, 1_000)
    touched = FileVersion("a.csv", 10, 2_000)
    same = FileVersion("a.csv", 10, 1_000)
    assert event_id("t", stat, v1, None) == event_id("t", stat, same, None)
    assert event_id("t", stat, v1, None) != event_id("t", stat, touched, None)
    assert event_id("t2", stat, v1, None) != event_id("t", stat, v1, None)
    assert event_id("t", content, v1, "ab" * 32) == event_id("t", content, touched, "ab" * 32)
    assert event_id("t", content, v1, "ab" * 32) != event_id("t", content, v1, "cd" * 32)


def test_a_file_event_gives_every_template_field(tmp_path: Path, project_dir: Path) -> None:
    event = file_event(
        "landing", FilesSource(dir=tmp_path), tmp_path, FileVersion("orders.2026.csv", 5, 1e18)
    )
    fields = event.fields()
    assert fields["file_path"] == str(tmp_path / "orders.2026.csv")
    assert (fields["file_name"], fields["file_stem"], fields["file_ext"]) == (
        "orders.2026.csv",
        "orders.2026",
        "csv",
    )
    assert (fields["file_rel"], fields["file_dir"], fields["file_size"]) == (
        "orders.2026.csv",
        str(tmp_path),
        5,
    )
    assert fields["file_mtime"] == "2001-09-09T01:46:40Z"
    assert fields["event_date"] == "2001-09-09"  # the drop's date, the same on every sighting


def test_a_file_event_matches_only_its_own_trigger(tmp_path: Path, project_dir: Path) -> None:
    one = files_trigger(project_dir, tmp_path / "a")
    two = {**files_trigger(project_dir, tmp_path / "b"), "name": "other"}
    settings = make_settings(tmp_path, None, project_dir, triggers=[one, two])
    event = file_event(
        "landing", settings.trigger("landing").files, tmp_path / "a", FileVersion("x.csv", 1, 1)
    )
    verdicts = {d.trigger: d for d in decide(event, settings, files_filter)}
    assert verdicts["landing"].request is not None
    assert verdicts["landing"].request.parameters["size"] == "1"
    assert verdicts["landing"].request.branch_suffix == "landing_x"
    assert "another trigger" in str(verdicts["other"].reason)
    assert isinstance(event, Event) and event.kind == "files"


# -- the watch loop -------------------------------------------------------------------


def test_temp_name_then_rename_is_one_offer_and_excluded_names_none(
    watch: Any, landing: Path
) -> None:
    thread, queued = watch()
    for name in (".hidden.csv", "a.csv.tmp", "b.part", "c.crdownload", "d~", ".#e"):
        (landing / name).write_text("skip me")
    (landing / "a.csv.tmp").write_text("id,qty\n1,2\n")
    os.rename(landing / "a.csv.tmp", landing / "a.csv")
    wait_until(lambda: queued.rels() == ["a.csv"], what="a.csv to be offered")
    wait_until(lambda: len(thread.watcher.tracker) == 0, what="nothing left pending")
    assert queued.rels() == ["a.csv"]
    [request] = queued.requests
    assert request.file is not None and request.file["size"] == len("id,qty\n1,2\n")


def test_marker_mode_waits_for_the_companion_file(watch: Any, landing: Path) -> None:
    thread, queued = watch(ready_marker="{name}.done")
    (landing / "a.csv").write_text("data")
    wait_until(lambda: thread.watcher.status()["waiting_for_marker"] == 1, what="a.csv to wait")
    assert queued.requests == []
    (landing / "a.csv.done").write_text("")
    wait_until(lambda: queued.rels() == ["a.csv"], what="a.csv to be offered")
    assert queued.requests[0].file is not None
    assert queued.requests[0].file["marker"] == "a.csv.done"


def test_a_folder_marker_releases_every_file_beside_it(watch: Any, landing: Path) -> None:
    thread, queued = watch(ready_marker="_SUCCESS", recursive=True)
    (landing / "day1").mkdir()
    for n in range(3):
        (landing / "day1" / f"part-{n}.parquet").write_text(str(n))
    wait_until(lambda: thread.watcher.status()["waiting_for_marker"] == 3, what="3 waiting")
    (landing / "day1" / "_SUCCESS").write_text("")
    wait_until(lambda: len(queued.requests) == 3, what="3 offers")
    assert queued.rels() == [f"day1/part-{n}.parquet" for n in range(3)]


def test_new_content_is_a_second_offer_and_a_touch_with_content_identity_none(
    watch: Any, landing: Path
) -> None:
    _thread, queued = watch(identity="content")
    path = landing / "a.csv"
    path.write_text("v1")
    wait_until(lambda: len(queued.requests) == 1, what="the first version")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
    wait_until(lambda: queued.duplicates == 1, what="the touched file to be re-offered")
    assert len(queued.requests) == 1
    path.write_text("v2")
    wait_until(lambda: len(queued.requests) == 2, what="the new content")
    shas = [r.summary["file_sha256"] for r in queued.requests]
    assert shas[0] != shas[1] and all(isinstance(s, str) and len(s) == 64 for s in shas)


def test_symlinks_out_of_the_dir_and_names_that_cannot_be_values_are_skipped_saying_why(
    watch: Any, landing: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("outside")
    (landing / "escape.csv").symlink_to(secret)
    (landing / "inside.csv").symlink_to(landing / "real.dat")
    (landing / "real.dat").write_text("inside")
    (landing / "bad\nname.csv").write_text("x")
    (landing / "tab\x1b[31m.csv").write_text("x")
    Path(os.fsdecode(os.fsencode(landing) + b"/latin1-\xe9.csv")).write_bytes(b"x")
    thread, queued = watch(patterns=["*.csv"])
    wait_until(lambda: thread.watcher.counts["skipped"] == 4, what="four skips")
    wait_until(lambda: len(queued.requests) == 1, what="one offer")
    assert queued.rels() == ["inside.csv"]
    skips = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping"))
    assert [line.split(" in ", 1)[0] for line in skips] == [
        "skipping bad\\nname.csv",
        "skipping escape.csv",
        "skipping latin1-\\udce9.csv",
        "skipping tab\\x1b[31m.csv",
    ]
    assert skips[0].endswith("its name has a control character (U+000A) at position 3; rename it")
    assert "outside the watched dir" in skips[1]
    assert skips[2].endswith("its name is not valid UTF-8; rename it")


def test_a_dir_removed_while_watching_is_reported_and_watched_again(
    watch: Any, landing: Path
) -> None:
    thread, queued = watch()
    landing.rmdir()
    wait_until(lambda: thread.watcher.state == "missing", what="state missing")
    [status] = [s for s in watcher_status() if s["dir"] == str(landing)]
    assert status["state"] == "missing" and "disappeared" in status["last_error"]
    landing.mkdir()
    wait_until(lambda: thread.watcher.state == "watching", timeout=30, what="watching again")
    (landing / "late.csv").write_text("x")
    wait_until(lambda: queued.rels() == ["late.csv"], what="late.csv offered")


def test_an_unusable_dir_at_start_up_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WatchDirError) as info:
        check_dir("landing", tmp_path / "nope")
    assert "\n" not in str(info.value) and "does not exist" in str(info.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(WatchDirError, match="not a folder"):
        check_dir("landing", tmp_path / "file")


def test_the_file_drop_example_config_loads() -> None:
    from trigger.core.settings import load_settings

    example = CONFIG_DIR / "file-drop.toml"
    settings = load_settings(example, environ={})
    trig = settings.trigger("landing")
    assert trig.files is not None and trig.files.after == "move"
    assert watch_dir(settings, trig) == example.parent / "landing"


def test_check_reports_a_missing_watched_dir(tmp_path: Path, project_dir: Path) -> None:
    from trigger.ops.checks import failed, run_checks

    settings = make_settings(
        tmp_path, None, project_dir, triggers=[files_trigger(project_dir, tmp_path / "nope")]
    )
    checks = run_checks(settings)
    [check] = [c for c in checks if c.name == "watch landing"]
    assert failed(checks) and check.status == "fail" and "does not exist" in check.message


def test_a_file_deleted_before_it_settles_starts_nothing(watch: Any, landing: Path) -> None:
    thread, queued = watch(settle_seconds=1.0)
    (landing / "gone.csv").write_text("x")
    wait_until(lambda: thread.watcher.tracker.is_pending("gone.csv"), what="gone.csv pending")
    (landing / "gone.csv").unlink()
    (landing / "kept.csv").write_text("y")
    wait_until(lambda: queued.rels() == ["kept.csv"], what="kept.csv offered")
    wait_until(lambda: len(thread.watcher.tracker) == 0, what="nothing left pending")
    assert queued.rels() == ["kept.csv"]


_NAMES = st.binary(min_size=1, max_size=250) | st.text(min_size=1, max_size=120).map(str.encode)


@pytest.fixture
def watching(watch: Any) -> tuple[WatcherThread, Queued]:
    """One watcher for all the examples of a property: settling quickly."""
    started: tuple[WatcherThread, Queued] = watch(settle_seconds=0.05)
    return started


@examples(40)
@given(names=st.lists(_NAMES, min_size=1, max_size=4))
@example(names=[b"bad\nname.csv", b"latin1-\xe9.csv", b"ok.csv"])
def test_any_file_name_is_offered_or_skipped_saying_why_and_watching_goes_on(
    watching: tuple[WatcherThread, Queued],
    landing: Path,
    caplog: pytest.LogCaptureFixture,
    names: list[bytes],
) -> None:
    thread, queued = watching
    expected: dict[str, str] = {}
    for raw in names:
        number = len(list(landing.iterdir()))
        name = f"{number:04d}-".encode() + raw.replace(b"/", b"_").replace(b"\x00", b"_")[:250]
        rel = os.fsdecode(name)
        Path(os.fsdecode(os.fsencode(landing) + b"/" + name)).write_bytes(b"x")
        if thread.watcher.matcher.wanted(rel):
            expected[rel] = "offered" if problem(rel) is None else "skipped"

    def settled() -> bool:
        offered = set(queued.rels())
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
        return all(
            rel in offered
            if how == "offered"
            else any(line.startswith(f"skipping {escaped(rel)} in ") for line in lines)
            for rel, how in expected.items()
        )

    wait_until(settled, timeout=20, what=f"each of {expected} offered or skipped")
    assert not {rel for rel, how in expected.items() if how == "skipped"} & set(queued.rels())
    assert thread.error is None and thread.watcher.state == "watching"
    assert not [r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()]
