"""The operator HTTP API under ``/api``: runs, events, retry, cancel, resume and fire.

Every route is behind ``trigger.ops.guard`` (a bearer token, or loopback without one);
its answers' models are ``trigger.ops.answers``, its refusals ``trigger.http.errors``.
"""

from __future__ import annotations

from typing import Annotated, Any

from dbos import DBOSClient
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trigger.context import ServiceContext
from trigger.core import text
from trigger.core.errors import (
    BadParameterError,
    EnqueueUnavailableError,
    FireError,
    RunControlError,
    RunNotFoundError,
    TriggerError,
    UnknownTriggerError,
    WorkspaceError,
)
from trigger.core.event import EVENT_ID_PATTERN
from trigger.core.eventlog import EventLog, Outcome, event_log
from trigger.core.eventlog_store import SEQ_MAX
from trigger.core.runstatus import RunStatus
from trigger.core.text import Identifier
from trigger.http.app import header_parameters, state
from trigger.http.errors import responses
from trigger.http.sameorigin import REQUESTED_BY
from trigger.ops.answers import (
    ActionResult,
    EventPage,
    FireResult,
    RunPage,
    RunStory,
    Story,
)
from trigger.ops.guard import GUARD_RESPONSES, authorize, resources
from workflows.intake import Enqueuer


def client_of(request: Request) -> DBOSClient:
    res = resources(request)
    if "client" not in res:
        context: ServiceContext | None = state(request).context
        if context is not None:
            res["client"] = context.enqueuer.client
        else:
            res["client"] = DBOSClient(system_database_url=state(request).settings.database_url())
            res["owned_client"] = res["client"]
    client: DBOSClient = res["client"]
    return client


def enqueuer_of(request: Request) -> Enqueuer:
    res = resources(request)
    if "enqueuer" not in res:
        context = state(request).context
        if context is not None:
            res["enqueuer"] = context.enqueuer
        else:
            res["enqueuer"] = Enqueuer(state(request).settings, client=client_of(request))
            res["owned_enqueuer"] = res["enqueuer"]
    enqueuer: Enqueuer = res["enqueuer"]
    return enqueuer


def log_of(request: Request) -> EventLog:
    settings = state(request).settings
    return event_log(state(request).engine, settings.events.retention_days)


def close_api(app: FastAPI) -> None:
    """Release the DBOS client and the enqueuer the API made for itself (tests and
    shutdown); closing the enqueuer destroys the client it was given."""
    res = getattr(app.state, "bt_api", None) or {}
    if "owned_enqueuer" in res:
        res.pop("owned_enqueuer").close()  # with the client it was given
        res.pop("owned_client", None)
    elif "owned_client" in res:
        res.pop("owned_client").destroy()


# A state change takes a JSON body, or none and the X-Requested-By header.
_CHANGE_HEADERS = {"parameters": header_parameters(REQUESTED_BY.lower())}
_BODY = responses(400, 415)
_NO_RUN = responses(404, _404="no run with that id")
# An offset goes into SQL as a BIGINT: a larger one overflows SQLite and PostgreSQL.
INT64_MAX = 2**63 - 1

router = APIRouter(
    prefix="/api",
    tags=["operator"],
    dependencies=[Depends(authorize)],
    responses={**GUARD_RESPONSES, **responses(422, 503)},
)


@router.get("/runs", summary="Runs, newest first", response_model=RunPage)
def get_runs(
    request: Request,
    trigger: str | None = None,
    status: RunStatus | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=INT64_MAX),
) -> dict[str, Any]:
    from workflows.records import list_runs

    rows = list_runs(
        client_of(request),
        trigger=trigger,
        status=status,
        limit=limit,
        offset=offset or None,
        settings=state(request).settings,
    )
    following = offset + limit if len(rows) == limit and offset + limit <= INT64_MAX else None
    return {"runs": rows, "offset": offset, "limit": limit, "next_offset": following}


@router.get(
    "/runs/{run_id}",
    summary="One run with its steps, timeline and notifications",
    response_model=RunStory,
    responses=_NO_RUN,
)
def get_run(request: Request, run_id: str) -> dict[str, Any]:
    from trigger.ops.explain import run_story

    try:
        return run_story(client_of(request), run_id, state(request).settings)
    except RunNotFoundError as exc:
        raise HTTPException(404, detail=str(exc)) from None


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Identifier | None = Field(
        default=None, max_length=100, description="who asks, for the log"
    )


_REFUSED = {**_BODY, **_NO_RUN, **responses(409, _409="the run's state does not allow it")}


@router.post(
    "/runs/{run_id}/retry",
    summary="A new run of the same request, linked to it",
    response_model=ActionResult,
    responses=_REFUSED,
    openapi_extra=_CHANGE_HEADERS,
)
def post_retry(request: Request, run_id: str, body: ActionBody | None = None) -> dict[str, Any]:
    from trigger.ops.control import retry

    return _control(
        lambda: retry(
            state(request).settings, enqueuer_of(request), run_id, _actor(request, body)
        ).as_dict()
    )


@router.post(
    "/runs/{run_id}/cancel",
    summary="Dequeue or stop a run and cancel its job",
    response_model=ActionResult,
    responses=_REFUSED,
    openapi_extra=_CHANGE_HEADERS,
)
def post_cancel(request: Request, run_id: str, body: ActionBody | None = None) -> dict[str, Any]:
    from trigger.ops.control import cancel

    return _control(
        lambda: cancel(
            state(request).settings, client_of(request), run_id, _actor(request, body)
        ).as_dict()
    )


