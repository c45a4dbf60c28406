"""What every webhook endpoint does: read, verify, parse, decide, enqueue, answer.

The order is the point. The body is read with a size cap while it streams (413
as soon as it is over), its signature is checked in constant time before any
parsing, and the answer (202 with run ids) goes out only after every run is
durably enqueued; when the system database cannot take them the sender gets
503 and retries. Run ids come from the delivery id, so a redelivery finds its
runs and gets 200 ``duplicate``. No input leads to a 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from trigger import secrets, text
from trigger.connections import TIMED_OUT, timeout_message
from trigger.errors import EnqueueUnavailableError, HookPayloadError
from trigger.event import AttributeValue, Event, EventKind
from trigger.eventlog import Outcome, dispatch_entry, event_log, make_entry
from trigger.eventlog_store import Entry
from trigger.gitpush import Push, attributes
from trigger.http import state
from trigger.matching import RunRequest, decide
from trigger.settings import TriggerConfig

log = logging.getLogger(__name__)

_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,180}\Z")

# Shared OpenAPI descriptions of the answers every hook can give.
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "a redelivery: the runs already exist, nothing new started"},
    202: {"description": "runs durably enqueued (`runs`), or nothing to do (`ignored`)"},
    400: {"description": "malformed JSON or missing required fields"},
    401: {"description": "missing or wrong signature / token"},
    404: {"description": "no trigger has a section for this source"},
    408: {"description": "the body did not arrive within service.body_timeout"},
    413: {"description": "body over service.max_body_bytes"},
    415: {"description": "content type other than application/json"},
    503: {"description": "the system database cannot take the enqueue; retry"},
}


def header_parameters(*names: str) -> list[dict[str, Any]]:
    """OpenAPI entries for headers an endpoint reads from ``request.headers``.

    Declaring them as FastAPI ``Header()`` parameters would describe them the same
    way but costs a dependency-solving pass on every delivery.
    """
    return [
        {
            "in": "header",
            "name": name,
            "required": False,
            "schema": {
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "title": "-".join(part.capitalize() for part in name.split("-")),
            },
        }
        for name in names
    ]


class Rejected(Exception):
    """An answer other than 2xx, with a message safe to send and log."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


@dataclass
class Delivery:
    """What the one log line per delivery says."""

    source: str
    id: str = "-"
    repo: str = "-"
    ref: str = "-"
    request: Request | None = None
    recorded: bool = False

    async def answer(self, status: int, body: dict[str, Any], outcome: str) -> JSONResponse:
        if not self.recorded:
            await self._record(status, body, outcome)
        runs = body.get("runs") or []
        log.info(
            "delivery %s source=%s repo=%s ref=%s outcome=%s runs=%s",
            self.id,
            self.source,
            self.repo,
            self.ref,
            outcome,
            ",".join(runs) or "-",
        )
        return JSONResponse(body, status_code=status)

    async def reject(self, exc: Rejected) -> JSONResponse:
        return await self.answer(exc.status, {"error": exc.message}, f"rejected-{exc.status}")

    async def _record(self, status: int, body: dict[str, Any], outcome: str) -> None:
        """Every delivery that reaches us goes into the event log, even the refused ones."""
        if self.request is None:
            return
        kind: Outcome = "rejected" if status >= 400 else "ignored"
        reason = body.get("error") or body.get("ignored") or outcome
        if kind == "rejected":
            reason = f"{reason} (HTTP {status})"
        attributes = {"delivery_id": self.id, "repo": self.repo, "ref": self.ref}
        await _log_event(
            self.request,
            make_entry(
                source=self.source,
                event_id=None if self.id == "-" else self.id,
                outcome=kind,
                reason=str(reason),
                source_addr=_client_addr(self.request),
                attributes={k: v for k, v in attributes.items() if v != "-"},
            ),
        )
        self.recorded = True


def _client_addr(request: Request | None) -> str | None:
    return request.client.host if request is not None and request.client else None


async def _log_event(request: Request, entry: Entry) -> None:
    """The event log tells the story; failing to write it must not fail the delivery.
    The entry joins the log's next group commit; the event loop serves other
    deliveries while it waits."""
    try:
        log_ = event_log(state(request).engine, state(request).settings.events.retention_days)
        # The delivery line says it all: the log's own line for it would repeat it.
        await asyncio.wrap_future(log_.submit(replace(entry, quiet=True)))
    except Exception as exc:
        log.warning("event log write failed: %s", type(exc).__name__)


