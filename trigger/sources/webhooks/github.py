"""``POST /hooks/github``: GitHub push webhooks.

The signature (``X-Hub-Signature-256``, HMAC-SHA256 of the raw body) is checked
against the secrets of the GitHub triggers before the body is parsed; only the
triggers whose secret verifies may match. A trigger for the pushed repository
whose secret does not verify makes the delivery a 401, so one repository's
secret cannot start another's runs.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from trigger.core.gitref import SHA
from trigger.core.logfields import ids
from trigger.core.settings import TriggerConfig
from trigger.http.app import header_parameters, state
from trigger.ingest import Delivery, Rejected, ignore
from trigger.sources.webhooks.filters import git_section
from trigger.sources.webhooks.hook import (
    JSON_OBJECT,
    RESPONSES,
    deliver_push,
    event_id,
    hmac_sha256_verifies,
    make_event,
    media_type,
    parse_object,
    read_body,
    respond,
    verified,
)
from trigger.sources.webhooks.push import (
    COMMIT_CAP,
    Push,
    commit_list,
    identifier,
    obj,
    text,
    web_url,
)

log = logging.getLogger(__name__)

_BAD_SIGNATURE = "the X-Hub-Signature-256 signature is missing or does not match"

router = APIRouter(tags=["hooks"])

_FORM = "application/x-www-form-urlencoded"
_HEADERS = ("x-github-event", "x-github-delivery", "x-hub-signature-256")


@router.post(
    "/hooks/github",
    summary="GitHub push webhook",
    description="Verify the HMAC signature, turn a push into runs of the matching triggers, "
    "answer after they are durably enqueued. `ping` answers 200; other events 202 ignored.",
    responses=RESPONSES,
    openapi_extra={
        "requestBody": JSON_OBJECT,
        "parameters": header_parameters(*_HEADERS),
    },
)
async def github_hook(request: Request) -> JSONResponse:
    delivery = Delivery("github", request=request)
    headers = request.headers
    return await respond(
        delivery, _handle(request, delivery, *(headers.get(name) for name in _HEADERS))
    )


async def _handle(
    request: Request,
    delivery: Delivery,
    kind: str | None,
    delivery_header: str | None,
    signature: str | None,
) -> JSONResponse:
    settings = state(request).settings
    delivery.id = event_id("gh", delivery_header)
    content = media_type(request)
    if content not in ("application/json", _FORM):
        raise Rejected(
            415,
            f"content type {content or 'none'!r} is not supported; set the "
            "webhook's content type to application/json",
        )
    body = await read_body(request, settings.service.max_body_bytes)
    candidates = [t for t in settings.triggers if t.github is not None]
    if not candidates:
        raise Rejected(404, "no trigger has a [triggers.github] section")
    allowed = verified(
        candidates, _secret_env, lambda secret: hmac_sha256_verifies(secret, body, signature)
    )
    if not allowed:
        raise Rejected(401, _BAD_SIGNATURE)
    payload = parse_object(_json_text(body) if content == _FORM else body)
    if kind == "ping":
        hook_id = payload.get("hook_id")
        log.info(
            "github ping delivery=%s hook_id=%s",
            delivery.id,
            hook_id,
            extra=ids(delivery_id=delivery.id),
        )
        return await delivery.answer(200, {"ok": True, "hook_id": hook_id}, "ping")
    if kind != "push":
        why = f"X-GitHub-Event {str(kind)[:40]!r} is not handled; only push starts runs"
        return await ignore(request, delivery, make_event("github", delivery.id, {}), why)
    return await deliver_push(
        request,
        delivery,
        "github",
        _push(payload),
        candidates,
        allowed,
        _BAD_SIGNATURE,
    )


def _secret_env(trig: TriggerConfig) -> str:
    return git_section(trig, "github").secret_env


def _json_text(body: bytes) -> str:
    """GitHub's form-encoded deliveries carry the JSON in the ``payload`` field."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise Rejected(400, "the form body is malformed; prefer application/json") from None
    values = form.get("payload")
    if not values:
        raise Rejected(400, "the form body has no payload field; prefer application/json")
    return values[0]


def _push(payload: dict[str, object]) -> Push:
    data = dict(payload)
    repository = obj(data, "repository", where="payload")
    pusher = data.get("pusher")
    name = pusher.get("name") if isinstance(pusher, dict) else None
    commits = commit_list(data)
    head_value = data.get("head_commit")
    head = head_value if isinstance(head_value, dict) else None
    forced = data.get("forced") is True
    created = data.get("created") is True
    deleted = data.get("deleted") is True
    complete = not (
        len(commits) >= COMMIT_CAP
        or forced
        or (created and not data.get("base_ref"))
        or (not commits and not deleted)
    )
    peeled = head.get("id") if head and isinstance(head.get("id"), str) else None
    return Push(
        repo=text(repository, "full_name", where="repository"),
        ref=text(data, "ref", where="payload"),
        before=text(data, "before", where="payload"),
        after=text(data, "after", where="payload"),
        pusher=identifier(name, where="pusher.name") if isinstance(name, str) else "",
        commits=commits,
        head=head,
        commits_complete=complete,
        peeled=peeled if peeled and SHA.match(peeled) else None,
        web_url=web_url(repository, "html_url"),
    )
