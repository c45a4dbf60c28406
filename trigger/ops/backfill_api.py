"""``POST /api/triggers/{name}/backfill``: ``bauplan-trigger backfill`` over the API,
behind the same guard as the rest of ``/api`` (``trigger.ops.backfill`` does the work)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from trigger.core.errors import (
    BackfillError,
    EnqueueUnavailableError,
    TriggerError,
    UnknownTriggerError,
)
from trigger.http.app import state
from trigger.http.errors import responses
from trigger.ops import backfill as planner
from trigger.ops.api import _CHANGE_HEADERS, client_of, enqueuer_of
from trigger.ops.guard import GUARD_RESPONSES, authorize

router = APIRouter(
    prefix="/api",
    tags=["operator"],
    dependencies=[Depends(authorize)],
    responses={**GUARD_RESPONSES, **responses(422, 503)},
)


class BackfillBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: str = Field(alias="from", max_length=64, description="first tick time, ISO 8601")
    end: str = Field(alias="to", max_length=64, description="last tick time (a date: all of it)")
    max: int = Field(default=planner.DEFAULT_MAX, ge=1, le=100_000, description="refuse more")
    dry_run: bool = Field(default=False, description="say what would run, enqueue nothing")


class BackfilledTick(BaseModel):
    scheduled_time: str
    event_id: str
    run_id: str
    state: Literal["new", "exists", "would run"]


class BackfillResult(BaseModel):
    trigger: str
    dry_run: bool
    ticks: list[BackfilledTick]
    new: int = Field(description="runs enqueued by this call")


@router.post(
    "/triggers/{name}/backfill",
    summary="Run a schedule trigger once per tick of a past range, like `backfill`",
    description="Each tick is the scheduler's own event for it, so a tick that already "
    "has a run (from the scheduler or an earlier backfill) is found, not run again.",
    response_model=BackfillResult,
    responses={
        **responses(400, 415),
        **responses(404, _404="no trigger of that name"),
        **responses(409, _409="the backfill stopped part way (the ticks before are enqueued)"),
        **responses(422, _422="not a schedule trigger, or a range that cannot be run; says why"),
    },
    openapi_extra=_CHANGE_HEADERS,
)
def post_backfill(request: Request, name: str, body: BackfillBody) -> dict[str, Any]:
    settings = state(request).settings
    try:
        trig = settings.trigger(name)
    except UnknownTriggerError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    try:
        ticks = planner.plan(
            trig,
            planner.parse_moment(body.start, trig, "body field from"),
            planner.parse_moment(body.end, trig, "body field to", end=True),
            body.max,
        )
    except BackfillError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    try:
        if body.dry_run:
            done = planner.preview(client_of(request), trig, ticks)
        else:
            done = planner.backfill(enqueuer_of(request), trig, ticks)
    except EnqueueUnavailableError:
        raise  # the app answers 503, as for every database outage
    except TriggerError as exc:
        raise HTTPException(409, detail=f"the backfill stopped: {exc}; ask again") from None
    return {
        "trigger": trig.name,
        "dry_run": body.dry_run,
        "ticks": [t.as_dict() for t in done],
        "new": sum(1 for t in done if t.state == "new"),
    }
