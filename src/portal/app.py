"""The Litestar application: plugins, middleware, routers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Router
from litestar.config.csrf import CSRFConfig
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from portal import contexts, db, metrics
from portal.auth import tokens, twostep
from portal.jobs import queue
from portal.locations.service import viewer_zone
from portal.migrate import apply_migrations, pending_migrations
from portal.settings import Settings, get_settings
from portal.web import templating
from portal.web.deps import DEPENDENCIES
from portal.web.errors import EXCEPTION_HANDLERS
from portal.web.guards import assert_every_route_guarded, current_user_or_none, requires_role
from portal.web.metrics import metrics_endpoint
from portal.web.middleware import CSRF_COOKIE, PortalMiddleware, add_security_headers
from portal.web.requestcontext import RequestContext

STATIC_DIR = Path(__file__).parent / "static"
WEBHOOK_PATH = "/stripe/webhook"

logger = logging.getLogger("portal")


class PendingMigrations(RuntimeError):
    pass


def route_handlers() -> list[Any]:
    return contexts.route_handlers()


async def provide_viewer_zone(request: Request[Any, Any, Any]) -> str:
    """``viewer_zone`` (web/deps.py's ViewerZone): the signed-in person's clinic's zone."""
    return await viewer_zone(current_user_or_none(request))


def freeze_startup_heap() -> None:
    """Leave what the process holds once started (modules, the app, templates, locale
    data: some 200,000 objects) out of the garbage collector's full passes.

    They live as long as the process; a full pass walked them all again whenever the
    objects of busy pages had piled up, which on the development machine took half a
    second at load 20 (a report page at chain size set one off every few requests).
    Later objects are collected as before.
    """
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, *, manage_database: bool = True) -> Litestar:
    """Build the app.

    ``manage_database=False`` leaves the engine to the caller (tests bind their
    own database and pool on their own event loop).
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        engine = db.make_engine(settings.database_url)
        db.bind_engine(engine)
        await db.prepare(engine)
        pending = await pending_migrations()
        if pending:
            if not settings.embedded:
                raise PendingMigrations(
                    f"{len(pending)} database migration(s) are pending. "
                    "Run `portal migrate` before starting the server."
                )
            await apply_migrations(quiet=True)
        await db.start_pool(engine, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
        try:
            async with jobs_queue(app):
                yield
        finally:
            await db.close_pool(engine)

    @asynccontextmanager
    async def jobs_queue(app: Litestar) -> AsyncIterator[None]:
        """Embedded: the jobs' worker runs in this process. PostgreSQL: this process
        only queues runs ("run now"); ``portal worker`` runs them."""
        if settings.jobs_in_process:
            worker = queue.InProcessWorker(settings)
            await worker.start()
            app.state.jobs_queue = worker.app
            try:
                yield
            finally:
                await worker.stop()
        elif not settings.is_sqlite:
            async with queue.build(settings).open_async() as jobs:
                app.state.jobs_queue = jobs
                yield
        else:
            yield

    static_router = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        opt={"public": True},
        name="static",
    )
    # The API's description is for the people who may hold API tokens (owners,
    # managers, accountants); therapists and clients get 403.
    openapi_router = Router(
        path="/api/v1/schema", route_handlers=[], guards=[requires_role(*tokens.TOKEN_ROLES)]
    )
    app = Litestar(
        route_handlers=[*route_handlers(), metrics_endpoint, static_router],
        dependencies={**DEPENDENCIES, "viewer_zone": Provide(provide_viewer_zone)},
        middleware=[
            DefineMiddleware(
                PortalMiddleware,
                settings=settings,
                load_session=twostep.load_session,
                authenticate_token=twostep.authenticate_token,
            )
        ],
        csrf_config=CSRFConfig(
            secret=settings.secret_key,
            cookie_name=CSRF_COOKIE,
            cookie_secure=settings.secure_cookies,
            cookie_httponly=True,
            cookie_samesite="lax",
            header_name="x-csrftoken",
            exclude=[WEBHOOK_PATH, "/static/"],
        ),
        template_config=TemplateConfig(
            directory=settings.templates_dir,
            engine=JinjaTemplateEngine,
            engine_callback=lambda engine: templating.configure(
                engine,
                settings.clinic_name,
                # An edited template shows at once where someone develops (debug, or the
                # embedded SQLite default of `make run`); a server with its own database
                # reads each template once instead of checking its file on every page.
                reload=settings.debug or settings.embedded,
            ),
        ),
        openapi_config=OpenAPIConfig(
            title="Clinic Portal API",
            version="1.0.0",
            path="/api/v1/schema",
            render_plugins=[JsonRenderPlugin()],
            openapi_router=openapi_router,
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[add_security_headers],
        lifespan=[database] if manage_database else [],
        # A server process's own app (tests build theirs and leave the heap alone).
        on_startup=[freeze_startup_heap] if manage_database else [],
        on_shutdown=[metrics.process_exit],
        debug=False,
        # Logging is the entry points' (``portal.logs.configure``): Litestar's
        # default set-up would add a second root handler in its own format.
        logging_config=None,
        request_max_body_size=2 * 1024 * 1024,
    )
    app.state.settings = settings
    # Outermost, around Litestar's router and exception handling: every request,
    # a path no route matches included, gets its id, log line and metrics (and
    # the trusted proxy's forwarded headers applied) — route middleware would
    # run only for matched routes.
    app.asgi_handler = RequestContext(
        app.asgi_handler, forwarded_allow_ips=settings.forwarded_allow_ips
    )
    assert_every_route_guarded(app)
    return app
