"""``RunResult``: what a finished run reports, and what ``runs --json`` shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


def run_seconds(started_at: float, finished_at: float) -> float:
    """How long a run took, as every surface tells it (``runs``, ``explain``, the page,
    every notifier): one computation, so the numbers never disagree."""
    return round(finished_at - started_at, 3)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    trigger: str
    event_id: str
    status: str  # "success" | "failed" | "cancelled"
    branch: str
    job_id: str | None
    parameters: dict[str, Any]
    started_at: float
    finished_at: float
    error: str | None = None
    log_tail: list[str] = field(default_factory=list)
    # ``workflows.steps.publish``'s outcome, when the trigger publishes its runs.
    publish: dict[str, Any] | None = None

    @property
    def duration(self) -> float:
        return run_seconds(self.started_at, self.finished_at)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(**{k: v for k, v in data.items() if k != "duration"})

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration"] = self.duration
        return data
