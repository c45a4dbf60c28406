"""Slack message content: Block Kit plus text fallback, within Slack's limits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflows.notify.receiver import Reply
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


# -- links and escaping ---------------------------------------------------------------

RUN_PAGE = "https://trigger.example.com/runs/run:orders:delivery-1"
COMMIT_PAGE = "https://github.com/acme/lakehouse/commit/0123456789abcdef0123456789abcdef01234567"
HOSTILE_EVENT = {
    **GITHUB_EVENT,
    "pusher": "<!channel>",
    "head_message": "<https://evil.example|click me> & <@U123>",
}


def fields(message: dict[str, Any]) -> dict[str, str]:
    out = {}
    for block in message["blocks"]:
        for item in block.get("fields", []):
            title, _, value = item["text"].partition("\n")
            out[title.strip("*")] = value
    return out


def context(message: dict[str, Any]) -> str:
    [block] = [b for b in message["blocks"] if b["type"] == "context"]
    return str(block["elements"][0]["text"])


def test_the_run_page_is_linked_when_public_url_is_set_and_not_otherwise() -> None:
    linked = slack.message(notice(run_url=RUN_PAGE))
    assert context(linked) == f"run <{RUN_PAGE}|run:orders:delivery-1>"
    assert linked["text"].endswith(f" <{RUN_PAGE}|open the run>")
    plain = slack.message(notice())
    assert context(plain) == "run `run:orders:delivery-1`"
    assert "open the run" not in plain["text"] and "<" not in plain["text"]


def test_the_commit_is_linked_only_when_the_push_said_where_it_lives() -> None:
    message = slack.message(notice(event={**GITHUB_EVENT, "commit_url": COMMIT_PAGE}))
    assert fields(message)["Commit"] == f"<{COMMIT_PAGE}|0123456>"
    assert "Commit" not in fields(slack.message(notice()))
    forged = {**GITHUB_EVENT, "commit_url": "https://x.example/a|<!channel>"}
    assert fields(slack.message(notice(event=forged)))["Commit"] == "0123456"


def test_the_fallback_text_is_escaped_like_mrkdwn() -> None:
    message = slack.message(
        notice(status="failed", error="<!here> a & b", event=HOSTILE_EVENT, branch="x<y>&z")
    )
    text = message["text"]
    assert "branch x&lt;y&gt;&amp;z" in text
    assert "by &lt;!channel&gt;: &lt;https://evil.example|click me&gt; &amp; &lt;@U123&gt;" in text
    assert "error: &lt;!here&gt; a &amp; b" in text
    assert "<" not in text and ">" not in text
    for value in fields(message).values():
        assert "<" not in value and ">" not in value


def test_a_cut_never_splits_an_entity() -> None:
    message = slack.message(notice(status="failed", error="&" * 5000, run_url=RUN_PAGE))
    text = message["text"]
    assert len(text) <= slack.TEXT_LIMIT
    head = text.removesuffix(f" <{RUN_PAGE}|open the run>")
    assert head.endswith("&amp;…")
    [error] = [s for s in section_texts(message) if s.startswith("*Error*")]
    assert error.endswith("&amp;…") and len(error) <= slack.SECTION_LIMIT


# -- on the wire ----------------------------------------------------------------------


def test_a_delivered_message_links_the_run_page_and_the_commit_and_escapes_the_push(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any
) -> None:
    from standardwebhooks.webhooks import Webhook

    from tests.workflows.notify.conftest import (
        HOOK_PATH,
        SHA,
        SLACK_PATH,
        WEBHOOK_SECRET,
        ci_trigger,
        notified,
        notifier_config,
        notify_env,
    )
    from trigger.core.event import Event
    from trigger.core.matching import build_request

    sink = receiver()
    github = receiver()
    github.default = Reply(201)
    notifiers = notifier_config(slack=sink.url, hook=sink.url, github=github.url)
    del notifiers["commits"]["run_url"]  # the status links the run page through public_url
    for key, value in notify_env(sink.url, sink.url).items():
        monkeypatch.setenv(key, value)
    settings, enqueuer = launched(
        service={"public_url": "https://trigger.example.com/"},
        triggers=[ci_trigger(project_dir, sorted(notifiers))],
        notifiers=notifiers,
    )
    commit = f"https://github.com/acme/lakehouse/commit/{SHA}"
    event = Event(
        kind="github",
        id="push-links",
        attributes={
            "repo": "acme/lakehouse",
            "git_branch": "main",
            "git_sha": SHA,
            "git_short_sha": SHA[:7],
            "pusher": "<!channel>",
            "head_message": "<https://evil.example|click> & go",
            "commit_url": commit,
        },
    )
    run_id = str(enqueuer.enqueue(build_request(event, settings.trigger("ci"), settings)).run_id)
    assert notified(enqueuer, run_id)["status"] == "succeeded"
    page = "https://trigger.example.com/runs/run:ci:push-links"

    [received] = sink.received(SLACK_PATH)
    payload = received.json()
    assert payload["text"].endswith(f" <{page}|open the run>")
    assert "by &lt;!channel&gt;: &lt;https://evil.example|click&gt; &amp; go" in payload["text"]
    assert payload["text"].count("<") == 1
    assert fields(payload)["Commit"] == f"<{commit}|{SHA[:7]}>"
    assert context(payload) == f"run <{page}|{run_id}>"

    docs = [Webhook(WEBHOOK_SECRET).verify(h.body, h.headers) for h in sink.received(HOOK_PATH)]
    assert {d["data"]["run_url"] for d in docs} == {page}
    assert {s.json()["target_url"] for s in github.received("/statuses/")} == {page}
