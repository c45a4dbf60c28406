"""CloudEvents over HTTP (binding 1.0.2), binary and structured mode, on loopback."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import final_run, make_settings
from tests.trigger.fuzzkit import HOOK_STATUSES, JSON_VALUES, Ingress, reads_back
from tests.trigger.hookkit import (
    CE_TOKEN,
    cloudevents_trigger,
    ingress_server,
    standard_headers,
)
from tests.trigger.properties import OUTSIDE_TEXT, examples
from trigger.sources.webhooks.cloudevents import identity

STRUCTURED = "application/cloudevents+json"


def binary(
    url: str,
    data: Any,
    *,
    ce_id: str = "e-1",
    source: str = "https://acme.example/loader",
    kind: str = "com.acme.table.loaded",
    trigger: str = "loaded",
    signed: bool = True,
    **headers: str,
) -> httpx.Response:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    sent = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": ce_id,
        "ce-source": source,
        "ce-type": kind,
        **(standard_headers(body, msg_id=ce_id or "m") if signed else {}),
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    return httpx.post(f"{url}/hooks/cloudevents/{trigger}", content=body, headers=sent, timeout=30)


def structured(url: str, event: dict[str, Any], **headers: str) -> httpx.Response:
    document = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "https://acme.example/loader",
        "type": "com.acme.table.loaded",
        **event,
    }
    body = json.dumps(document).encode()
    signature = {} if "Authorization" in headers else standard_headers(body, msg_id="m")
    sent = {**signature, "Content-Type": f"{STRUCTURED}; charset=utf-8", **headers}
    return httpx.post(f"{url}/hooks/cloudevents/loaded", content=body, headers=sent, timeout=30)


@pytest.fixture
def offline(tmp_path: Path, project_dir: Path) -> Any:
    def start(templates: dict[str, Any] | None = None, **section: Any) -> Any:
        trig = {**cloudevents_trigger(project_dir, **section), **(templates or {})}
        settings = make_settings(tmp_path, None, project_dir, triggers=[trig])
        settings.state_path.mkdir(parents=True, exist_ok=True)
        return ingress_server(settings)

    return start


def test_a_binary_mode_event_runs_with_its_attributes_and_data_as_templates(
    hooks: Any, project_dir: Path
) -> None:
    _settings, enqueuer, url = hooks(triggers=[cloudevents_trigger(project_dir)])
    sent = binary(url, {"table": "orders", "rows": 12}, ce_subject="orders%2F2026-12-01")
    assert sent.status_code == 202, sent.text
    run_id = sent.json()["runs"][0]
    assert run_id == f"run:loaded:{identity('https://acme.example/loader', 'e-1')}"
    run = final_run(enqueuer, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    assert run["branch"] == "rehearsal.ce_orders"
    assert run["parameters"] == {
        "table": "orders",
        "rows": "12",
        "type": "com.acme.table.loaded",
        "source": "https://acme.example/loader",
        "subject": "orders/2026-12-01",  # percent-decoded, as the binding says
    }


def test_source_and_id_together_are_the_identity(hooks: Any, project_dir: Path) -> None:
    _settings, _enqueuer, url = hooks(triggers=[cloudevents_trigger(project_dir)])
    data = {"table": "orders", "rows": 1}
    first = binary(url, data, ce_id="e-7", ce_subject="s")
    again = binary(url, data, ce_id="e-7", ce_subject="s")
    other_source = binary(url, data, ce_id="e-7", ce_subject="s", source="urn:acme:other")
    assert (first.status_code, again.status_code, other_source.status_code) == (202, 200, 202)
    assert again.json()["duplicate"] is True and again.json()["event"] == first.json()["event"]
    assert other_source.json()["runs"] != first.json()["runs"]
    assert other_source.json()["event"] != first.json()["event"]
    assert identity("a/b", "c") != identity("a", "b/c")


def test_a_structured_mode_event_with_a_bearer_token_during_a_rotation(
    offline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CE_TOKEN", f"{CE_TOKEN} old-token")
    event = {"id": "s-1", "data": {"table": "orders"}}
    with offline(auth="bearer", secret_env="CE_TOKEN") as server:
        new = structured(server.url, event, Authorization=f"Bearer {CE_TOKEN}")
        old = structured(server.url, {**event, "id": "s-2"}, Authorization="Bearer old-token")
        wrong = structured(server.url, {**event, "id": "s-3"}, Authorization="Bearer nope")
        basic = structured(server.url, {**event, "id": "s-4"}, Authorization=f"Basic {CE_TOKEN}")
        none = structured(server.url, {**event, "id": "s-5"})
    assert [r.status_code for r in (new, old)] == [202, 202], (new.text, old.text)
    assert [r.status_code for r in (wrong, basic, none)] == [401] * 3
    assert wrong.json() == {"error": "the bearer token is missing or does not match"}
    assert CE_TOKEN not in wrong.text


def test_a_signature_is_checked_before_the_event_is_read(offline: Any) -> None:
    with offline() as server:
        unsigned = binary(server.url, {"table": "t"}, signed=False)
        forged = binary(server.url, {"table": "t"}, webhook_signature="v1,Zm9yZ2Vk")
    assert [r.status_code for r in (unsigned, forged)] == [401, 401]


def test_every_malformed_event_gets_its_own_sentence(offline: Any) -> None:
    good = {"table": "orders"}
    with offline() as server:
        answers = {
            "not an event": httpx.post(
                f"{server.url}/hooks/cloudevents/loaded",
                content=b"{}",
                headers=standard_headers(b"{}", msg_id="x"),
            ),
            "no id": binary(server.url, good, ce_id=""),
            "old spec": binary(server.url, good, ce_specversion="0.3"),
            "bad escape": binary(server.url, good, ce_subject="%ff%fe"),
            "control": binary(server.url, good, ce_subject="a%0Ab"),
            "undeclared": binary(server.url, {"table": "t", "drop": 1}),
            "wrong type": binary(server.url, {"table": "t", "rows": "many"}),
            "not json": binary(server.url, b"table=t", Content_Type="text/plain"),
            "batch": binary(server.url, b"[]", Content_Type="application/cloudevents-batch+json"),
            "unknown trigger": binary(server.url, good, trigger="nobody"),
        }
    codes = {name: r.status_code for name, r in answers.items()}
    assert codes == {
        "not an event": 400,
        "no id": 400,
        "old spec": 400,
        "bad escape": 400,
        "control": 400,
        "undeclared": 400,
        "wrong type": 400,
        "not json": 415,
        "batch": 415,
        "unknown trigger": 404,
    }
    errors = {name: r.json()["error"] for name, r in answers.items()}
    assert "ce-specversion, ce-id, ce-source and ce-type" in errors["not an event"]
    assert errors["no id"] == "the CloudEvents header ce-id is missing or empty"
    assert errors["old spec"] == "CloudEvents specversion '0.3' is not taken; send 1.0"
    assert "not percent-encoded UTF-8" in errors["bad escape"]
    assert "control character" in errors["control"]
    assert errors["undeclared"] == "the data has keys this trigger does not declare: 'drop'"
    assert errors["wrong type"] == "data key 'rows' must be a JSON integer"
    assert "declares data fields" in errors["not json"]
    assert "one event per request" in errors["batch"]


def test_types_and_sources_rules_decide_which_events_run(offline: Any) -> None:
    with offline(sources=["https://acme.example/*"]) as server:
        other_type = binary(server.url, {"table": "t"}, ce_id="t1", kind="com.acme.user.created")
        other_source = binary(server.url, {"table": "t"}, ce_id="t2", source="urn:x")
    for answer, rule in ((other_type, "types"), (other_source, "sources")):
        assert answer.status_code == 202, answer.text
        assert answer.json()["triggers"] == {"loaded": f"filtered by {rule} rule"}


def test_a_trigger_without_data_fields_takes_any_data(offline: Any) -> None:
    plain = {"branch": "ce_{ce_type}", "parameters": {"id": "{ce_id}"}}
    with offline(plain, fields={}, optional=[]) as server:
        answer = binary(server.url, b"\x00\x01binary", Content_Type="application/octet-stream")
        document = structured(server.url, {"id": "b64", "data_base64": "AAE="})
    assert (answer.status_code, document.status_code) == (202, 202), (answer.text, document.text)


@st.composite
def _events(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": draw(st.just("1.0") | OUTSIDE_TEXT),
        "ce-id": draw(st.uuids().map(str) | OUTSIDE_TEXT),
        "ce-source": draw(st.just("urn:acme") | OUTSIDE_TEXT),
        "ce-type": draw(st.just("com.acme.table.loaded") | OUTSIDE_TEXT),
    }
    if draw(st.booleans()):
        headers["ce-subject"] = draw(OUTSIDE_TEXT)
    data = {"table": draw(OUTSIDE_TEXT | JSON_VALUES)}
    if draw(st.booleans()):
        data["rows"] = draw(st.integers() | JSON_VALUES)
    body = draw(st.binary(max_size=60) | st.just(json.dumps(data).encode()))
    encoded = {k: v.encode("utf-8", "surrogatepass").decode("latin-1") for k, v in headers.items()}
    return encoded, body


@examples(120)
@given(event=_events())
def test_any_event_gets_a_documented_answer_and_what_is_taken_reads_back(
    ingress: Ingress, event: tuple[dict[str, str], bytes]
) -> None:
    headers, body = event
    msg = f"msg_{uuid.uuid4().hex}"
    signed = standard_headers(body if _utf8(body) else b"{}", msg_id=msg)
    try:
        answer = ingress.http.post(
            "/hooks/cloudevents/loaded", content=body, headers={**signed, **headers}
        )
    except (httpx.LocalProtocolError, UnicodeEncodeError):
        return  # not a header value HTTP can carry: no server sees it
    assert answer.status_code in HOOK_STATUSES, answer.text
    reads_back(ingress, answer)


def _utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True
