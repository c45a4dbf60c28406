"""The operator's console: runs, events and triggers at ``/``, one run at ``/runs/{id}``.

Rendered from the package's Jinja2 templates; ``static/console.js`` (ours, nothing
from the internet) asks for the live parts again every few seconds with the header
``X-Console-Fragment`` and swaps in only the sections that changed, ticks elapsed
times, and sends the buttons' POSTs.

Guarded like the API (``authorize_page``: the same Host and cross-site checks, and
the token, or the cookie a ``?token=`` visit sets; see ``trigger.http.credentials``).
The buttons post to the page's own routes below rather than to ``/api``, because
the page's cookie is deliberately no bearer token for the API; each route calls the
API's own handler, so both answer alike.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from trigger.core.eventlog import OUTCOMES
from trigger.core.runstatus import FINAL_STATUSES, RUN_STATUSES
from trigger.http.app import state
from trigger.ops import api, guard, pageview
from trigger.ops.pageview import Filters

REFRESH_SECONDS = 3
FRAGMENT = "X-Console-Fragment"
ACTOR = "page"

router = APIRouter(include_in_schema=False, dependencies=[Depends(guard.authorize_page)])

_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
# The page runs our script and styles only: a value that slipped past escaping still
# could not run anything.
_HEADERS = {
    "Cache-Control": "no-store",
    "Vary": FRAGMENT,
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@cache
def templates() -> Environment:
    env = Environment(
        loader=PackageLoader("trigger.ops", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clock"] = _clock
    env.filters["seconds"] = _seconds
    env.filters["urlpath"] = lambda value: quote(str(value), safe=":@")
    return env


def _clock(iso: str | None, exact: bool = False) -> str:
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    if exact:
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    """The whole page, or only its live part when the console script asks for it."""
    if request.headers.get(FRAGMENT):
        name = name.replace(".html", "_live.html")
    values.setdefault("refresh_ms", REFRESH_SECONDS * 1000)
    values["rendered_at"] = datetime.now(UTC).strftime("%H:%M:%S UTC")
    html = templates().get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


@router.get("/static/{name}")
def asset(name: str) -> Response:
    if name not in _ASSETS:
        raise HTTPException(404, detail=f"no console asset named {name!r}")
    body = resources.files("trigger.ops").joinpath("static", name).read_bytes()
    return Response(body, media_type=_ASSETS[name], headers={"Cache-Control": "no-cache"})


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    filters, problems = Filters.parse(request.query_params)
    settings = state(request).settings
    client = api.client_of(request)
    return _render(
        request,
        "index.html",
        title="runs and events",
        filters=filters,
        problems=problems,
        listing=pageview.runs_list(client, api.log_of(request), settings, filters),
        triggers=pageview.triggers_overview(settings, client, state(request).health),
        trigger_names=[t.name for t in settings.triggers],
        statuses=RUN_STATUSES,
        sources=pageview.SOURCES,
        outcomes=OUTCOMES,
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> HTMLResponse:
    from trigger.ops.explain import NothingToExplainError, explain

    settings = state(request).settings
    try:
        story = explain(run_id, api.log_of(request), api.client_of(request), settings)
        view = pageview.run_page(story, run_id)
        reason = "The event log names it, but DBOS has no such workflow (any more)."
    except NothingToExplainError:
        view, reason = None, "Nothing is known about this id: no run and no event has it."
    if view is None:
        return _render(
            request, "notfound.html", 404, title="no such run", run_id=run_id, reason=reason
        )
    run = view["run"]
    return _render(
        request,
        "run.html",
        title=f"run {run_id}",
        run=run,
        events=view["events"],
        parameters=json.dumps(run.get("parameters") or {}, indent=2, sort_keys=True),
        fireable=[t.name for t in settings.triggers if not t.inputs],
        refresh_ms=REFRESH_SECONDS * (1000 if run["status"] not in FINAL_STATUSES else 3000),
    )


@router.post("/runs/{run_id}/retry")
def retry(request: Request, run_id: str) -> Any:
    return api.post_retry(request, run_id, api.ActionBody(actor=ACTOR))


@router.post("/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str) -> Any:
    return api.post_cancel(request, run_id, api.ActionBody(actor=ACTOR))


@router.post("/runs/{run_id}/resume")
def resume(request: Request, run_id: str) -> Any:
    from trigger.ops.control import resume as resume_run

    settings = state(request).settings
    actor = api._actor(request, api.ActionBody(actor=ACTOR))
    return api._control(
        lambda: resume_run(settings, api.client_of(request), run_id, actor).as_dict()
    )


@router.post("/triggers/{name}/fire")
def fire(request: Request, name: str, body: api.FireBody | None = None) -> Any:
    body = body or api.FireBody()
    if body.fired_by is None:
        body = body.model_copy(update={"fired_by": ACTOR})
    return api.post_fire(request, name, body)
