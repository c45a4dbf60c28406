"""The one shape of every refusal on the HTTP surface: ``{"error": "<sentence>"}``.

The hooks, the operator API, ``/metrics``, ``/healthz`` and the routes nobody
declared all answer a problem the same way, with one sentence that names what was
wrong and how to send it right (never a command-line flag: these callers have
none). FastAPI's own answers (``{"detail": ...}``, a list of validation errors
that echoes the input) are turned into that shape here, in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from trigger.core import text


class ErrorBody(BaseModel):
    """Every refusal: one sentence naming the bad value and the fix."""

    error: str = Field(description="what was wrong, with the offending value, and what to do")


# What each error status means on this service, for the OpenAPI document.
MEANINGS: dict[int, str] = {
    400: "the body cannot be read (not UTF-8, not JSON, or not the sender's shape)",
    401: "missing or wrong credentials: the bearer token (or, on a hook, its signature)",
    403: "refused: the API is off (no token and not on loopback), or a cross-site request",
    404: "nothing by that name or id",
    405: "the path exists but not with this method",
    408: "the body did not arrive within [service] body_timeout",
    409: "refused in the present state of the run or trigger",
    413: "the body is over [service] max_body_bytes",
    415: "a body that is not application/json",
    421: "the Host header is not a name of this service ([service] allowed_hosts)",
    422: "a parameter or body field the operation does not take, or a value it refuses",
    503: "the system database is unreachable or cannot take the write; retry",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_SHOWN_ERRORS = 3


def responses(*codes: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with the error model; a
    ``meanings`` entry (``_404="no run with that id"``) says it for one operation."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {
            "model": ErrorBody,
            "description": meanings.get(f"_{code}", MEANINGS[code]),
        }
    return out


def answer(status: int, sentence: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": sentence}, status_code=status, headers=dict(headers or {}))


def install(app: FastAPI) -> None:
    """Put the one shape on ``app``: refusals raised as HTTPException, validation
    errors, and the 404 and 405 of routes that do not exist; and tell it so in the
    document, where FastAPI would declare its own 422 model."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    build = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            _own_422(build())
        return build()

    app.openapi = document  # type: ignore[method-assign]


def _own_422(doc: dict[str, Any]) -> None:
    ours = {"$ref": "#/components/schemas/ErrorBody"}
    for methods in doc.get("paths", {}).values():
        for operation in methods.values():
            answer = operation.get("responses", {}).get("422")
            if answer is not None and "HTTPValidationError" in str(answer):
                answer["description"] = MEANINGS[422]
                answer["content"] = {"application/json": {"schema": ours}}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code < 400:  # a redirect (the page's ?token= login) says where in Location
        return Response(status_code=exc.status_code, headers=headers)
    return answer(exc.status_code, _sentence(request, exc, headers), headers)


def _sentence(request: Request, exc: StarletteHTTPException, headers: dict[str, str]) -> str:
    """Our own sentence as raised; Starlette's and FastAPI's stock phrases told fully."""
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    stock = detail == HTTPStatus(exc.status_code).phrase
    path = text.quoted(request.url.path, 120)
    if exc.status_code == 404 and stock:
        return (
            f"there is no endpoint at {path}: the operator API is under /api, the hooks "
            "under /hooks, and /docs describes them all"
        )
    if exc.status_code == 405 and stock:
        allowed = headers.get("allow") or headers.get("Allow") or "another method"
        return f"{path} does not take {request.method}; send {allowed}"
    if detail == "There was an error parsing the body":
        return "the body cannot be read as JSON text; send UTF-8 JSON"
    return detail


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return answer(422, validation_sentence(exc.errors()))


def validation_sentence(errors: Sequence[Mapping[str, Any]]) -> str:
    """Pydantic's errors as one sentence: where, the value (escaped and cut), and why.

    The value is shown as ``repr`` shows it, so a control character or a lone surrogate
    in it comes back as a visible escape, and NaN as ``nan``: the answer always encodes.
    """
    parts = [_one(error) for error in errors[:_SHOWN_ERRORS]]
    if len(errors) > _SHOWN_ERRORS:
        parts.append(f"and {len(errors) - _SHOWN_ERRORS} more")
    return "; ".join(parts) or "the request does not fit this operation; see /docs"


def _one(error: Mapping[str, Any]) -> str:
    where = _where(error.get("loc") or ())
    kind = error.get("type")
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"{where} is not one this operation takes; see /docs"
    if kind == "json_invalid":
        why = (error.get("ctx") or {}).get("error") or "JSON decode error"
        return f"the body is not valid JSON ({why}); send a JSON object"
    message = str(error.get("msg") or "is refused").removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        shown = text.quoted(value) if isinstance(value, str) else repr(value)
        return f"{where} = {shown}: {message}"
    return f"{where}: {message}"


def _where(loc: Iterable[Any]) -> str:
    first, *rest = [*loc] or ["request"]
    names = ".".join(str(p) if _NAME.match(str(p)) else text.quoted(str(p), 40) for p in rest)
    if first == "body":
        return f"body field {names}" if names and not names.isdigit() else "the body"
    if first in ("query", "path", "header", "cookie"):
        return f"{first} parameter {names}"
    return names or str(first)
