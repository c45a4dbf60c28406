"""HTTP requests by route and status, and how long they took, for ``/metrics``.

Kept in the process, as Prometheus expects of a request counter: each ``serve``
process exposes its own (Prometheus tells them apart by ``instance``) and starts
again at zero when restarted, which ``rate()`` reads as the reset it is. The
figures that the processes on one database share are read from it instead
(``trigger.ops.metrics``).

The ``route`` label is the template the request matched (``/api/runs/{run_id}``),
never the raw path, and every request no route matched shares one label: a scan of
random paths cannot grow the number of series. Methods outside the usual few are
``other`` for the same reason.

A pure ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: the hooks take
hundreds of deliveries a second, and this costs a clock read and two metric updates.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: a hook's acknowledgement takes milliseconds, a page or a listing more.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestMetrics:
    """One app's request figures, in a registry of their own that ``/metrics`` adds
    to what it reads from the database (nothing goes to prometheus_client's global
    registry, so two apps in one process, as in tests, never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bauplan_trigger_http_requests",
            "HTTP requests this process answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "bauplan_trigger_http_request_duration_seconds",
            "Time this process took to answer HTTP requests, by route template and method",
            ["route", "method"],
            buckets=BUCKETS,
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.duration.labels(route, method).observe(seconds)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # What the client hears when no answer was started: the error middleware's 500.
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope.get("method", "")
            self.metrics.observe(
                route_of(scope),
                method if method in _METHODS else "other",
                status,
                time.perf_counter() - start,
            )


def route_of(scope: Scope) -> str:
    """The template of the route the router matched (it notes it in the scope)."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def install(app: FastAPI) -> RequestMetrics:
    """Count ``app``'s requests; ``/metrics`` finds the figures on ``app.state``."""
    metrics = RequestMetrics()
    app.state.bt_request_metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return metrics


def of(app: Any) -> RequestMetrics | None:
    found: RequestMetrics | None = getattr(app.state, "bt_request_metrics", None)
    return found
