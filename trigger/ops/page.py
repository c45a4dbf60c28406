"""The status page: recent runs and events at ``/``, one run's story at ``/runs/{id}``.

Plain server-rendered HTML with a meta refresh: no build step, no script, small.
Guarded like the API; a ``?token=`` on the first visit becomes a cookie (see
``trigger.http.credentials``) so the refreshes keep working.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from html import escape

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from trigger.core.errors import RunNotFoundError
from trigger.core.runstatus import FINAL_STATUSES
from trigger.http.app import state
from trigger.ops.api import authorize_page, client_of, log_of

REFRESH_SECONDS = 5

router = APIRouter(include_in_schema=False, dependencies=[Depends(authorize_page)])

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;
color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 24px;display:flex;gap:16px;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}header small{color:#aab}
main{padding:16px 24px;max-width:1400px}
h2{font-size:15px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e7}
th,td{padding:5px 8px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600;font-size:12px;color:#556}
td.mono,pre,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#fff;border:1px solid #dde1e7;padding:8px;overflow:auto;margin:0}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}
.succeeded,.accepted{background:#dcf5e3;color:#17652f}.failed,.rejected{background:#fde1e1;color:#9b1c1c}
.running{background:#dde9fd;color:#1c4a9b}.waiting,.duplicate{background:#fff1cc;color:#7a5600}
.cancelled,.ignored,.unknown{background:#e8e9ec;color:#444}
.muted{color:#778}.grid{display:grid;grid-template-columns:160px 1fr;gap:3px 12px;background:#fff;
border:1px solid #dde1e7;padding:10px}
a{color:#1c4a9b}
"""


