"""Signed generic webhooks (Standard Webhooks) over real HTTP on loopback."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support import final_run, make_settings
from tests.trigger.fuzzkit import (
    HOOK_STATUSES,
    JSON_VALUES,
    Ingress,
    json_bytes,
    reads_back,
)
from tests.trigger.hookkit import (
    body_of,
    generic_trigger,
    ingress_server,
    standard_headers,
)
from tests.trigger.properties import OUTSIDE_TEXT, examples


def _post(url: str, data: dict[str, Any] | bytes, trigger: str = "loader", **kw: Any):
    body = body_of(data)
    headers = standard_headers(body, **kw)
    return httpx.post(f"{url}/hooks/generic/{trigger}", content=body, headers=headers, timeout=30)


@pytest.fixture
def offline(tmp_path: Path, project_dir: Path) -> Any:
    settings = make_settings(tmp_path, None, project_dir, triggers=[generic_trigger(project_dir)])
    settings.state_path.mkdir(parents=True, exist_ok=True)
    return lambda: ingress_server(settings)


def test_a_signed_body_runs_with_its_fields_as_templates(hooks: Any, project_dir: Path) -> None:
    _settings, enqueuer, url = hooks(triggers=[generic_trigger(project_dir)])
    response = _post(url, {"table": "orders", "rows": 12}, msg_id="msg_2Lx")
    assert response.status_code == 202, response.text
    again = _post(url, {"table": "orders", "rows": 12}, msg_id="msg_2Lx")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    run_id = response.json()["runs"][0]
    assert run_id == "run:loader:wh-msg_2Lx"
    run = final_run(enqueuer, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    assert run["branch"] == "rehearsal.load_orders"
    assert run["parameters"] == {"table": "orders", "rows": "12"}


def test_bad_old_or_foreign_signatures_are_401(offline: Any) -> None:
    old = datetime.now(UTC) - timedelta(minutes=6)
    body = body_of({"table": "orders", "rows": 1})
    with offline() as server:
        stale = _post(server.url, body, when=old)
        foreign = _post(server.url, body, secret="whsec_" + "QUJD" * 8)
        headers = {**standard_headers(body), "webhook-signature": "garbage"}
        garbage = httpx.post(f"{server.url}/hooks/generic/loader", content=body, headers=headers)
        unsigned = httpx.post(
            f"{server.url}/hooks/generic/loader",
            content=body,
            headers={"Content-Type": "application/json", "webhook-id": "x"},
        )
    assert [r.status_code for r in (stale, foreign, garbage, unsigned)] == [401] * 4


OLD_KEY = "whsec_" + "T0xE" * 8


def test_during_a_key_rotation_either_secret_verifies(
    offline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Standard Webhooks rotation: the variable holds the new and the old secret, space
    separated, and the sender may put one signature per secret in the header."""
    from tests.trigger.hookkit import WHSEC

    monkeypatch.setenv("GENERIC_WEBHOOK_SECRET", f"{WHSEC} {OLD_KEY}")
    body = body_of({"table": "orders", "rows": 1})
    both = standard_headers(body, msg_id="m3")
    both["webhook-signature"] += (
        " " + standard_headers(body, secret=OLD_KEY, msg_id="m3")["webhook-signature"]
    )
    foreign_first = standard_headers(body, msg_id="m4")
    foreign_first["webhook-signature"] = (
        standard_headers(body, secret="whsec_" + "QUJD" * 8, msg_id="m4")["webhook-signature"]
        + " "
        + foreign_first["webhook-signature"]
    )
    with offline() as server:
        new = _post(server.url, body, msg_id="m1")
        old = _post(server.url, body, secret=OLD_KEY, msg_id="m2")
        signed_twice = httpx.post(
            f"{server.url}/hooks/generic/loader", content=body, headers=both, timeout=30
        )
        one_good_of_two = httpx.post(
            f"{server.url}/hooks/generic/loader", content=body, headers=foreign_first, timeout=30
        )
        foreign = _post(server.url, body, secret="whsec_" + "QUJD" * 8, msg_id="m5")
    assert [r.status_code for r in (new, old, signed_twice, one_good_of_two)] == [202] * 4
    assert foreign.status_code == 401


def test_the_body_is_checked_against_the_declared_fields(offline: Any) -> None:
    with offline() as server:
        unknown = _post(server.url, {"table": "t", "rows": 1, "drop": "x"}, msg_id="a")
        wrong_type = _post(server.url, {"table": "t", "rows": "many"}, msg_id="b")
        missing = _post(server.url, {"rows": 1}, msg_id="c")
        control = _post(server.url, {"table": "t\n", "rows": 1}, msg_id="d")
        malformed = _post(server.url, b"{", msg_id="e")
        nobody = _post(server.url, {"table": "t", "rows": 1}, trigger="nobody", msg_id="f")
    assert "'drop'" in unknown.json()["error"]
    assert [r.status_code for r in (unknown, wrong_type, missing, control, malformed)] == [400] * 5
    assert nobody.status_code == 404


def test_string_values_follow_the_same_rule_as_git_pushes(offline: Any) -> None:
    with offline() as server:
        c1 = _post(server.url, {"table": "t\x85", "rows": 1}, msg_id="g")
        bidi = _post(server.url, {"table": "t\u202eexe.", "rows": 1}, msg_id="h")
        lone = _post(server.url, {"table": "t\ud800", "rows": 1}, msg_id="i")
    assert [r.status_code for r in (c1, bidi, lone)] == [400] * 3
    assert c1.json()["error"] == (
        "body key 'table' = 't\\x85' has a control character (U+0085) at position 1; refused"
    )
    assert "(U+202E)" in bidi.json()["error"]
    assert "field table is not valid Unicode" in lone.json()["error"]


@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[str, bytes]:
    """A signed generic delivery (the signature covers the body as UTF-8 text, so a body
    that is not UTF-8 cannot verify): declared and undeclared keys, any JSON values."""
    plain = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
    data: dict[str, Any] = {"table": draw(plain | OUTSIDE_TEXT | JSON_VALUES)}
    for key, values in (("rows", st.floats() | st.integers() | JSON_VALUES), ("full", JSON_VALUES)):
        if draw(st.booleans()):
            data[key] = draw(values)
    data.update(draw(st.just({}) | st.dictionaries(OUTSIDE_TEXT, JSON_VALUES, max_size=1)))
    body = draw(st.binary(max_size=100) | st.builds(json_bytes, st.just(data), st.booleans()))
    # A "/" in the name is routing (FastAPI redirects a trailing one), not a string rule.
    other = OUTSIDE_TEXT.map(lambda t: "x" + t.replace("/", ""))
    trigger = draw(st.just("loader") | st.just("loader") | other)
    return quote(trigger.encode("utf-8", "surrogatepass"), safe=""), body


@examples(150)
@given(delivery=_deliveries())
@example(delivery=("loader", b'{"table": "t\\ud800"}'))
def test_any_signed_body_gets_a_documented_answer_and_what_is_taken_reads_back(
    ingress: Ingress, delivery: tuple[str, bytes]
) -> None:
    trigger, body = delivery
    msg_id = f"msg_{uuid.uuid4().hex}"
    try:
        headers = standard_headers(body, msg_id=msg_id)
    except UnicodeDecodeError:  # the signature covers UTF-8 text: this one cannot verify
        headers = standard_headers(b"{}", msg_id=msg_id)
    answer = ingress.http.post(f"/hooks/generic/{trigger}", content=body, headers=headers)
    assert answer.status_code in HOOK_STATUSES, answer.text
    reads_back(ingress, answer)
