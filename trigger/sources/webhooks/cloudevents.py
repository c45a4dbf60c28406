"""``POST /hooks/cloudevents/{trigger}``: CloudEvents over HTTP (binding 1.0.2).

Both content modes of the HTTP binding are taken:

- **binary**: the attributes are ``ce-*`` headers (percent-encoded, as the binding
  says) and the body is the event's ``data``;
- **structured**: ``Content-Type: application/cloudevents+json`` and the whole
  event, attributes and ``data``, is the JSON body.

Batched mode is refused with 415. ``source`` + ``id`` is the event's identity, so a
redelivery of one event is a duplicate whatever the transport did. The delivery is
authenticated before anything is parsed: a Standard Webhooks signature or a bearer
token, from the trigger's ``secret_env`` (several space-separated values while a
key is rotated). The attributes become ``ce_id``, ``ce_type``, ``ce_source``,
``ce_subject`` and ``ce_time``; ``data``'s declared keys become ``data_<key>``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from trigger.core import text
from trigger.core.event import AttributeValue
from trigger.core.settings.hooks import CloudEventsSource
from trigger.http.app import header_parameters, state
from trigger.http.errors import responses
from trigger.ingest import Delivery, Rejected, deliver
from trigger.sources.webhooks.declared import MAX_STRING, declared_values
from trigger.sources.webhooks.filters import cloudevents_filter
from trigger.sources.webhooks.hook import (
    RESPONSES,
    addressed,
    bearer_verifies,
    make_event,
    media_type,
    parse_object,
    read_body,
    respond,
    secret_of,
    standard_verifies,
)

router = APIRouter(tags=["hooks"])

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
SPEC_VERSION = "1.0"
REQUIRED = ("id", "source", "specversion", "type")
# The attributes that become template fields (``ce_<name>``); others are ignored.
TAKEN = ("id", "source", "type", "subject", "time")


@router.post(
    "/hooks/cloudevents/{trigger}",
    summary="A CloudEvent for one trigger (HTTP binding, binary or structured mode)",
    description="Binary mode: ce-specversion, ce-id, ce-source and ce-type headers, the "
    "event's data as the body. Structured mode: Content-Type "
    "application/cloudevents+json and the event as the body. Authenticated with a "
    "Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature) or "
    "Authorization: Bearer, as the trigger's [triggers.cloudevents] auth says. source + "
    "id is the event's identity: a redelivery is a duplicate.",
    responses={**RESPONSES, **responses(404, _404="no cloudevents trigger of that name")},
    openapi_extra={
        "requestBody": {
            "content": {STRUCTURED: {}, "application/json": {}},
            "required": True,
        },
        "parameters": header_parameters(
            *(f"ce-{name}" for name in (*REQUIRED, "subject", "time")), "authorization"
        ),
    },
)
async def cloudevents_hook(request: Request, trigger: str) -> JSONResponse:
    delivery = Delivery("cloudevents", repo="-", ref=trigger[:63], request=request)
    return await respond(delivery, _handle(request, delivery, trigger))


async def _handle(request: Request, delivery: Delivery, name: str) -> JSONResponse:
    settings = state(request).settings
    trig = addressed(settings, name, "cloudevents")
    section = trig.cloudevents
    assert section is not None
    secret = secret_of(section.secret_env)
    if section.auth == "bearer" and (
        secret is None or not bearer_verifies(secret, request.headers.get("authorization"))
    ):
        raise Rejected(401, "the bearer token is missing or does not match")
    body = await read_body(request, settings.service.max_body_bytes)
    if section.auth == "signature" and (
        secret is None or not standard_verifies(secret, body, request)
    ):
        raise Rejected(401, "the webhook signature is missing, too old or does not match")
    attrs, data = _event(request, body, section)
    delivery.id = identity(attrs["source"], attrs["id"])
    values: dict[str, AttributeValue] = {f"ce_{k}": attrs.get(k) for k in TAKEN if k in attrs}
    if section.fields:
        values |= declared_values(data, section.fields, section.optional, section.prefix, "data")
    event = make_event("cloudevents", delivery.id, {"trigger": trig.name, **values})
    return await deliver(request, delivery, event, [trig], cloudevents_filter)


def identity(source: str, ident: str) -> str:
    """The event id of a CloudEvent: its ``source`` and ``id`` together, hashed, so that
    no two different pairs can meet (``a/b`` + ``c`` is not ``a`` + ``b/c``)."""
    digest = hashlib.sha256(json.dumps([source, ident]).encode()).hexdigest()
    return f"ce-{digest[:40]}"


def _event(
    request: Request, body: bytes, section: CloudEventsSource
) -> tuple[dict[str, str], dict[str, Any]]:
    """The event's attributes and its data (an empty object when it has none, or when
    the trigger declares no data fields and the data is not JSON)."""
    kind = media_type(request)
    if kind == BATCH:
        raise Rejected(415, "batched CloudEvents are not taken; send one event per request")
    if kind == STRUCTURED:
        return _structured(body, section)
    if "ce-specversion" not in request.headers:
        raise Rejected(
            400,
            "this is not a CloudEvent: send the ce-specversion, ce-id, ce-source and ce-type "
            f"headers (binary mode) or Content-Type {STRUCTURED} (structured mode)",
        )
    attrs = {
        name: _header(request, name)
        for name in (*REQUIRED, "subject", "time")
        if f"ce-{name}" in request.headers
    }
    _check(attrs, "header ce-")
    if not section.fields:
        return attrs, {}
    if kind != "application/json" and not kind.endswith("+json"):
        raise Rejected(
            415,
            f"content type {kind or 'none'!r} is not JSON; this trigger declares data fields, "
            "so send the data as application/json",
        )
    return attrs, parse_object(body)


def _structured(body: bytes, section: CloudEventsSource) -> tuple[dict[str, str], dict[str, Any]]:
    document = parse_object(body)
    attrs: dict[str, str] = {}
    for name in (*REQUIRED, "subject", "time"):
        if name not in document:
            continue
        value = document[name]
        if not isinstance(value, str):
            raise Rejected(400, f"the CloudEvents attribute {name} must be a string")
        attrs[name] = value
    _check(attrs, "attribute ")
    if not section.fields:
        return attrs, {}
    if "data_base64" in document:
        raise Rejected(
            400, "this trigger declares data fields, so the data must be JSON, not data_base64"
        )
    data = document.get("data", {})
    if not isinstance(data, dict):
        raise Rejected(400, "the event's data must be a JSON object with the declared keys")
    return attrs, data


def _header(request: Request, name: str) -> str:
    raw = request.headers[f"ce-{name}"]
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise Rejected(
            400, f"the header ce-{name} is not percent-encoded UTF-8 ({text.quoted(raw)})"
        ) from None


def _check(attrs: dict[str, str], where: str) -> None:
    for name in REQUIRED:
        if not attrs.get(name):
            raise Rejected(400, f"the CloudEvents {where}{name} is missing or empty")
    if attrs["specversion"] != SPEC_VERSION:
        raise Rejected(
            400,
            f"CloudEvents specversion {text.quoted(attrs['specversion'][:20])} is not taken; "
            f"send {SPEC_VERSION}",
        )
    for name, value in attrs.items():
        if len(value) > MAX_STRING:
            raise Rejected(400, f"the CloudEvents {where}{name} is over {MAX_STRING} characters")
        why = text.problem(value)
        if why is not None:
            raise Rejected(
                400, f"the CloudEvents {where}{name} = {text.quoted(value)} {why}; refused"
            )