def _age(iso: str | None, now: float) -> str:
    if not iso:
        return "-"
    seconds = max(0.0, now - datetime.fromisoformat(iso).timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def _clock(iso: str | None) -> str:
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _badge(word: str | None) -> str:
    word = word or "unknown"
    return f'<span class="badge {escape(word)}">{escape(word)}</span>'


def _link(run_id: str | None) -> str:
    if not run_id:
        return "-"
    return f'<a class="mono" href="/runs/{escape(run_id, quote=True)}">{escape(run_id)}</a>'


def _page(title: str, body: str, refresh: bool = True) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    stamp = datetime.now(UTC).strftime("%H:%M:%S UTC")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{escape(title)} - bauplan-trigger</title><style>{_CSS}</style></head><body>"
        f'<header><a href="/">bauplan-trigger</a><span>{escape(title)}</span>'
        f"<small>refreshed {stamp}, every {REFRESH_SECONDS}s</small></header>"
        f"<main>{body}</main></body></html>"
    )


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    from workflows.records import list_runs

    now = time.time()
    runs = list_runs(client_of(request), limit=30)
    events = log_of(request).recent(limit=30)
    rows = "".join(
        f"<tr><td>{_link(r['id'])}</td><td>{escape(r['trigger'] or '-')}</td>"
        f"<td>{_badge(r['status'])}</td><td class=mono>{escape(r['branch'] or '-')}</td>"
        f"<td class=mono>{escape(r['job_id'] or '-')}</td>"
        f"<td title='{escape(r['created_at'] or '')}'>{_age(r['created_at'], now)}</td></tr>"
        for r in runs
    )
    runs_html = (
        "<table><tr><th>RUN</th><th>TRIGGER</th><th>STATUS</th><th>BRANCH</th><th>JOB</th>"
        f"<th>AGE</th></tr>{rows}</table>"
        if runs
        else "<p class=muted>No runs yet. Start one with "
        "<code>bauplan-trigger fire TRIGGER</code>.</p>"
    )
    erows = ""
    for e in events:
        received = datetime.fromtimestamp(e["received_at"], UTC).isoformat()
        verdicts = "<br>".join(
            f"{escape(d['trigger'])}: {_link(d['run_id'])}"
            if d["matched"]
            else f"<span class=muted>{escape(d['trigger'])}: {escape(d['reason'] or '')}</span>"
            for d in e["decisions"]
        )
        erows += (
            f"<tr><td title='{received}'>{_age(received, now)}</td><td>{escape(e['source'])}</td>"
            f"<td class=mono>{escape(e['event_id'] or '-')}</td><td>{_badge(e['outcome'])} "
            f"<span class=muted>{escape(e['reason'] or '')}</span></td>"
            f"<td class=mono>{escape(e['source_addr'] or '-')}</td><td>{verdicts or '-'}</td></tr>"
        )
    events_html = (
        "<table><tr><th>AGE</th><th>SOURCE</th><th>EVENT</th><th>OUTCOME</th><th>FROM</th>"
        f"<th>TRIGGERS</th></tr>{erows}</table>"
        if events
        else "<p class=muted>No events received yet.</p>"
    )
    body = f"<h2>Recent runs</h2>{runs_html}<h2>Recent events</h2>{events_html}"
    return HTMLResponse(_page("runs and events", body))


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str) -> HTMLResponse:
    from trigger.ops.explain import explain

    try:
        story = explain(run_id, log_of(request), client_of(request), state(request).settings)
    except Exception as exc:
        if isinstance(exc, RunNotFoundError) or type(exc).__name__ == "NothingToExplainError":
            raise HTTPException(404, detail=str(exc)) from None
        raise
    runs = [r for r in story["runs"] if r.get("id") == run_id] or story["runs"]
    run = runs[0]
    if run.get("missing"):
        raise HTTPException(404, detail=f"no run with id {run_id!r}")
    facts = [
        ("status", _badge(run["status"])),
        ("trigger", escape(run["trigger"] or "-")),
        ("event", escape(str(run.get("event_id") or "-"))),
        ("branch", f"<span class=mono>{escape(run['branch'] or '-')}</span>"),
        ("job id", f"<span class=mono>{escape(run['job_id'] or '-')}</span>"),
        ("created", escape(run["created_at"] or "-")),
        ("duration", f"{run['duration']:.1f}s" if run.get("duration") is not None else "-"),
        ("waiting because", escape(run["waiting"] or "-")),
        ("retry of", _link(run.get("retry_of"))),
        ("retried as", _link(run.get("retried_as"))),
        ("error", escape(run["error"] or "-")),
    ]
    grid = "".join(f"<b>{k}</b><span>{v}</span>" for k, v in facts)
    timeline = "".join(
        f"<tr><td class=mono title='{escape(t['at'] or '')}'>{_clock(t['at'])}</td>"
        f"<td>{escape(t['what'])}</td>"
        f"<td class=mono>{escape(t['detail'])}</td></tr>"
        for t in run["timeline"]
    )
    events = "".join(
        f"<tr><td>{escape(e['received_at'])}</td><td>{escape(e['source'])}</td>"
        f"<td class=mono>{escape(e['event_id'] or '-')}</td><td>{_badge(e['outcome'])}</td>"
        f"<td>{escape(e['verified'])}</td><td>{escape(e['reason'] or '')}</td></tr>"
        for e in story["events"]
    )
    notes = "".join(
        f"<tr><td>{escape(str(n.get('step')))}</td>"
        f"<td>{_badge('succeeded' if n.get('ok') else 'failed')}</td>"
        f"<td class=mono>{escape(str(n.get('detail') or ''))}</td></tr>"
        for n in run["notifications"]
    )
    params = json.dumps(run.get("parameters") or {}, indent=2, sort_keys=True)
    tail = "\n".join(run.get("log_tail") or []) or "(no log lines yet)"
    body = (
        f"<h2>Run <span class=mono>{escape(run_id)}</span></h2><div class=grid>{grid}</div>"
        "<h2>Story</h2><table><tr><th>WHEN (UTC)</th><th>WHAT</th><th>DETAIL</th></tr>"
        f"{timeline}</table>"
        + (
            "<h2>Events</h2><table><tr><th>RECEIVED</th><th>SOURCE</th><th>EVENT</th>"
            f"<th>OUTCOME</th><th>VERIFIED</th><th>NOTE</th></tr>{events}</table>"
            if events
            else ""
        )
        + f"<h2>Parameters</h2><pre>{escape(params)}</pre>"
        + "<h2>Notifications</h2>"
        + (
            f"<table><tr><th>STEP</th><th>RESULT</th><th>DETAIL</th></tr>{notes}</table>"
            if notes
            else "<p class=muted>No notifications sent.</p>"
        )
        + f"<h2>Log tail</h2><pre>{escape(tail)}</pre>"
        + f"<p class=muted>Retry: <code>bauplan-trigger runs retry {escape(run_id)}</code> "
        f"&middot; cancel: <code>bauplan-trigger runs cancel {escape(run_id)}</code></p>"
    )
    finished = run["status"] in FINAL_STATUSES
    return HTMLResponse(_page(f"run {run_id}", body, refresh=not finished))
