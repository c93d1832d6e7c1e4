"""The app factory: ``create_app(settings)`` builds the whole web app around one database.

    uvicorn --factory server.main:create_app        (circuitboard serve does this for you)

Routes live in ``server/api/*.py`` (JSON) and ``server/pages/*.py`` (HTML); each module exposes two
routers: ``read`` (GET routes a share link may reach) and ``write`` (everything that changes state,
owner only). Each route is thin: it reads its parameters, asks a view of ``server.views`` (reads) or
``server.submit`` (writes), and returns the model as JSON or renders it into a template. ``read`` routers are mounted twice, at ``/`` and under ``/s/{token}`` (see
``server.access``); ``write`` routers only at ``/``. Templates and static files come from the
``frontend_templates`` package (``core.resources``); plotly.js is served from the installed plotly
package, never a CDN.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from core.db.session import make_engine, upgrade
from core.resources import static_dir, templates_dir
from core.settings import Settings, get_settings
from server import cache, security
from server.shed import Shed

ROUTE_MODULES = (  # the busiest first: a request is matched router by router (about 40 us each)
    "server.api.runs",
    "server.pages.runs",
    "server.api.sweeps",
    "server.api.interventions",
    "server.api.shares",
    "server.api.compare",
    "server.api.populations",
    "server.api.studies",
    "server.pages.compare",
    "server.pages.sweeps",
    "server.pages.shares",
    "server.pages.populations",
)
SHARE_PREFIX = "/s/{token}"


def plotly_js_path() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url, pool_timeout=settings.db_pool_timeout_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()  # on shutdown: close the pooled connections

    app = FastAPI(title="circuitboard", version="0.1.0", lifespan=lifespan,
                  description="Watch attention circuits form in small transformers, and test them causally.")
    app.state.settings = settings
    app.state.engine = engine
    app.state.templates = Jinja2Templates(directory=str(templates_dir()))

    app.mount("/static", StaticFiles(directory=str(static_dir())), name="static")
    plotly_js = plotly_js_path()

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_min_js() -> FileResponse:
        return FileResponse(plotly_js, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    modules = [importlib.import_module(name) for name in ROUTE_MODULES]
    for module in modules:  # reads first (no read route shares a method and path with a write route)
        app.include_router(module.read)
    for module in modules:
        app.include_router(module.write)
    for module in modules:  # a share link's copies last: they match only /s/... paths
        app.include_router(module.read, prefix=SHARE_PREFIX, include_in_schema=False)

    security.install(app, settings)
    cache.install(app, settings.page_cache_mb, settings.page_cache_check_seconds)  # finished runs' pages and JSON, rendered once
    app.add_middleware(GZipMiddleware, minimum_size=1024)  # pages and JSON alike; already-encoded bodies pass
    app.add_middleware(Shed, limit=settings.max_inflight_requests)  # outermost: overload gets a fast 503
    return app