@router.post(
    "/runs/{run_id}/resume",
    summary="Put a cancelled (or stuck) run back on its queue, on its own branch",
    response_model=ActionResult,
    responses=_REFUSED,
    openapi_extra=_CHANGE_HEADERS,
)
def post_resume(request: Request, run_id: str, body: ActionBody | None = None) -> dict[str, Any]:
    from trigger.ops.control import resume

    return _control(
        lambda: resume(
            state(request).settings, client_of(request), run_id, _actor(request, body)
        ).as_dict()
    )


def _actor(request: Request, body: ActionBody | None) -> str:
    who = body.actor if body and body.actor else "api"
    host = request.client.host if request.client else "?"
    return f"{who}@{host}"


def _control(action: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = action()
    except RunNotFoundError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    except RunControlError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    return result


@router.get(
    "/events",
    summary="Received events, newest first, with each trigger's verdict",
    response_model=EventPage,
)
def get_events(
    request: Request,
    source: str | None = None,
    outcome: Outcome | None = None,
    limit: int = Query(50, ge=1, le=1000),
    before: int | None = Query(
        None, ge=1, le=SEQ_MAX, description="seq of the last event of the previous page"
    ),
) -> dict[str, Any]:
    rows = log_of(request).recent(source=source, outcome=outcome, limit=limit, before=before)
    following = rows[-1]["seq"] if len(rows) == limit else None
    return {"events": rows, "next_before": following}


@router.get(
    "/events/{ident:path}",
    summary="The explain story for an id",
    response_model=Story,
    responses=responses(404, _404="nothing is known about that id"),
)
def get_event(request: Request, ident: str) -> dict[str, Any]:
    from trigger.ops.explain import NothingToExplainError, explain

    try:
        return explain(ident, log_of(request), client_of(request), state(request).settings)
    except NothingToExplainError as exc:
        raise HTTPException(404, detail=str(exc)) from None


# What the document says of a parameter's value (check_params holds the rule).
_ParamValue = Annotated[
    str, Field(json_schema_extra={"maxLength": 1000, "pattern": text.IDENTIFIER_PATTERN})
]


class FireBody(BaseModel):
    """What to run: ``file`` for a file trigger, ``sha`` (and ``branch``) for a git one;
    a schedule trigger runs as a tick of this second, any other with its ``params``."""

    model_config = ConfigDict(extra="forbid")
    params: dict[str, _ParamValue] = Field(
        default_factory=dict, description="a value for each of the trigger's inputs"
    )
    event_id: str | None = Field(
        default=None,
        description="idempotency key: a retried request with it runs once",
        json_schema_extra={"pattern": EVENT_ID_PATTERN},
    )
    fired_by: Identifier | None = Field(default=None, max_length=100)
    file: str | None = Field(
        default=None,
        max_length=4096,
        description="file trigger: a file in its watched dir (absolute, or relative to it)",
    )
    sha: str | None = Field(default=None, max_length=64, description="git trigger: the commit")
    branch: str | None = Field(
        default=None, max_length=255, description="git trigger: the commit's branch"
    )


@router.post(
    "/triggers/{name}/fire",
    summary="Run a trigger now, like `fire`",
    description="A file or git fire's run id comes from the file version or the commit, "
    "so asking again answers the same run (`duplicate`); a schedule or plain fire does "
    "so when given the same `event_id`.",
    response_model=FireResult,
    responses={
        **_BODY,
        **responses(404, _404="no trigger of that name"),
        **responses(409, _409="the trigger did not take this fire"),
        **responses(422, _422="this trigger cannot run this fire (or a body field); says why"),
    },
    openapi_extra=_CHANGE_HEADERS,
)
def post_fire(request: Request, name: str, body: FireBody | None = None) -> dict[str, Any]:
    from trigger.sources.manual import Fire, fire

    body = body or FireBody()
    settings = state(request).settings
    try:
        settings.trigger(name)
    except UnknownTriggerError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    host = request.client.host if request.client else None
    asked = Fire(
        name,
        params=body.params,
        event_id=body.event_id,
        fired_by=body.fired_by or "api",
        file=body.file,
        sha=body.sha,
        branch=body.branch,
    )
    try:
        fired = fire(
            enqueuer_of(request),
            asked,
            source_addr=host,
            timeout=settings.service.enqueue_timeout,
        )
    except EnqueueUnavailableError:
        raise  # the app answers 503, as for every database outage
    except (BadParameterError, FireError) as exc:  # sentences in the API's words
        raise HTTPException(422, detail=str(exc)) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        why = error["msg"].removeprefix("Value error, ")
        if error["loc"] == ("id",):
            shown = text.quoted(body.event_id or "")
            raise HTTPException(
                422, detail=f"body field event_id = {shown} is refused: {why}"
            ) from None
        raise HTTPException(422, detail=f"this fire's event is refused: {why}") from None
    except WorkspaceError as exc:  # the commit's repository could not be fetched now
        raise HTTPException(503, detail=f"{exc}; retry") from None
    except TriggerError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    return {
        "id": fired.run.run_id,
        "event_id": fired.event.id,
        "branch": fired.run.branch,
        "duplicate": fired.run.duplicate,
    }
