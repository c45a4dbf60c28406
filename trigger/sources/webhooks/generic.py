"""``POST /hooks/generic/{trigger}``: any sender that signs with Standard Webhooks.

The signature (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``;
``whsec_`` secret; 5-minute timestamp tolerance) is verified by the
``standardwebhooks`` library before the body is parsed. The body is a JSON
object whose keys must be declared in the trigger's ``fields`` with their JSON
types; each value becomes the template field ``body_<key>``.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from standardwebhooks import Webhook

from trigger.core import text
from trigger.core.errors import UnknownTriggerError
from trigger.core.event import AttributeValue
from trigger.core.settings.hooks import BODY_PREFIX, GenericSource
from trigger.http.app import state
from trigger.http.errors import responses
from trigger.ingest import Delivery, Rejected, deliver
from trigger.sources.webhooks.filters import generic_filter
from trigger.sources.webhooks.hook import (
    JSON_OBJECT,
    RESPONSES,
    event_id,
    make_event,
    parse_object,
    read_body,
    require_json,
    respond,
    secret_of,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["hooks"])

_MAX_STRING = 1000


@router.post(
    "/hooks/generic/{trigger}",
    summary="Signed generic webhook for one trigger",
    description="Standard Webhooks signature (webhook-id, webhook-timestamp, "
    "webhook-signature). The JSON body's keys, declared in the trigger's "
    "[triggers.generic] fields, become template fields body_<key>.",
    responses={**RESPONSES, **responses(404, _404="no generic trigger of that name")},
    openapi_extra={"requestBody": JSON_OBJECT},
)
async def generic_hook(request: Request, trigger: str) -> JSONResponse:
    delivery = Delivery("generic", repo="-", ref=trigger[:63], request=request)
    return await respond(delivery, _handle(request, delivery, trigger))


async def _handle(request: Request, delivery: Delivery, name: str) -> JSONResponse:
    settings = state(request).settings
    try:
        trig = settings.trigger(name)
    except UnknownTriggerError:
        trig = None
    if trig is None or trig.generic is None:
        raise Rejected(404, "no trigger of that name has a [triggers.generic] section")
    section = trig.generic
    delivery.id = event_id("wh", request.headers.get("webhook-id"))
    require_json(request)
    body = await read_body(request, settings.service.max_body_bytes)
    secret = secret_of(section.secret_env)
    if secret is None or not _verifies(secret.decode(), body, request):
        raise Rejected(401, "the webhook signature is missing, too old or does not match")
    values = _values(parse_object(body), section)
    attributes: dict[str, AttributeValue] = {"trigger": trig.name, **values}
    event = make_event("generic", delivery.id, attributes)
    return await deliver(request, delivery, event, [trig], generic_filter)


def _verifies(secret: str, body: bytes, request: Request) -> bool:
    headers = {
        key: request.headers.get(key, "")
        for key in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except Exception:  # the library raises several types for malformed headers and bodies
        return False
    return True


def _values(data: dict[str, object], section: GenericSource) -> dict[str, AttributeValue]:
    unknown = sorted(key for key in data if key not in section.fields)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise Rejected(400, f"the body has keys this trigger does not declare: {shown}")
    missing = [k for k in section.fields if k not in data and k not in section.optional]
    if missing:
        raise Rejected(400, f"the body is missing required keys: {', '.join(missing)}")
    out: dict[str, AttributeValue] = {}
    for key, kind in section.fields.items():
        if key not in data:
            continue
        value = data[key]
        if not _is(kind, value):
            raise Rejected(400, f"body key {key!r} must be a JSON {kind}")
        if isinstance(value, str):
            if len(value) > _MAX_STRING:
                raise Rejected(400, f"body key {key!r} is over {_MAX_STRING} characters")
            why = text.problem(value)
            if why is not None:
                raise Rejected(400, f"body key {key!r} = {text.quoted(value)} {why}; refused")
        out[f"{BODY_PREFIX}{key}"] = value  # type: ignore[assignment]
    return out


def _is(kind: str, value: object) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)
