"""``Notice``: what every notifier says about a run, built from the run's own data.

A notice holds no secret and is plain data, so the run workflow can hand it to
a delivery step as is. The helpers here are the wording all notifiers share:
the status word, what started the run, and truncation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from workflows.result import run_seconds

# RunResult.status -> the status word notifications use (and ``on = [...]`` names).
RESULT_STATUS = {
    "success": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "superseded": "superseded",
    "expired": "expired",
}


@dataclass(frozen=True)
class Notice:
    run_id: str
    trigger: str
    status: str  # started | succeeded | failed | superseded | cancelled | expired
    branch: str
    job_id: str | None
    parameters: dict[str, Any]
    event: dict[str, Any]  # the RunRequest summary: kind, id, received_at, attributes
    started_at: float
    finished_at: float | None = None
    error: str | None = None
    log_tail: list[str] = field(default_factory=list)
    test: bool = False  # sent by ``notify-test``
    publish: dict[str, Any] | None = None  # the run's publish outcome, when it publishes
    run_url: str | None = None  # the run's page, when ``[service] public_url`` is set

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return run_seconds(self.started_at, self.finished_at)

    @property
    def final(self) -> bool:
        return self.status != "started"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notice:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def truncate(text: str, limit: int, marker: str = "…") -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def commit_url(event: dict[str, Any]) -> str | None:
    """The pushed commit's web page, when the push said where the repository lives."""
    url = event.get("commit_url")
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def started_by(event: dict[str, Any]) -> str:
    """One line on what started the run, in the terms of its source."""
    kind = event.get("kind")
    if kind in ("github", "gitlab"):
        repo = event.get("repo") or "?"
        sha = str(event.get("git_short_sha") or str(event.get("git_sha") or "")[:7] or "?")
        ref = event.get("git_branch") or event.get("git_tag")
        text = f"push to {repo}@{sha}"
        if ref:
            text += f" ({ref})"
        if event.get("pusher"):
            text += f" by {event['pusher']}"
        message = first_line(str(event.get("head_message") or ""))
        if message:
            text += f": {truncate(message, 120)}"
        return text
    if kind == "files":
        name = event.get("file_rel") or event.get("file_name") or event.get("file_path") or "?"
        size = event.get("file_size")
        return f"file {name}" + (f" ({size} bytes)" if size is not None else "")
    if kind == "schedule":
        return f"schedule at {event.get('scheduled_time') or event.get('received_at') or '?'}"
    if kind == "manual":
        return f"fire by {event.get('fired_by') or 'unknown'}"
    if kind == "generic":
        return f"webhook event {event.get('id') or '?'}"
    if kind == "cloudevents":
        return f"CloudEvent {event.get('ce_type') or '?'} from {event.get('ce_source') or '?'}"
    return f"{kind or 'unknown'} event {event.get('id') or '?'}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def publish_line(publish: dict[str, Any] | None) -> str | None:
    """One sentence on a run's publish (``workflows.steps.publish``), or None when the
    run does not publish: what ``runs show``, the page and the notifiers say."""
    if not publish:
        return None
    into = publish.get("into") or "?"
    if publish.get("state") == "published":
        line = f"published into {into} as {str(publish.get('commit') or '?')[:12]}"
        if publish.get("branch_deleted"):
            line += "; branch deleted"
        elif publish.get("error"):
            line += f"; {publish['error']}"
        return line
    word = "conflict" if publish.get("state") == "conflict" else "failed"
    return f"not published into {into} ({word}): {publish.get('error') or 'no reason given'}"
