"""How a request shows the API token, without the token sitting in a URL or a cookie.

``/api`` and ``/metrics`` take only ``Authorization: Bearer <token>``: a token in
a query string ends up in proxy and access logs, so there it is refused. A
browser cannot send that header, so the page takes ``?token=`` once: it checks
the token, sets a cookie and redirects (303) to the same URL without it. The
cookie holds an HMAC of a fixed label keyed by the token: it opens the page but
is not the token, so it is no bearer token for the API, and changing the token
ends every page session. It is ``HttpOnly`` and ``SameSite=Strict``, and
``Secure`` whenever the browser reached us over HTTPS.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import HTTPException, Request
from fastapi.responses import Response

from trigger.core.errors import TokenMismatchError

COOKIE = "bauplan_trigger_page"
_LABEL = b"bauplan-trigger page session v1"
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_matches(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    presented = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return _equal(presented, token)


def cookie_matches(request: Request, token: str) -> bool:
    return _equal(request.cookies.get(COOKIE, ""), cookie_value(token))


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), _LABEL, hashlib.sha256).hexdigest()


def page_login(request: Request, token: str | None) -> HTTPException:
    """The answer to a page URL with ``?token=``: 303 to it without the token.

    With a token configured, the cookie comes with the redirect if the token is
    right, and a wrong one is a 401. Without one (loopback) there is nothing to
    remember, and the redirect only takes the token out of the address bar.
    """
    presented = request.query_params.get("token", "")
    if token is not None and not _equal(presented, token):
        return refusal()
    target = request.url.remove_query_params("token")
    location = target.path + (f"?{target.query}" if target.query else "")
    redirect = Response(status_code=303)
    if token is not None:
        redirect.set_cookie(
            COOKIE,
            cookie_value(token),
            path="/",
            httponly=True,
            samesite="strict",
            secure=_over_https(request),
        )
    headers = {
        "Location": location,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        **({"Set-Cookie": redirect.headers["set-cookie"]} if token is not None else {}),
    }
    return HTTPException(303, detail=f"continue at {location}", headers=headers)


def refusal(retry: bool = False) -> HTTPException:
    """401. With ``retry``, the browser is told to load the page once more (see below)."""
    headers = {**CHALLENGE, "Refresh": "0"} if retry else CHALLENGE
    return HTTPException(401, detail=str(TokenMismatchError()), headers=headers)


def arrived_cross_site(request: Request) -> bool:
    """A navigation from another site's page: it carries no ``SameSite=Strict`` cookie.

    That includes the redirect after a ``?token=`` link clicked in a chat or a wiki:
    the cookie was just set, but the browser keeps it off the whole cross-site
    chain. Loading the page again from itself is same-origin and carries it.
    """
    return (
        request.headers.get("sec-fetch-site") == "cross-site"
        and request.headers.get("sec-fetch-mode") == "navigate"
    )


def _over_https(request: Request) -> bool:
    """HTTPS as the browser sees it: ours, or a TLS proxy's in front of us.

    The proxy headers are believed without a trusted-proxy list because the only
    thing they do here is make the cookie stricter.
    """
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",", 1)[0]
    return forwarded.strip().lower() == "https" or (
        "proto=https" in request.headers.get("forwarded", "").lower()
    )


def _equal(presented: str, expected: str) -> bool:
    sent = presented.encode("utf-8", "replace")
    return bool(presented) and hmac.compare_digest(sent, expected.encode("utf-8", "replace"))
