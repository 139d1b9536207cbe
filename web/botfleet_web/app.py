"""The page's HTTP edge: a FastAPI ``APIRouter`` over a fleet source (GET only).

``add_fleet_routes(app, source)`` is what ``botfleet serve`` adds beside the completions API;
``fleet_app(source)`` is the page alone (the chart's Deployment, tests). Every answer
carries a Content-Security-Policy without inline script or style; a bot's files are
served only from its own model folder, by key (:func:`botfleet_web.source.served_key`).
"""

from __future__ import annotations

import hmac
import logging
from importlib import resources

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from botfleet.storage import NotFound, StorageError

from . import render
from .card_html import card_to_html
from .source import Bot, served_key

log = logging.getLogger("botfleet_web")

# Scripts, styles, images and fetches from this origin only; nothing inline, no frames,
# no plugins, no form posts elsewhere.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# A file of a bot is data, never a document that runs anything.
FILE_CSP = "default-src 'none'; sandbox"
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
TEXT_TYPES = {"md", "json", "txt"}
ASSET_TYPES = {"page.css": "text/css; charset=utf-8", "page.js": "text/javascript; charset=utf-8"}


def file_type(key: str) -> tuple[str, bool]:
    """(content type, shown inline) for a file of a bot: pictures and text inline, anything
    else (weights, SVG, HTML) as a download."""
    extension = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    if extension in IMAGE_TYPES:
        return IMAGE_TYPES[extension], True
    if extension in TEXT_TYPES:
        return "text/plain; charset=utf-8", True
    return "application/octet-stream", False


def html_response(text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code, headers={**COMMON_HEADERS, "Content-Security-Policy": PAGE_CSP})


def bearer_check(token: str | None):
    """A dependency that lets a request through only with ``Authorization: Bearer <token>``
    (no check when ``token`` is None)."""

    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})

    return check


def load_assets() -> dict[str, bytes]:
    folder = resources.files("botfleet_web") / "static"
    return {name: (folder / name).read_bytes() for name in ASSET_TYPES}


def add_fleet_routes(
    routes: FastAPI | APIRouter, source, *, completions_url: str | None = None, token: str | None = None
) -> None:
    """The gallery (``/``), a bot's page (``/bots/<model-id>``), its files
    (``/bots/<model-id>/files/model/...``) and the page's own script and style (``/assets/``).

    ``source``: a :class:`~botfleet_web.source.StoreSource`, ``ClusterSource`` or
    ``ProvidedSource``. ``completions_url``: where the "try it" box posts (an OpenAI-style
    completions API on the same origin), or None for no box. ``token``: a bearer token every
    request must show.
    """
    # Declared on the app itself (no include_router): Ray Serve pickles its ingress app,
    # and an app with an included router does not pickle.
    checked = [Depends(bearer_check(token))]
    assets = load_assets()

    @routes.get("/", response_class=HTMLResponse, dependencies=checked)
    def gallery(phase: str | None = None) -> Response:
        return html_response(render.gallery_page(source.bots(), phase))

    @routes.get("/bots/{model_id}", response_class=HTMLResponse, dependencies=checked)
    def bot(model_id: str) -> Response:
        found = source.bot(model_id)
        if found is None:
            return html_response(render.not_found_page(f"No bot {model_id}."), 404)
        return html_response(render.bot_page(found, card_of(source, found), completions_url))

    @routes.get("/bots/{model_id}/files/{key:path}", dependencies=checked)
    def bot_file(model_id: str, key: str) -> Response:
        found = source.bot(model_id, details=False) if served_key(key) else None
        if found is None:
            return html_response(render.not_found_page(f"No file {key} of {model_id}."), 404)
        try:
            data = source.read(found, key)
        except NotFound:
            return html_response(render.not_found_page(f"No file {key} of {model_id}."), 404)
        content_type, inline = file_type(key)
        headers = {**COMMON_HEADERS, "Content-Security-Policy": FILE_CSP, "Cache-Control": "no-cache"}
        if not inline:
            headers["Content-Disposition"] = f'attachment; filename="{key.rsplit("/", 1)[-1]}"'
        return Response(data, media_type=content_type, headers=headers)

    @routes.get("/favicon.ico", dependencies=checked)
    def favicon() -> Response:
        return Response(status_code=204, headers=COMMON_HEADERS)  # no icon; browsers ask anyway

    @routes.get("/assets/{name}", dependencies=checked)
    def asset(name: str) -> Response:
        if name not in assets:
            return html_response(render.not_found_page(f"No asset {name}."), 404)
        return Response(assets[name], media_type=ASSET_TYPES[name], headers=COMMON_HEADERS)


def fleet_router(source, *, completions_url: str | None = None, token: str | None = None) -> APIRouter:
    """The page's routes (:func:`add_fleet_routes`) as a router, for apps that include routers."""
    router = APIRouter()
    add_fleet_routes(router, source, completions_url=completions_url, token=token)
    return router


def card_of(source, bot: Bot) -> str | None:
    """The bot's model card as HTML, its relative links pointing at its files here."""
    try:
        markdown = source.read(bot, "model/README.md").decode("utf-8", errors="replace")
    except NotFound:
        return None
    return card_to_html(markdown, lambda key: render.file_url(bot.model_id, key) if served_key(key) else None)


def install_error_pages(app: FastAPI) -> None:
    """An unreachable store is a one-line 503 (details only in the log)."""

    @app.exception_handler(StorageError)
    def store_failed(request: Request, exc: StorageError) -> Response:
        log.warning("fleet page: %s", exc)
        return html_response(render.not_found_page("The object store did not answer; try again."), 503)


def mount_fleet_page(app: FastAPI, source, *, completions_url: str | None = "/v1/completions") -> None:
    """Add the page to another FastAPI app (``botfleet serve``'s ingress), on its port:
    the router at ``/`` and its error pages. Its own routes must not be GET ``/``,
    ``/bots/...``, ``/assets/...`` or ``/favicon.ico``."""
    install_error_pages(app)
    add_fleet_routes(app, source, completions_url=completions_url)


def fleet_app(source, *, completions_url: str | None = None, token: str | None = None) -> FastAPI:
    """The page alone: the router, its error pages and an unauthenticated ``/healthz``."""
    app = FastAPI(title="botfleet fleet page", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_pages(app)
    add_fleet_routes(app, source, completions_url=completions_url, token=token)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    return app
