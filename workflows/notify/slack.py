"""Slack incoming webhooks: a Block Kit message with a plain-text fallback.

Slack refuses or cuts messages past its limits, so every piece is cut here
first: a header is at most 150 characters, a section 3000, a field 2000, and
a message at most 50 blocks. User text (errors, commit messages, parameter
values, log lines) is escaped for mrkdwn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from trigger.core.settings.notify import SlackNotifier
from workflows.notify.http import Outbound, check_url, read_env
from workflows.notify.notice import Notice, format_duration, started_by, truncate

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
TEXT_LIMIT = 3000  # the fallback; Slack allows more, notifications need less
PARAM_VALUE_LIMIT = 80
MAX_BLOCKS = 50

EMOJI = {
    "started": ":hourglass_flowing_sand:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "superseded": ":fast_forward:",
    "cancelled": ":no_entry_sign:",
    "expired": ":hourglass:",
}


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build(
    notice: Notice, cfg: SlackNotifier, display: str, environ: Mapping[str, str] | None = None
) -> Outbound:
    url = check_url(display, cfg.url_env, read_env(display, "url_env", cfg.url_env, environ))
    body = json.dumps(message(notice, cfg), ensure_ascii=False).encode()
    return Outbound(
        url=url,
        headers={"Content-Type": "application/json; charset=utf-8"},
        body=body,
        secrets=(url,),
    )


def message(notice: Notice, cfg: SlackNotifier | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": fallback(notice), "blocks": blocks(notice)}
    if cfg is not None:
        for key in ("channel", "username", "icon_emoji"):
            if getattr(cfg, key):
                payload[key] = getattr(cfg, key)
    return payload


def headline(notice: Notice) -> str:
    prefix = "[TEST] " if notice.test else ""
    return f"{prefix}{EMOJI.get(notice.status, '')} {notice.trigger} {notice.status}".strip()


def fallback(notice: Notice) -> str:
    parts = [headline(notice), f"branch {notice.branch or '-'}", f"job {notice.job_id or '-'}"]
    if notice.final:
        parts.append(f"duration {format_duration(notice.duration)}")
    text = ", ".join(parts) + f"; started by {started_by(notice.event)}"
    if notice.error:
        text += f"; error: {notice.error}"
    return truncate(text, TEXT_LIMIT)


def blocks(notice: Notice) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": truncate(headline(notice), HEADER_LIMIT),
                "emoji": True,
            },
        },
        {"type": "section", "fields": [_field(k, v) for k, v in _facts(notice)]},
    ]
    if notice.parameters:
        out.append(_section(_parameters(notice.parameters)))
    if notice.error:
        out.append(_section("*Error*\n" + escape(notice.error)))
    if notice.log_tail and notice.status != "succeeded":
        out.append(_section(_log_block(notice.log_tail)))
    context = f"run `{escape(notice.run_id)}`"
    if notice.test:
        context += " · test message from `bauplan-trigger notify-test`: no run happened"
    element = {"type": "mrkdwn", "text": truncate(context, 2000)}
    out.append({"type": "context", "elements": [element]})
    return out[:MAX_BLOCKS]


def _facts(notice: Notice) -> list[tuple[str, str]]:
    facts = [
        ("Trigger", notice.trigger),
        ("Bauplan branch", notice.branch or "-"),
        ("Started by", started_by(notice.event)),
        ("Job", notice.job_id or "not submitted"),
    ]
    if notice.final:
        facts.append(("Duration", format_duration(notice.duration)))
    return facts


def _field(title: str, value: str) -> dict[str, str]:
    text = f"*{title}*\n" + escape(value)
    return {"type": "mrkdwn", "text": truncate(text, FIELD_LIMIT)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def _parameters(parameters: dict[str, Any]) -> str:
    lines = ["*Parameters*"]
    for key, value in sorted(parameters.items()):
        shown = truncate(str(value), PARAM_VALUE_LIMIT)
        shown = escape(shown.replace("`", "'"))
        lines.append(f"`{escape(key)}` = `{shown}`")
    return "\n".join(lines)


def _log_block(lines: list[str]) -> str:
    """The *last* lines that fit in one section, inside a code block."""
    head, fence = "*Last log lines*\n```", "```"
    budget = SECTION_LIMIT - len(head) - len(fence) - 60  # room for the "earlier lines" note
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        text = escape(truncate(line.replace("```", "'''"), 500))
        if used + len(text) + 1 > budget:
            break
        kept.append(text)
        used += len(text) + 1
    kept.reverse()
    if len(kept) < len(lines):
        kept.insert(0, f"… ({len(lines) - len(kept)} earlier lines not shown)")
    return head + "\n".join(kept) + fence
