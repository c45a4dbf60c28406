"""What the operator API answers, as the OpenAPI document tells it.

The records themselves are built as plain dicts where they are read (``workflows.records``,
``trigger.ops.explain``, the event log); these models are the edge that names and types
their fields for clients. Each allows fields it does not name, so a record that grows
a field keeps answering (and the field shows up in the answer before it does here).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trigger.core.eventlog import Outcome
from trigger.core.runstatus import RUN_STATUSES

_STATUS_WORDS = ", ".join(RUN_STATUSES)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Run(_Answer):
    """A run as ``runs --json`` lists it."""

    id: str = Field(description="the run id (also its DBOS workflow id)")
    trigger: str | None
    event_id: str | None
    event_kind: str | None = None
    status: str = Field(description=f"one of {_STATUS_WORDS}")
    phase: str | None = Field(default=None, description="where a run is within its status")
    branch: str | None = Field(description="the Bauplan branch it runs on")
    job_id: str | None = Field(description="the Bauplan job, once submitted")
    created_at: str | None
    updated_at: str | None
    duration: float | None = Field(default=None, description="seconds, once it ended")
    error: str | None = None
    dbos_status: str
    superseded_by: str | None = None
    executor_id: str | None = None
    waiting_reason: str | None = Field(default=None, description="why a waiting run waits")


class RunPage(_Answer):
    runs: list[Run]
    offset: int
    limit: int
    next_offset: int | None = Field(description="the offset of the next page; null on the last")


class Step(_Answer):
    id: int
    name: str
    ok: bool
    output: Any = None
    error: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    seconds: float | None = None


class Moment(_Answer):
    """One line of a run's timeline."""

    at: str | None
    what: str
    detail: str


class RunStory(Run):
    """One run in full: ``runs show --json``, with its steps and timeline."""

    parameters: dict[str, Any] = Field(default_factory=dict)
    project_dir: str | None = None
    event: dict[str, Any] = Field(default_factory=dict, description="the event's summary")
    log_tail: list[Any] = Field(default_factory=list)
    notifications: list[dict[str, Any]] = Field(default_factory=list)
    waiting: str | None = None
    waited_seconds: float | None = None
    priority: int | None = None
    executor: str | None = None
    retry_of: str | None = None
    retried_as: str | None = None
    steps: list[Step] = Field(default_factory=list)
    timeline: list[Moment] = Field(default_factory=list)


class MissingRun(_Answer):
    """A run an event's decision names but DBOS no longer has."""

    id: str
    status: Literal["unknown"]
    missing: Literal[True]


class Decision(_Answer):
    trigger: str
    matched: bool
    reason: str | None
    run_id: str | None


class LoggedEvent(_Answer):
    """One received event and each trigger's verdict on it."""

    seq: int = Field(description="its place in the log: pass it as `before` for the next page")
    source: str
    event_id: str | None
    received_at: float = Field(description="seconds since the epoch")
    outcome: Outcome
    reason: str | None
    source_addr: str | None
    attributes: dict[str, Any]
    decisions: list[Decision]


class EventPage(_Answer):
    events: list[LoggedEvent]
    next_before: int | None = Field(description="`before` for the next page; null on the last")


class ExplainedEvent(LoggedEvent):
    received_at: str = Field(description="ISO 8601")  # type: ignore[assignment]
    verified: str = Field(description="how the event's sender was checked")


class Story(_Answer):
    """``explain ID``: the events an id names (oldest first) and every run they started."""

    query: str
    events: list[ExplainedEvent]
    runs: list[RunStory | MissingRun]


class ActionResult(_Answer):
    """What retry, cancel or resume did."""

    action: Literal["retry", "cancel", "resume"]
    run_id: str
    status: str = Field(description="the run's status before the action")
    detail: str = Field(description="what was done, in one sentence")
    new_run_id: str | None = Field(default=None, description="a retry's new run")


class FireResult(_Answer):
    """The run a fire enqueued (or found: the same event id runs once)."""

    id: str = Field(description="the run id")
    event_id: str
    branch: str
    duplicate: bool = Field(description="true when this event id was fired before")
