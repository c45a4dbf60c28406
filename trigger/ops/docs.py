"""``/docs``: Swagger UI over ``/openapi.json``, served from the package, offline.

FastAPI's own ``/docs`` loads Swagger UI from a CDN: on a machine without internet
it is a blank page. Here the page and its three assets come from the
``swagger_ui_bundle`` package installed with us. They sit behind the page's guard
(a name of this service; the token, or the cookie a ``?token=`` visit sets), so
``/docs`` opens wherever the page opens; "Authorize" in it takes the bearer token
the API calls need.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from trigger.ops.guard import authorize_page

ASSETS = "/docs/assets"
_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
_CACHE = {"Cache-Control": "public, max-age=86400"}

router = APIRouter(include_in_schema=False, dependencies=[Depends(authorize_page)])


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="bauplan-trigger API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        # The validator badge would call validator.swagger.io with the document.
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
    )


@router.get(ASSETS + "/{name}")
def asset(name: str) -> FileResponse:
    if name not in _FILES:
        raise HTTPException(404, detail=f"no docs asset named {name[:60]!r}")
    return FileResponse(Path(swagger_ui_path) / name, media_type=_FILES[name], headers=_CACHE)
