"""The studio's FastAPI app: JSON API (documented by its OpenAPI schema at
``/api/openapi.json``), the live channel, and the pages with their assets.

Pages are static HTML plus a small script each; data comes from the JSON API, charts
from plotly.js served out of the installed ``plotly`` package: no CDN, works offline.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import plotly
from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from megasim.explore.filters import FilterError
from megasim.studio import api_agents, api_inquiry, api_manage, api_runs
from megasim.studio.auth import TokenGuard
from megasim.studio.catalog import RunNotFoundError
from megasim.studio.context import Studio

STATIC = Path(__file__).parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
RUN_PAGES = ("agents", "cluster", "ask", "report")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")  # /runs/{id}/{page}
_HEADER = re.compile(r"^<!-- title: (.*?); scripts: (.*?) -->\n")


def render_page(name: str) -> str:
    """A page: the shared shell around ``static/pages/<name>.html``, whose first line
    names its title and scripts (plotly.js loads first; page scripts are deferred)."""
    fragment = (STATIC / "pages" / f"{name}.html").read_text(encoding="utf-8")
    header = _HEADER.match(fragment)
    if header is None:
        raise ValueError(f"static/pages/{name}.html lacks its title/scripts line")
    scripts = "\n".join(
        f'<script src="{src}"></script>'
        if src.startswith("/vendor/")
        else f'<script src="{src}" defer></script>'
        for src in header.group(2).split()
    )
    shell = (STATIC / "shell.html").read_text(encoding="utf-8")
    filled = shell.replace("{title}", header.group(1)).replace("{scripts}", scripts)
    return filled.replace("{body}", fragment[header.end() :])


def create_app(runs: Path, token: str | None = None, live_interval_s: float = 1.0) -> FastAPI:
    """The studio over the run directories under ``runs``; ``token`` guards everything."""
    app = FastAPI(
        title="megasim studio",
        summary="Watch, question and steer megasim runs.",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN; the schema itself is the documentation
        redoc_url=None,
    )
    app.state.studio = Studio(runs, live_interval_s=live_interval_s)
    for module in (api_runs, api_agents, api_inquiry, api_manage):
        app.include_router(module.router)

    missing = render_page("missing")

    def not_found(request: Request, detail: str) -> Response:
        """JSON for the API; for a page address (a bookmark of a deleted run), a page."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": detail}, 404)
        return HTMLResponse(missing.replace("{message}", html.escape(detail)), 404)

    @app.exception_handler(RunNotFoundError)
    async def _no_run(request: Request, exc: RunNotFoundError) -> Response:
        return not_found(request, f"no run {str(exc)[:80]!r} in the runs folder")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return not_found(request, str(exc.detail))
        return await http_exception_handler(request, exc)

    @app.exception_handler(FilterError)
    async def _bad_filter(_: Request, exc: FilterError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 422)

    pages = {name: render_page(name) for name in ("runs", "run", "agent", *RUN_PAGES)}

    @app.get("/", include_in_schema=False)
    def runs_page() -> HTMLResponse:
        return HTMLResponse(pages["runs"])

    @app.get("/runs/{run_id}", include_in_schema=False)
    def run_page(run_id: str) -> HTMLResponse:
        app.state.studio.catalog.path(run_id)
        return HTMLResponse(pages["run"])

    @app.get("/runs/{run_id}/{page}", include_in_schema=False)
    def run_subpage(run_id: str, page: str) -> HTMLResponse:
        app.state.studio.catalog.path(run_id)
        if page not in RUN_PAGES:
            raise HTTPException(404, "no such page")
        return HTMLResponse(pages[page])

    @app.get("/runs/{run_id}/agents/{agent_id}", include_in_schema=False)
    def agent_page(run_id: str, agent_id: int) -> HTMLResponse:
        app.state.studio.catalog.path(run_id)
        return HTMLResponse(pages["agent"])

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if token is None:  # loopback only: refuse other Host names (DNS rebinding)
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_HOSTS))
    app.add_middleware(TokenGuard, token=token)  # outermost: pages, assets, API, live
    return app
