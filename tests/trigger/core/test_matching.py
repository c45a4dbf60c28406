"""Matching is pure: the same event and config give the same requests and run ids."""

from __future__ import annotations

import re
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.support import make_settings, match
from trigger.core.errors import BadParameterError, FireError
from trigger.core.event import Event, manual_event
from trigger.core.matching import (
    Decision,
    RunRequest,
    decide,
    parse_params,
    run_id_for,
    sanitise_suffix,
)
from trigger.sources.manual import manual_filter


def test_a_manual_event_matches_only_its_trigger(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    event = manual_event("orders", {"run_date": "2026-11-23"}, event_id="abc", fired_by="ana")
    [request] = match(event, settings)
    assert request.run_id == "run:orders:abc"
    assert request.branch_suffix == "orders_2026_11_23"
    assert request.parameters == {"run_date": "2026-11-23", "source": "fire"}
    assert request.project_dir == str(project_dir)
    assert request.summary["fired_by"] == "ana"
    assert match(manual_event("other", {}, event_id="abc"), settings) == []


def test_run_ids_derive_from_the_event_and_are_stable() -> None:
    assert run_id_for("orders", "delivery-1") == run_id_for("orders", "delivery-1")
    assert run_id_for("orders", "a") != run_id_for("landing", "a")
    hashed = run_id_for("landing", "dir/with spaces/ünïcode.csv")
    assert hashed.startswith("run:landing:h-") and " " not in hashed


@pytest.mark.parametrize(
    ("rendered", "expected"),
    [("orders_release/1.2", "orders_release_1_2"), ("a--b", "a_b"), ("__x__", "x")],
)
def test_branch_suffixes_are_made_bauplan_safe(rendered: str, expected: str) -> None:
    assert sanitise_suffix(rendered, trigger="t") == expected


def test_a_suffix_with_nothing_left_is_refused() -> None:
    with pytest.raises(Exception, match="no letters or digits"):
        sanitise_suffix("/../", trigger="t")


def test_a_render_failure_is_a_reason_not_a_crash(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    event = Event(kind="manual", id="e", attributes={"trigger": "orders"})
    [decision] = decide(event, settings, manual_filter)
    assert decision.request is None
    assert "run_date" in (decision.reason or "")


def test_fire_params_must_be_declared_inputs(tmp_path: Path, project_dir: Path) -> None:
    trig = make_settings(tmp_path, None, project_dir).trigger("orders")
    assert parse_params(trig, ["run_date=2026-11-23"]) == {"run_date": "2026-11-23"}
    with pytest.raises(BadParameterError, match="does not declare it in inputs"):
        parse_params(trig, ["run_date=x", "table=y"])
    with pytest.raises(BadParameterError, match="name=value"):
        parse_params(trig, ["run_date"])
    with pytest.raises(FireError, match="needs a value for its inputs: run_date") as missing:
        parse_params(trig, [])
    assert str(missing.value).endswith("; pass params.run_date")
    with pytest.raises(BadParameterError, match="control character"):
        parse_params(trig, ["run_date=a\nb"])


def test_fire_params_follow_the_rule_of_every_source(tmp_path: Path, project_dir: Path) -> None:
    trig = make_settings(tmp_path, None, project_dir).trigger("orders")
    # A lone surrogate is what an argument that is not UTF-8 becomes (surrogateescape).
    for value, why in (("2026\x85", "U+0085"), ("\u202e2026", "U+202E"), ("26\udcff", "U+DCFF")):
        with pytest.raises(
            BadParameterError, match=rf"input run_date: the value .*\({re.escape(why)}\)"
        ):
            parse_params(trig, [f"run_date={value}"])
    with pytest.raises(BadParameterError, match=r"input 'x\\ud800'"):
        parse_params(trig, ["x\ud800=1"])


def test_a_request_as_dict_is_what_asdict_gives_and_a_copy(
    tmp_path: Path, project_dir: Path
) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    event = manual_event("orders", {"run_date": "2026-11-23"}, event_id="e-1")
    request = replace(
        match(event, settings)[0], file={"rel": "a.csv", "after": {"move_to": ["done"]}}
    )
    data = request.as_dict()
    assert data == asdict(request)
    assert list(data) == list(asdict(request))
    data["summary"]["id"] = "changed"
    data["file"]["after"]["move_to"].append("x")
    assert request.summary["id"] == "e-1"
    assert request.file == {"rel": "a.csv", "after": {"move_to": ["done"]}}
    assert RunRequest.from_dict(request.as_dict()) == request


def test_event_date_and_time_fields_are_utc() -> None:
    stamp = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=timezone(timedelta(hours=2)))
    values = Event(kind="manual", id="e-1", received_at=stamp).fields()
    assert values["event_date"] == "2026-03-04"
    assert values["event_time"] == "2026-03-04T03:06:07Z"


def test_decide_can_narrow_to_some_triggers(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    event = manual_event("orders", {"run_date": "2026-11-23"}, event_id="e-1")
    assert [d.trigger for d in decide(event, settings, manual_filter, [])] == []
    narrowed = decide(event, settings, manual_filter, settings.triggers)
    assert narrowed == decide(event, settings, manual_filter)


def test_decide_asks_only_the_filter_it_is_given(tmp_path: Path, project_dir: Path) -> None:
    settings = make_settings(tmp_path, None, project_dir)
    event = manual_event("orders", {"run_date": "2026-11-23"}, event_id="e-1")
    [decision] = decide(event, settings, lambda _event, _trig: "the source says no")
    assert decision == Decision("orders", None, "the source says no")


def test_a_long_list_of_changed_paths_is_cut_at_a_whole_path_in_the_summary(
    tmp_path: Path, project_dir: Path
) -> None:
    """The summary keeps values short; cutting a JSON array mid-string left text that
    no reader could turn back into the list ``runs show`` and the API give."""
    import json

    from trigger.core.event import readable_attributes

    settings = make_settings(tmp_path, None, project_dir)
    paths = [f"pipelines/orders/model_{i:03d}.sql" for i in range(40)]
    event = manual_event("orders", {"run_date": "d"}, event_id="many")
    event = event.model_copy(
        update={"attributes": {**event.attributes, "changed_paths": json.dumps(paths)}}
    )
    [request] = match(event, settings)
    assert isinstance(request.summary["changed_paths"], str)
    assert len(request.summary["changed_paths"]) <= 300
    kept = readable_attributes(request.summary)["changed_paths"]
    assert kept and kept == paths[: len(kept)] and len(kept) < len(paths)
    assert readable_attributes(event.attributes)["changed_paths"] == paths
