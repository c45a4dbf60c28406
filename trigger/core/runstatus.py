"""The words a run's status is told in: ``runs``, the API, the page, ``explain``,
metrics, ``fire --wait`` and the notifiers all say these, and derive from here.

DBOS has its own statuses; a run's word adds what DBOS cannot know: a run whose
outcome attribute says it was cancelled (its job was), superseded (a newer event
replaced it) or expired (it waited longer than its ``max_queue_seconds``) reads so,
whatever DBOS recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

FinalStatus = Literal["succeeded", "failed", "superseded", "cancelled", "expired"]
RunStatus = Literal["waiting", "running", FinalStatus]
# What a notifier can be told about a run: its start, or how it ended.
NoticeStatus = Literal["started", FinalStatus]

FINAL_STATUSES: tuple[FinalStatus, ...] = get_args(FinalStatus)
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
NOTICE_STATUSES: tuple[NoticeStatus, ...] = get_args(NoticeStatus)

# Phases of a run that has its branch but waits inside its workflow, for its rate
# window or for a global slot (``workflows.job``): waiting, in the users' words.
RATE_LIMITED, AWAITING_SLOT = "rate-limited", "awaiting-slot"
PARKED_PHASES = (RATE_LIMITED, AWAITING_SLOT)

# DBOS status -> the word users see, before the outcome attribute has its say.
STATUS_WORDS: dict[str, RunStatus] = {
    "ENQUEUED": "waiting",
    "DELAYED": "waiting",
    "PENDING": "running",
    "SUCCESS": "succeeded",
    "ERROR": "failed",
    "CANCELLED": "cancelled",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": "failed",
}


def status_word(dbos_status: str, attributes: Mapping[str, Any] | None) -> str:
    """A run's status word from its DBOS status and its attributes."""
    outcome = (attributes or {}).get("outcome")
    word = STATUS_WORDS.get(dbos_status, dbos_status.lower())
    if word == "failed" and outcome == "cancelled":
        return "cancelled"
    if outcome in ("superseded", "expired"):
        return str(outcome)
    if word == "running" and (attributes or {}).get("phase") in PARKED_PHASES:
        return "waiting"
    return word


def dbos_statuses(word: str) -> list[str]:
    """The DBOS statuses a run with this word may have (the outcome attribute tells
    cancelled, superseded and expired runs from the rest)."""
    if word in ("cancelled", "superseded", "expired"):
        return ["CANCELLED", "SUCCESS", "ERROR"]
    if word == "waiting":  # parked runs are PENDING
        return ["ENQUEUED", "DELAYED", "PENDING"]
    return [k for k, v in STATUS_WORDS.items() if v == word]