def event_id(prefix: str, raw: str | None) -> str:
    """The sender's delivery id, prefixed by source; hashed when it has odd characters."""
    if not raw:
        raise Rejected(400, "the delivery id header is missing")
    if _EVENT_ID.match(raw):
        return f"{prefix}-{raw}"
    return f"{prefix}-h{hashlib.sha256(raw.encode('utf-8', 'replace')).hexdigest()[:40]}"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_json(request: Request) -> None:
    kind = media_type(request)
    if kind != "application/json":
        raise Rejected(415, f"content type {kind or 'none'!r} is not supported; send JSON")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to be over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Rejected(400, "the Content-Length header is not a number")
        if int(declared) > limit:
            raise Rejected(413, f"the body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise Rejected(413, f"the body is over the {limit}-byte limit")
            chunks.append(chunk)
    except ClientDisconnect:
        timed_out = (request.scope.get("state") or {}).get(TIMED_OUT)
        if timed_out is not None:
            raise Rejected(408, timeout_message(timed_out)) from None
        raise Rejected(400, "the sender disconnected before the body ended") from None
    return b"".join(chunks)


def parse_object(body: bytes | str) -> dict[str, Any]:
    """Every hook's body parser: a JSON object, refused with 400 unless it is UTF-8
    holding valid Unicode throughout (the one rule of ``trigger.text`` at the door of
    every hook) and numbers we can hold and answer."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Rejected(
                400,
                f"the body is not valid UTF-8 (byte 0x{body[exc.start]:02x} at position "
                f"{exc.start}); send JSON as UTF-8",
            ) from None
    try:
        data = json.loads(
            body, parse_int=_integer, parse_float=_finite, parse_constant=_no_constant
        )
    except (ValueError, RecursionError):
        raise Rejected(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Rejected(400, "the body must be a JSON object")
    # A decoded body holds a lone surrogate only through a \u escape.
    found = text.first_invalid(data) if "\\u" in body else None
    if found is not None:
        where, why = found
        raise Rejected(400, f"the body's field {where} {why}; send valid Unicode text")
    return data


def _integer(text: str) -> int:
    """Python reads at most ``sys.get_int_max_str_digits()`` digits (4300 by default)."""
    digits = len(text.lstrip("-"))
    limit = sys.get_int_max_str_digits()
    if limit and digits > limit:
        raise Rejected(
            400,
            f"a number in the body has {digits} digits, more than the {limit} this service "
            "reads; send such a value as a string",
        )
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else f"{text[:21]}..."
        raise Rejected(
            400,
            f"a number in the body ({shown}) is beyond the range of a 64-bit float; "
            "send such a value as a string",
        )
    return value


def _no_constant(name: str) -> float:
    """``json`` reads NaN and Infinity, which are not JSON and which no answer can carry."""
    raise Rejected(400, f"the body is not valid JSON ({name} is not a JSON number)")


def secret_of(env_name: str) -> bytes | None:
    """Webhook secrets come from the environment; the config only names the variable."""
    value = secrets.read(env_name)
    if value is None:
        log.warning("secret variable %s is not set; its triggers reject every delivery", env_name)
        return None
    return value.encode()


def hmac_sha256_verifies(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "replace"))


def token_verifies(secret: bytes, header: str | None) -> bool:
    if header is None:
        return False
    return hmac.compare_digest(secret, header.encode("utf-8", "replace"))


def verified(candidates: list[TriggerConfig], env_of: Any, check: Any) -> list[TriggerConfig]:
    """The triggers whose secret verifies the request; each distinct secret checked once."""
    outcome: dict[str, bool] = {}
    allowed = []
    for trig in candidates:
        env_name = env_of(trig)
        if env_name not in outcome:
            secret = secret_of(env_name)
            outcome[env_name] = secret is not None and bool(check(secret))
        if outcome[env_name]:
            allowed.append(trig)
    return allowed


async def deliver_push(
    request: Request,
    delivery: Delivery,
    kind: EventKind,
    push: Push,
    candidates: list[TriggerConfig],
    allowed: list[TriggerConfig],
    repo_of: Callable[[TriggerConfig], str],
    refusal: str,
) -> JSONResponse:
    """A verified push of GitHub or GitLab: a secret only counts for its own repository."""
    delivery.repo, delivery.ref = push.repo, push.ref
    for_repo = [t for t in candidates if repo_of(t).lower() == push.repo.lower()]
    if for_repo and not any(t in allowed for t in for_repo):
        raise Rejected(401, refusal)
    event = make_event(kind, delivery.id, attributes(push))
    return await deliver(request, delivery, event, allowed)


def git_code(request: RunRequest, trig: TriggerConfig, event: Event) -> RunRequest:
    """Point a run at the pushed commit when its trigger names a git ``source``."""
    rules = trig.github if event.kind == "github" else trig.gitlab
    sha = event.attributes.get("git_sha")
    if rules is None or rules.source is None or not isinstance(sha, str):
        return request
    subdir = trig.project_dir.as_posix()
    return replace(
        request,
        git_source=rules.source,
        git_sha=sha,
        project_subdir=subdir,
        project_dir=f"{subdir} at {sha[:12]} of {rules.source}",
    )


def make_event(kind: EventKind, delivery_id: str, attributes: dict[str, AttributeValue]) -> Event:
    return Event(kind=kind, id=delivery_id, attributes=attributes)


async def deliver(
    request: Request, delivery: Delivery, event: Event, allowed: list[TriggerConfig]
) -> JSONResponse:
    """Decide among ``allowed`` (the triggers whose secret verified), enqueue, answer."""
    app_state = state(request)
    settings = app_state.settings
    decisions = decide(event, settings, allowed)
    by_name = {t.name: t for t in allowed}
    runs = [git_code(d.request, by_name[d.trigger], event) for d in decisions if d.request]
    if not runs:
        reasons = {d.trigger: d.reason or "" for d in decisions}
        distinct = set(reasons.values())
        why = distinct.pop() if len(distinct) == 1 else "no matching trigger"
        if not reasons:
            why = "no trigger listens to this repository with this secret"
        ignored = {"ignored": why, "triggers": reasons, "event": event.id}
        await _log_event(
            request, dispatch_entry(event, decisions, {}, source_addr=_client_addr(request))
        )
        delivery.recorded = True
        return await delivery.answer(202, ignored, f"ignored ({why})")
    if app_state.context is None:
        raise Rejected(503, "this process does not enqueue runs; send hooks to an ingress")
    enqueuer = app_state.context.enqueuer
    results = []
    # DBOS retries a lost database connection for minutes; senders give up after
    # seconds (GitHub: 10). Answer 503 in time; an enqueue that still lands later
    # makes the sender's retry a duplicate, which is harmless.
    deadline = settings.service.enqueue_timeout
    for run in runs:
        try:
            results.append(
                await asyncio.wait_for(
                    asyncio.to_thread(enqueuer.enqueue, run, quiet=True), deadline
                )
            )
        except TimeoutError:
            log.warning("enqueue of %s took over %.1fs; answering 503", run.run_id, deadline)
            raise Rejected(
                503, "the system database did not take the runs in time; retry"
            ) from None
        except EnqueueUnavailableError as exc:
            log.warning("enqueue of %s failed: %s", run.run_id, exc)
            raise Rejected(503, "the system database cannot take the runs now; retry") from None
        except Exception as exc:
            log.error("enqueue of %s failed: %s: %s", run.run_id, type(exc).__name__, exc)
            raise Rejected(503, "the runs could not be enqueued now; retry") from None
    run_ids = [r.run_id for r in results]
    await _log_event(
        request,
        dispatch_entry(
            event, decisions, {r.run_id: r for r in results}, source_addr=_client_addr(request)
        ),
    )
    delivery.recorded = True
    body: dict[str, Any] = {"runs": run_ids, "event": event.id}
    paths_complete = event.attributes.get("paths_complete")
    if paths_complete is False:
        body["paths_complete"] = False
    if all(r.duplicate for r in results):
        body["duplicate"] = True
        return await delivery.answer(200, body, "duplicate")
    body["duplicate"] = False
    return await delivery.answer(202, body, "accepted")


def payload_error(exc: HookPayloadError) -> Rejected:
    return Rejected(400, str(exc))
