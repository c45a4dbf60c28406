"""Slack incoming webhooks: a Block Kit message with a plain-text fallback.

Slack refuses or cuts messages past its limits, so every piece is cut here
first: a header is at most 150 characters, a section 3000, a field 2000, and
a message at most 50 blocks.

Slack reads ``&``, ``<`` and ``>`` as control characters in the fallback ``text``
and in every mrkdwn field (``<url|label>`` is a link, ``<!channel>`` a mention), and
asks for exactly those three to be sent as ``&amp;``, ``&lt;`` and ``&gt;``. So
every value from outside (branch names, commit messages, errors, parameters, log
lines) is escaped, and the only links are the ones built here: the run's page
(from ``[service] public_url``) and the pushed commit, each only when known.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from trigger.core import text as texts
from trigger.core.settings.notify import SlackNotifier
from workflows.notify.http import Outbound, check_url, read_env
from workflows.notify.notice import (
    Notice,
    commit_url,
    format_duration,
    publish_line,
    started_by,
    truncate,
)

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


def cut(mrkdwn: str, limit: int) -> str:
    """``truncate`` for escaped text: never ends inside an ``&amp;``-style entity."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    kept = mrkdwn[: max(0, limit - 1)]
    amp = kept.rfind("&")
    if amp != -1 and ";" not in kept[amp:]:
        kept = kept[:amp]
    return kept + "…"


def link(url: str | None, label: str) -> str:
    """A mrkdwn link, or just the (escaped) label when there is no address we trust."""
    if url is None or texts.link_problem(url) is not None:
        return escape(label)
    return f"<{escape(url)}|{escape(label)}>"


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
    """What notifications and clients without Block Kit show: escaped like any mrkdwn."""
    parts = [headline(notice), f"branch {notice.branch or '-'}", f"job {notice.job_id or '-'}"]
    if notice.final:
        parts.append(f"duration {format_duration(notice.duration)}")
    plain = ", ".join(parts) + f"; started by {started_by(notice.event)}"
    if notice.error:
        plain += f"; error: {notice.error}"
    published = publish_line(notice.publish)
    if published:
        plain += f"; {published}"
    page = f" {link(notice.run_url, 'open the run')}" if notice.run_url else ""
    return cut(escape(plain), TEXT_LIMIT - len(page)) + page


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
    run = link(notice.run_url, notice.run_id) if notice.run_url else f"`{escape(notice.run_id)}`"
    context = f"run {run}"
    if notice.test:
        context += " · test message from `bauplan-trigger notify-test`: no run happened"
    element = {"type": "mrkdwn", "text": cut(context, 2000)}
    out.append({"type": "context", "elements": [element]})
    return out[:MAX_BLOCKS]


def _facts(notice: Notice) -> list[tuple[str, str]]:
    """(title, mrkdwn) pairs: values escaped, links built here."""
    facts = [
        ("Trigger", escape(notice.trigger)),
        ("Bauplan branch", escape(notice.branch or "-")),
        ("Started by", escape(started_by(notice.event))),
        ("Job", escape(notice.job_id or "not submitted")),
    ]
    commit = commit_url(notice.event)
    if commit is not None:
        sha = str(notice.event.get("git_short_sha") or str(notice.event.get("git_sha"))[:7])
        facts.append(("Commit", link(commit, sha)))
    if notice.final:
        facts.append(("Duration", format_duration(notice.duration)))
    published = publish_line(notice.publish)
    if published:
        facts.append(("Publish", escape(published)))
    return facts


def _field(title: str, mrkdwn: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": cut(f"*{title}*\n{mrkdwn}", FIELD_LIMIT)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_LIMIT)}}


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
