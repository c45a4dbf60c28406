"""The HTTP ingress: one FastAPI app, served by uvicorn inside ``serve``.

``build_app`` assembles the routers and health providers it is given (the
composition root, ``trigger.service``, chooses them), serves ``/healthz``, and
``component`` runs the server inside ``serve`` for the ``all`` and ``ingress`` roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from trigger.context import Component, ServiceContext
from trigger.core import db, outage, text
from trigger.core.errors import TriggerError
from trigger.core.settings import Settings
from trigger.http import connections, metrics_middleware

log = logging.getLogger(__name__)

_BACKLOG = 2048  # uvicorn's default, which it sets again when it starts serving

# ``provider()`` returns a JSON-able dict with at least ``ok: bool``.
HealthProvider = Callable[[], dict[str, Any]]


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


@dataclass
class AppState:
    settings: Settings
    context: ServiceContext | None
    engine: sa.Engine
    # The health providers /healthz reads: the page shows them per trigger.
    health: Mapping[str, HealthProvider] = field(default_factory=dict)


def state(request: Request) -> AppState:
    app_state: AppState = request.app.state.bauplan_trigger
    return app_state


def build_app(
    settings: Settings,
    context: ServiceContext | None,
    routers: Sequence[APIRouter],
    health: Mapping[str, HealthProvider],
) -> FastAPI:
    app = FastAPI(
        title="bauplan-trigger",
        summary="Durable run triggers for Bauplan pipelines",
        version="1",
    )
    engine = db.engine(settings.database_url())
    app.state.bauplan_trigger = AppState(
        settings=settings, context=context, engine=engine, health=health
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    metrics_middleware.install(app)

    @app.get(
        "/healthz",
        summary="Whether this process can reach the system database",
        responses={503: {"description": "the system database is unreachable"}},
    )
    def healthz(request: Request) -> JSONResponse:
        checks: dict[str, Any] = {"database": _database_check(state(request).engine)}
        for name, provider in health.items():
            try:
                checks[name] = provider()
            except Exception as exc:  # a broken provider must not hide the others
                checks[name] = {"ok": False, "error": type(exc).__name__}
        ok = all(bool(check.get("ok")) for check in checks.values())
        return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)

    for router in routers:
        app.include_router(router)
    # One answer for the whole app while the system database is unreachable: 503.
    for kind in outage.DATABASE_ERRORS:
        app.add_exception_handler(kind, outage.answer_unavailable)
    return app


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, whose errors echo the offending input: what JSON cannot hold must
    come back encodable, not as a 500 while encoding the answer."""
    assert isinstance(exc, RequestValidationError)
    detail = _echoable(text.readable(jsonable_encoder(exc.errors())))
    return JSONResponse(status_code=422, content={"detail": detail})


def _echoable(value: Any) -> Any:
    """NaN and infinities (which Python's JSON parser admits) as null, as FastAPI writes
    them in route answers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _echoable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_echoable(item) for item in value]
    return value


def _database_check(engine: sa.Engine) -> dict[str, Any]:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        return {"ok": False, "error": f"system database unreachable ({type(exc).__name__})"}
    return {"ok": True}


def component(routers: Sequence[APIRouter], health: Mapping[str, HealthProvider]) -> Component:
    """The HTTP ingress as a ``serve`` component, serving these routers."""

    async def serve_http(ctx: ServiceContext) -> None:
        await _serve(build_app(ctx.settings, ctx, routers, health), ctx)

    return Component("http", ("all", "ingress"), serve_http, bind=_bind)


async def _serve(app: FastAPI, ctx: ServiceContext) -> None:
    settings = ctx.settings
    service = settings.service
    config = uvicorn.Config(
        app,
        host=service.host,
        port=service.port,
        http=connections.protocol(service.body_timeout, service.max_connections),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = _Server(config)
    sock = ctx.sockets.get("http") or _bind(settings)
    restore = connections.throttle_accept_errors(
        asyncio.get_running_loop(), service.max_connections
    )
    log.info("listening on http://%s", service.listen)
    try:
        await server.serve(sockets=[sock])
    except asyncio.CancelledError:
        server.should_exit = True
        raise
    finally:
        restore()
        app.state.bauplan_trigger.engine.dispose()


class _Server(uvicorn.Server):
    """``serve`` owns SIGINT/SIGTERM and cancels this task; uvicorn must not take them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(settings: Settings) -> socket.socket:
    """Bound and listening, so the port is ours from here on: a socket that is only
    bound does not stop another SO_REUSEADDR socket from binding the same port."""
    family = socket.AF_INET6 if ":" in settings.service.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it Nagle holds the response body
    # until the client's delayed ACK (40 ms on Linux): every ack would take 40 ms more.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if settings.service.reuse_port:
        # Several ingress processes on one port: one per core lifts the GIL ceiling.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((settings.service.host, settings.service.port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise TriggerError(
            f"cannot listen on {settings.service.listen} ({exc.strerror}); "
            "change [service] listen or stop the process using that port"
        ) from None
    sock.set_inheritable(True)
    return sock
