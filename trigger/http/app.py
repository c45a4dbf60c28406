"""The HTTP ingress: one FastAPI app, served by uvicorn inside ``serve``.

``build_app`` assembles the routers and health providers it is given (the
composition root, ``trigger.service``, chooses them), serves ``/healthz``, and
``component`` runs the server inside ``serve`` for the ``all`` and ``ingress`` roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from trigger.context import Component, ServiceContext
from trigger.core import db, outage
from trigger.core.errors import TriggerError
from trigger.core.settings import Settings
from trigger.http import connections, errors, metrics_middleware

log = logging.getLogger(__name__)

DESCRIPTION = """\
Webhooks under `/hooks` (each checked by its sender's signature), the operator API
under `/api` and `/metrics` (a bearer token, see the `bearer` scheme), `/healthz`.

Every refusal is `{"error": "<sentence>"}`: one sentence naming the bad value and the
fix. Actions (`POST`) take a JSON body, or no body and the header `X-Requested-By`.
"""

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


class Health(BaseModel):
    """``/healthz``: each check's own answer, and a sentence naming the failing ones."""

    model_config = ConfigDict(extra="allow")
    ok: bool
    checks: dict[str, dict[str, Any]] = Field(
        description="per check (the database, each watcher ...) at least `ok`"
    )
    error: str | None = Field(
        default=None, description="when not ok: which checks fail and why, in one sentence"
    )


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
        description=DESCRIPTION,
        version="1",
        # /docs is a router of its own that serves Swagger UI from the package, offline.
        docs_url=None,
        redoc_url=None,
    )
    engine = db.engine(settings.database_url())
    app.state.bauplan_trigger = AppState(
        settings=settings, context=context, engine=engine, health=health
    )
    errors.install(app)
    metrics_middleware.install(app)

    @app.get(
        "/healthz",
        summary="Whether this process can reach the system database",
        response_model=Health,
        responses={503: {"model": Health, "description": "a check fails; `error` says which"}},
    )
    def healthz(request: Request) -> JSONResponse:
        checks: dict[str, Any] = {"database": _database_check(state(request).engine)}
        for name, provider in health.items():
            try:
                checks[name] = provider()
            except Exception as exc:  # a broken provider must not hide the others
                checks[name] = {"ok": False, "error": type(exc).__name__}
        failing = {name: check for name, check in checks.items() if not check.get("ok")}
        if not failing:
            return JSONResponse({"ok": True, "checks": checks})
        why = "; ".join(
            f"{name}: {check.get('error') or 'not ok'}" for name, check in failing.items()
        )
        body = {"ok": False, "checks": checks, "error": f"unhealthy: {why}"}
        return JSONResponse(body, status_code=503)

    for router in routers:
        app.include_router(router)
    # One answer for the whole app while the system database is unreachable: 503.
    for kind in outage.DATABASE_ERRORS:
        app.add_exception_handler(kind, outage.answer_unavailable)
    return app


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
