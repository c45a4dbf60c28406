"""Slack message content: Block Kit plus text fallback, within Slack's limits."""

from __future__ import annotations

from typing import Any

import pytest

from trigger.core.settings.notify import SlackNotifier
from workflows.notify import slack
from workflows.notify.notice import Notice

GITHUB_EVENT = {
    "kind": "github",
    "id": "delivery-1",
    "repo": "acme/lakehouse",
    "git_branch": "main",
    "git_sha": "0123456789abcdef0123456789abcdef01234567",
    "git_short_sha": "0123456",
    "pusher": "alice",
    "head_message": "Fix the orders join\n\nLonger explanation here.",
}


def notice(**overrides: Any) -> Notice:
    base: dict[str, Any] = {
        "run_id": "run:orders:delivery-1",
        "trigger": "orders",
        "status": "succeeded",
        "branch": "alice.orders_main",
        "job_id": "job-42",
        "parameters": {"run_date": "2026-11-23"},
        "event": GITHUB_EVENT,
        "started_at": 1_000.0,
        "finished_at": 1_125.5,
    }
    return Notice(**{**base, **overrides})


def texts(message: dict[str, Any]) -> str:
    out = [message["text"]]
    for block in message["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", [])]
    return "\n".join(out)


def section_texts(message: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]


def test_a_success_message_says_what_ran_where_and_what_started_it() -> None:
    message = slack.message(notice())
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == ":white_check_mark: orders succeeded"
    body = texts(message)
    for fact in (
        "alice.orders_main",
        "job-42",
        "push to acme/lakehouse@0123456 (main) by alice: Fix the orders join",
        "2m 06s",
        "`run_date` = `2026-11-23`",
        "run:orders:delivery-1",
    ):
        assert fact in body
    assert "Longer explanation" not in body  # first line of the commit message only
    assert "Error" not in body and "```" not in body
    fallback = message["text"]
    assert fallback.startswith(":white_check_mark: orders succeeded")
    assert "alice.orders_main" in fallback and "job-42" in fallback


def test_a_failure_message_has_the_error_and_the_last_log_lines_in_a_code_block() -> None:
    tail = [f"line {i}" for i in range(40)]
    error = "table orders: no such column"
    message = slack.message(notice(status="failed", error=error, log_tail=tail))
    assert message["blocks"][0]["text"]["text"] == ":x: orders failed"
    sections = section_texts(message)
    [shown] = [s for s in sections if s.startswith("*Error*")]
    assert error in shown
    [logs] = [s for s in sections if s.startswith("*Last log lines*")]
    assert logs.endswith("line 39```") and "```line 0\n" in logs
    assert "error: table orders: no such column" in message["text"]


def test_everything_is_cut_to_slacks_limits_keeping_the_end_of_the_log() -> None:
    huge = notice(
        trigger="t" * 63,
        status="failed",
        error="E" * 10_000,
        log_tail=[f"{i:04d} " + "x" * 300 for i in range(1000)],
        parameters={f"p{i:02d}": "v" * 500 for i in range(40)},
        event={**GITHUB_EVENT, "head_message": "m" * 5000, "pusher": "p" * 3000},
    )
    message = slack.message(huge)
    assert len(message["blocks"]) <= slack.MAX_BLOCKS
    assert len(message["blocks"][0]["text"]["text"]) <= slack.HEADER_LIMIT
    assert len(message["text"]) <= slack.TEXT_LIMIT
    for block in message["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= slack.SECTION_LIMIT
        for item in block.get("fields", []):
            assert len(item["text"]) <= slack.FIELD_LIMIT
    [logs] = [s for s in section_texts(message) if s.startswith("*Last log lines*")]
    assert logs.endswith("```") and "0999 " in logs and "earlier lines not shown" in logs
    [params] = [s for s in section_texts(message) if s.startswith("*Parameters*")]
    assert "v" * 81 not in params


@pytest.mark.parametrize(
    ("status", "emoji"),
    [
        ("started", ":hourglass_flowing_sand:"),
        ("superseded", ":fast_forward:"),
        ("cancelled", ":no_entry_sign:"),
    ],
)
def test_every_run_status_renders(status: str, emoji: str) -> None:
    finished = None if status == "started" else 1_010.0
    message = slack.message(notice(status=status, finished_at=finished, error=None))
    assert message["blocks"][0]["text"]["text"] == f"{emoji} orders {status}"
    assert ("Duration" in texts(message)) is (status != "started")


def test_user_text_is_escaped_for_mrkdwn() -> None:
    body = texts(slack.message(notice(status="failed", error="<!channel> & <https://x|y>")))
    assert "&lt;!channel&gt; &amp; &lt;https://x|y&gt;" in body
    assert "<!channel>" not in body.split("\n", 1)[1]


@pytest.mark.parametrize(
    ("event", "said"),
    [
        (
            {"kind": "files", "file_rel": "in/orders.parquet", "file_size": 10},
            "file in/orders.parquet (10 bytes)",
        ),
        (
            {"kind": "schedule", "scheduled_time": "2026-11-23T06:00:00Z"},
            "schedule at 2026-11-23T06:00:00Z",
        ),
        ({"kind": "manual", "fired_by": "bob"}, "fire by bob"),
    ],
)
def test_what_started_the_run_is_named_in_its_sources_terms(
    event: dict[str, Any], said: str
) -> None:
    assert said in texts(slack.message(notice(event=event)))


def test_channel_and_username_go_into_the_payload_when_configured() -> None:
    cfg = SlackNotifier(kind="slack", url_env="X", channel="#data", username="trigger-bot")
    message = slack.message(notice(), cfg)
    assert message["channel"] == "#data" and message["username"] == "trigger-bot"
    assert "icon_emoji" not in message


def test_a_test_message_is_clearly_marked() -> None:
    message = slack.message(notice(test=True))
    assert message["blocks"][0]["text"]["text"].startswith("[TEST] ")
    assert "notify-test" in texts(message)
