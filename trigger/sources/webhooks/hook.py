"""What every webhook handler does before the hand-over: read, verify, parse.

The body is read with a size cap while it streams (413 as soon as it is over), its
signature is checked in constant time before any parsing, and the JSON is refused
with a specific 400 unless every string and number in it can be held and answered.
The handler then builds an ``Event`` and hands it to ``trigger.ingest.deliver``.
No input leads to a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import sys
from collections.abc import Awaitable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from standardwebhooks import Webhook
from starlette.requests import ClientDisconnect

from trigger.core import secrets, text
from trigger.core.errors import HookPayloadError
from trigger.core.event import AttributeValue, Event, EventKind
from trigger.core.logfields import ids
from trigger.core.settings import Settings, TriggerConfig
from trigger.http.connections import TIMED_OUT, timeout_message
from trigger.http.errors import responses
from trigger.ingest import Delivery, Rejected, deliver
from trigger.sources.webhooks.filters import git_filter, git_section
from trigger.sources.webhooks.push import Push, attributes

log = logging.getLogger(__name__)

_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,180}\Z")


# Shared OpenAPI descriptions of the answers every hook can give: every refusal in the
# one error shape.
class HookAnswer(BaseModel):
    """A hook's answer: the runs it enqueued (or found), or why it started none."""

    model_config = ConfigDict(extra="allow")
    runs: list[str] | None = Field(default=None, description="run ids, enqueued or found")
    event: str | None = Field(default=None, description="the event id (explain it)")
    duplicate: bool | None = Field(default=None, description="a redelivery: nothing new")
    paths_complete: bool | None = Field(
        default=None, description="false when the push did not list every changed path"
    )
    ignored: str | None = Field(default=None, description="why nothing runs")
    triggers: dict[str, str] | None = Field(default=None, description="each trigger's reason")
    ok: bool | None = Field(default=None, description="a GitHub ping's answer")
    hook_id: Any = None


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": HookAnswer,
        "description": "a redelivery: the runs already exist, nothing new started (or a ping)",
    },
    202: {
        "model": HookAnswer,
        "description": "runs durably enqueued (`runs`), or nothing to do (`ignored`)",
    },
    **responses(
        400,
        401,
        404,
        408,
        413,
        415,
        503,
        _400="malformed JSON, or not the fields the sender documents",
        _401="missing or wrong signature / token",
        _404="no trigger has a section for this source",
        _503="the system database cannot take the enqueue; retry",
    ),
}
# The body every hook reads: a JSON object, in the shape its sender documents.
JSON_OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}, "required": True}


async def respond(delivery: Delivery, handled: Awaitable[JSONResponse]) -> JSONResponse:
    """Every hook's answer: its handler's, or the refusal it raised. A payload shape we
    did not foresee is the sender's 400, never a 500."""
    try:
        return await handled
    except Rejected as exc:
        return await delivery.reject(exc)
    except HookPayloadError as exc:
        return await delivery.reject(Rejected(400, str(exc)))
    except ValidationError:
        message = "the payload has a field the event model refuses (a delivery id or attribute)"
        return await delivery.reject(Rejected(400, message))
    except Exception:
        log.exception(
            "delivery %s could not be processed", delivery.id, extra=ids(delivery_id=delivery.id)
        )
        return await delivery.reject(Rejected(400, "the payload could not be processed"))


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
    holding valid Unicode throughout (the one rule of ``trigger.core.text`` at the door of
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


def addressed(settings: Settings, name: str, kind: str) -> TriggerConfig:
    """The trigger a hook with the trigger in its path is sent to: one of that name with
    a ``[triggers.<kind>]`` section, else a 404."""
    found = settings.find_trigger(name)
    if found is None or getattr(found, kind, None) is None:
        raise Rejected(404, f"no trigger of that name has a [triggers.{kind}] section")
    return found


def standard_verifies(secret: bytes, body: bytes, request: Request) -> bool:
    """A Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) made with any of the variable's secrets: several,
    space-separated, while a key is rotated."""
    headers = {
        key: request.headers.get(key, "")
        for key in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    keys = secrets.rotation(secret.decode("utf-8", "replace"))
    return any(_signed_with(key, body, headers) for key in keys)


def _signed_with(key: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(key).verify(body, headers, json_parse=False)
    except Exception:  # the library raises several types for malformed headers and bodies
        return False
    return True


def bearer_verifies(secret: bytes, header: str | None) -> bool:
    """``Authorization: Bearer <token>`` with any of the variable's tokens."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = token.strip().encode("utf-8", "replace")
    keys = secrets.rotation(secret.decode("utf-8", "replace"))
    return any(hmac.compare_digest(key.encode(), given) for key in keys)


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
    refusal: str,
) -> JSONResponse:
    """A verified push of GitHub or GitLab: a secret only counts for its own repository."""
    delivery.repo, delivery.ref = push.repo, push.ref
    repo = push.repo.lower()
    for_repo = [t for t in candidates if git_section(t, kind).repo.lower() == repo]
    if for_repo and not any(t in allowed for t in for_repo):
        raise Rejected(401, refusal)
    event = make_event(kind, delivery.id, attributes(push))
    return await deliver(request, delivery, event, allowed, git_filter)


def make_event(kind: EventKind, delivery_id: str, attributes: dict[str, AttributeValue]) -> Event:
    return Event(kind=kind, id=delivery_id, attributes=attributes)
