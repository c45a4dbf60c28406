"""Who may use the operator surface: the API, ``/metrics``, the page and ``/docs``.

A bearer token read from the variable ``[api] token_env`` names, compared in constant
time. Without a configured token they answer only when the service listens on
loopback; elsewhere they refuse with 403 and ``serve`` says so at start-up. Before the
token, the guard refuses what a web page could send (``trigger.http.sameorigin``); how
the token is shown is ``trigger.http.credentials``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from trigger.context import Component, ServiceContext
from trigger.core import secrets
from trigger.core.errors import TokenInUrlError
from trigger.core.settings import Settings
from trigger.http.app import state
from trigger.http.credentials import (
    CHALLENGE,
    arrived_cross_site,
    bearer_matches,
    cookie_matches,
    page_login,
    refusal,
)
from trigger.http.errors import responses
from trigger.http.sameorigin import check_request

log = logging.getLogger(__name__)

# What the guard can answer on any guarded route (the API, /metrics).
GUARD_RESPONSES = responses(401, 403, 421)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_mode(settings: Settings, environ: dict[str, str] | None = None) -> tuple[str, str | None]:
    """("token", token) | ("loopback", None) | ("refused", why)."""
    name = settings.api.token_env
    if name:
        token = secrets.read(name, environ)
        if token:
            return "token", token
        return "refused", f"[api] token_env names {name}, which is not set or empty"
    if is_loopback(settings.service.host):
        return "loopback", None
    return "refused", (
        f"no API token is configured and the service listens on {settings.service.listen}; "
        "set [api] token_env to a variable holding a token, or listen on 127.0.0.1"
    )


def resources(request: Request) -> dict[str, Any]:
    """This app's API state: the guard's mode, and the clients ``trigger.ops.api`` makes."""
    app_state = request.app.state
    if not hasattr(app_state, "bt_api"):
        settings = state(request).settings
        mode, value = api_mode(settings)
        app_state.bt_api = {"mode": mode, "value": value}
    resources: dict[str, Any] = app_state.bt_api
    return resources


# For the document (and Swagger UI's "Authorize"): the guard reads the header itself.
BEARER = HTTPBearer(
    scheme_name="bearer",
    description="the token in the variable [api] token_env names; without [api] token_env "
    "the service answers only on loopback, and there without a token",
    auto_error=False,
)


def authorize(
    request: Request, _shown: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> None:
    """The guard for /api and /metrics: a name of ours, no cross-site change, the token."""
    check_request(request, state(request).settings.service)
    if "token" in request.query_params:
        raise HTTPException(401, detail=str(TokenInUrlError(request.url.path)), headers=CHALLENGE)
    token = _token(request)
    if token is not None and not bearer_matches(request, token):
        raise refusal()


def authorize_page(request: Request) -> None:
    """The guard for the page: like the API's, plus the cookie a ``?token=`` visit sets."""
    check_request(request, state(request).settings.service)
    token = _token(request)
    if "token" in request.query_params:
        raise page_login(request, token)
    if token is None or cookie_matches(request, token) or bearer_matches(request, token):
        return
    raise refusal(arrived_cross_site(request))


def _token(request: Request) -> str | None:
    """The configured token; None on loopback without one; 403 when the API is off."""
    res = resources(request)
    if res["mode"] == "refused":
        raise HTTPException(403, detail=f"the operator API is off: {res['value']}")
    token: str | None = res["value"]
    return token


async def announce(ctx: ServiceContext) -> None:
    """Say once, at start-up, how the operator API is protected; then stay out of the way."""
    mode, value = api_mode(ctx.settings)
    if mode == "token":
        log.info("operator API on /api: bearer token from %s", ctx.settings.api.token_env)
    elif mode == "loopback":
        log.warning(
            "operator API on /api without a token: serving it only because %s is loopback",
            ctx.settings.service.listen,
        )
    else:
        log.warning("operator API, page and metrics are OFF: %s", value)
    await asyncio.Event().wait()


GUARD = Component("api-guard", ("all", "ingress"), announce)
