"""Signed webhooks: the versioned document and a signature the receiver verifies."""

from __future__ import annotations

import pytest
from standardwebhooks.webhooks import Webhook

from tests.workflows.notify.conftest import HOOK_PATH, WEBHOOK_SECRET
from tests.workflows.notify.test_slack import notice
from trigger.core.errors import NotifierError
from trigger.core.settings.notify import WebhookNotifier
from workflows.notify import webhook
from workflows.notify.delivery import send_once

CFG = WebhookNotifier(
    kind="webhook", url_env="HOOK_URL", secret_env="HOOK_SECRET", headers={"X-Team": "data"}
)


def test_the_document_schema_version_1() -> None:
    doc = webhook.document(notice(status="failed", error="boom", log_tail=["a", "b"]))
    assert doc == {
        "type": "run.failed",
        "schema_version": 1,
        "timestamp": "1970-01-01T00:18:45.500000Z",
        "data": {
            "run_id": "run:orders:delivery-1",
            "trigger": "orders",
            "status": "failed",
            "branch": "alice.orders_main",
            "job_id": "job-42",
            "parameters": {"run_date": "2026-11-23"},
            "started_at": "1970-01-01T00:16:40Z",
            "finished_at": "1970-01-01T00:18:45.500000Z",
            "duration_seconds": 125.5,
            "error": "boom",
            "log_tail": ["a", "b"],
            "event": doc["data"]["event"],
            "run_url": None,
            "publish": None,
            "test": False,
        },
    }
    assert doc["data"]["event"]["repo"] == "acme/lakehouse"
    started = webhook.document(notice(status="started", finished_at=None))["data"]
    assert started["finished_at"] is None and started["duration_seconds"] is None


def test_the_receiver_verifies_the_signature_and_gets_a_stable_id(receiver: object) -> None:
    hook = receiver()  # type: ignore[operator]
    env = {"HOOK_URL": hook.url + HOOK_PATH, "HOOK_SECRET": WEBHOOK_SECRET}
    for status in ("succeeded", "succeeded", "failed"):
        answer = send_once("ops", CFG, notice(status=status), env)
        assert answer["delivered"] and answer["code"] == 200
    first, again, failed = hook.received(HOOK_PATH)
    verified = Webhook(WEBHOOK_SECRET).verify(first.body, first.headers)
    assert verified["data"]["run_id"] == "run:orders:delivery-1"
    assert first.headers["X-Team"] == "data"
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert first.headers["webhook-id"] == webhook.message_id("run:orders:delivery-1", "succeeded")
    assert failed.headers["webhook-id"] != first.headers["webhook-id"]
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 44).verify(first.body, first.headers)


def test_during_a_key_rotation_the_body_is_signed_with_every_secret(receiver: object) -> None:
    old = "whsec_" + "T0xE" * 8
    hook = receiver()  # type: ignore[operator]
    env = {"HOOK_URL": hook.url + HOOK_PATH, "HOOK_SECRET": f"{WEBHOOK_SECRET}  {old}"}
    assert send_once("ops", CFG, notice(), env)["delivered"]
    (got,) = hook.received(HOOK_PATH)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (WEBHOOK_SECRET, old):
        assert Webhook(secret).verify(got.body, got.headers)["data"]["status"] == "succeeded"


def test_a_rotation_with_one_bad_secret_is_refused_without_showing_any() -> None:
    env = {"HOOK_URL": "http://127.0.0.1:1/x", "HOOK_SECRET": f"{WEBHOOK_SECRET} plain-old"}
    with pytest.raises(NotifierError) as caught:
        webhook.build(notice(), CFG, "webhook:ops", env)
    assert "HOOK_SECRET" in str(caught.value) and "whsec_" in str(caught.value)
    assert "plain-old" not in str(caught.value) and WEBHOOK_SECRET not in str(caught.value)


def test_a_secret_that_is_not_whsec_is_refused_without_showing_it() -> None:
    env = {"HOOK_URL": "http://127.0.0.1:1/x", "HOOK_SECRET": "plain-secret-value"}
    with pytest.raises(NotifierError) as caught:
        webhook.build(notice(), CFG, "webhook:ops", env)
    assert "HOOK_SECRET" in str(caught.value) and "whsec_" in str(caught.value)
    assert "plain-secret-value" not in str(caught.value)


def test_a_missing_variable_is_named_in_the_reason() -> None:
    answer = send_once("ops", CFG, notice(), {"HOOK_URL": "http://127.0.0.1:1/x"})
    assert not answer["delivered"] and not answer["retry"]
    assert "HOOK_SECRET (secret_env) is not set" in answer["reason"]
