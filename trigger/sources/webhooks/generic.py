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

from trigger.core.event import AttributeValue
from trigger.http.app import state
from trigger.http.errors import responses
from trigger.ingest import Delivery, Rejected, deliver
from trigger.sources.webhooks.declared import declared_values
from trigger.sources.webhooks.filters import generic_filter
from trigger.sources.webhooks.hook import (
    JSON_OBJECT,
    RESPONSES,
    addressed,
    event_id,
    make_event,
    parse_object,
    read_body,
    require_json,
    respond,
    secret_of,
    standard_verifies,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["hooks"])


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
    trig = addressed(settings, name, "generic")
    section = trig.generic
    assert section is not None
    delivery.id = event_id("wh", request.headers.get("webhook-id"))
    require_json(request)
    body = await read_body(request, settings.service.max_body_bytes)
    secret = secret_of(section.secret_env)
    if secret is None or not standard_verifies(secret, body, request):
        raise Rejected(401, "the webhook signature is missing, too old or does not match")
    values = declared_values(
        parse_object(body), section.fields, section.optional, section.prefix, "body"
    )
    attributes: dict[str, AttributeValue] = {"trigger": trig.name, **values}
    event = make_event("generic", delivery.id, attributes)
    return await deliver(request, delivery, event, [trig], generic_filter)
