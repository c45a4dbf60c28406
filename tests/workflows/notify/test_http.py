"""Sending and classifying: what is retried, what is permanent, what is kept."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from tests.workflows.notify.receiver import HANG, Reply, closed_port_url
from trigger.core import secrets
from workflows.notify import http


@pytest.mark.parametrize(
    ("code", "delivered", "retry"),
    [
        (200, True, False),
        (204, True, False),
        (429, False, True),
        (500, False, True),
        (503, False, True),
        (408, False, True),
        (400, False, False),
        (403, False, False),
        (404, False, False),
        (301, False, False),
    ],
)
def test_status_codes_are_classified(code: int, delivered: bool, retry: bool) -> None:
    answer = http.classify(code, {}, "")
    assert (answer.delivered, answer.retry, answer.code) == (delivered, retry, code)


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert http.classify(429, {"retry-after": "7"}, "").retry_after == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    wait = http.retry_after(later)
    assert wait is not None and 60 < wait <= 90
    assert http.retry_after("soon") is None


def test_a_response_body_is_kept_short_and_scrubbed_of_secrets() -> None:
    answer = http.classify(403, {}, "invalid_token for s3cr3t " + "z" * 500, ("s3cr3t",))
    assert "s3cr3t" not in answer.reason and "invalid_token for ***" in answer.reason
    assert len(answer.reason) < 230


def _out(url: str) -> http.Outbound:
    return http.Outbound(url=url, headers={}, body=b"{}", secrets=(url,))


def test_a_hanging_receiver_times_out_and_is_retryable(receiver: Any) -> None:
    hook = receiver().answer(HANG)
    answer = http.send(_out(hook.url + "/secret-path"), timeout=0.3)
    assert answer.retry and not answer.delivered and answer.code is None
    assert "no answer within 0.3s" in answer.reason and "secret-path" not in answer.reason


def test_a_down_receiver_is_retryable_and_the_url_is_not_in_the_reason() -> None:
    url = closed_port_url() + "/services/SECRET"
    answer = http.send(_out(url), timeout=2)
    assert answer.retry and "could not reach" in answer.reason
    assert "SECRET" not in answer.reason and "127.0.0.1" not in answer.reason


def test_httpx_request_logs_keep_only_the_origin(receiver: Any, caplog: Any) -> None:
    hook = receiver().answer(Reply(200))
    caplog.set_level(logging.DEBUG)
    http.send(_out(hook.url + "/services/T0/B0/SECRETpath"), timeout=5)
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)
    assert "SECRETpath" not in caplog.text


def test_only_the_start_of_a_long_answer_is_read_and_kept(receiver: Any) -> None:
    sink = receiver()
    sink.default = Reply(500, body="é" * 50_000)  # 100 kB of two-byte characters
    answer = http.send(_out(sink.url), timeout=5)
    assert answer.reason.startswith("HTTP 500: éééé") and answer.reason.endswith("…")
    assert len(answer.reason.encode()) <= len("HTTP 500: ") + 200


def test_a_secret_cut_in_two_where_reading_stops_is_not_kept(receiver: Any) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    secrets.read("RECEIVER_TOKEN", {"RECEIVER_TOKEN": token})
    sink = receiver()
    sink.default = Reply(500, body=" " * 4090 + token + " is not valid")
    answer = http.send(_out(sink.url), timeout=5)
    assert answer.reason == "HTTP 500"
    assert token[:6] not in answer.reason
