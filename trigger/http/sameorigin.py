"""Only this service's own names and tools reach the operator surface.

Any web page the operator has open can make their browser send requests to the
loopback API. A form, or a ``fetch`` with a "simple" content type, goes out
without a CORS preflight: cross-site request forgery. A page whose DNS name the
attacker re-points at 127.0.0.1 makes the browser talk to us under that name and
read the answers: DNS rebinding. Two checks close both:

- ``Host`` must be a name of this service (``host_allowed``); a rebinding attack
  always arrives under a name the attacker owns.
- A state change (any method but GET and HEAD) must not come from another site's
  page (``Sec-Fetch-Site``, ``Origin``) and must carry ``Content-Type:
  application/json`` or, without a body, the ``X-Requested-By`` header: a
  cross-site form can send neither. Requests without ``Origin`` (curl, scripts)
  are not from a web page and pass that part.

The webhooks take neither check: GitHub and GitLab post them from elsewhere by
design, under whatever name the operator gave the sender, and their signature
is what lets them in.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from trigger.core.errors import CrossSiteRequestError, UnknownHostError, UnsafeStateChangeError
from trigger.core.settings import ServiceSettings

REQUESTED_BY = "X-Requested-By"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FOREIGN_SITES = frozenset({"cross-site", "same-site"})


def check_request(request: Request, service: ServiceSettings) -> None:
    """The guard's first step for the API, the page and ``/metrics``: 421, 403 or 415."""
    host = request.headers.get("host")
    if host is not None and not host_allowed(_hostname(host), service):
        raise HTTPException(421, detail=str(UnknownHostError(host, service.listen)))
    if request.method in SAFE_METHODS:
        return
    site = request.headers.get("sec-fetch-site", "").strip().lower()
    origin = request.headers.get("origin")
    if site in _FOREIGN_SITES:
        raise HTTPException(403, detail=str(CrossSiteRequestError(f"Sec-Fetch-Site: {site}")))
    if origin is not None and not _same_origin(origin, host or ""):
        raise HTTPException(403, detail=str(CrossSiteRequestError(f"Origin: {origin[:100]}")))
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        return
    has_body = request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )
    if has_body:
        raise HTTPException(415, detail=str(UnsafeStateChangeError(request.method, kind)))
    if not request.headers.get(REQUESTED_BY, "").strip():
        raise HTTPException(403, detail=str(UnsafeStateChangeError(request.method, None)))


def host_allowed(name: str, service: ServiceSettings) -> bool:
    """Whether ``name`` (a Host header's host part) names this service.

    The listen host itself; every loopback name when it listens on loopback; any
    IP address when it listens on all interfaces (a rebinding attack needs a DNS
    name, so an address in ``Host`` is the address the client really dialled);
    and the names of ``[service] allowed_hosts`` (``"*"`` allows every name).
    """
    name = name.lower().rstrip(".")
    if not name:
        return False
    allowed = {entry.lower().strip("[]").rstrip(".") for entry in service.allowed_hosts}
    if "*" in allowed or name in allowed:
        return True
    listen = service.host.lower()
    address, listen_address = _address(name), _address(listen)
    if name == listen or (address is not None and address == listen_address):
        return True
    if listen_address is not None and listen_address.is_unspecified:
        return address is not None or name == "localhost"
    if listen == "localhost" or (listen_address is not None and listen_address.is_loopback):
        return name == "localhost" or (address is not None and address.is_loopback)
    return False


def _address(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


def _hostname(host: str) -> str:
    """The host part of a Host header (``name``, ``name:port``, ``[v6]:port``)."""
    try:
        return urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return ""


def _same_origin(origin: str, host: str) -> bool:
    """Whether a browser's ``Origin`` is the scheme-host-port the request was sent to.

    The scheme is not compared (TLS is often ended by a proxy in front of us), the
    port is: another service on the same host is another origin.
    """
    try:
        sent, target = urlsplit(origin), urlsplit(f"//{host}")
        if sent.scheme not in ("http", "https") or not sent.hostname or not target.hostname:
            return False
        default = 443 if sent.scheme == "https" else 80
        return sent.hostname == target.hostname and (sent.port or default) == (
            target.port or default
        )
    except ValueError:
        return False
