"""The evidence dashboard's ASGI app, the table of contents of its pages: read-only, rendered on
the server, behind a login; the evidence service mounts it under ``/dashboard``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Route

from services.evidence.report import ReportSource
from shared.web.security_headers import SecurityHeaders
from shared.web.static_files import ROUTE_NAME, StaticFiles

from .account_store import Role
from .auth import AccountUnits, Auth
from .config import DashboardConfig
from .pages import CHART_PAGES, Pages
from .rendering import Renderer

SESSION_COOKIE = "refex_dashboard"
# The vendored Chart.js, the dashboard's script and style sheet (web/static/).
STATIC_FILES = ("chart.umd.min.js", "dashboard.js", "dashboard.css")


def dashboard_app(
    config: DashboardConfig, report_source: ReportSource, accounts: AccountUnits
) -> Starlette:
    renderer = Renderer(StaticFiles(__package__, STATIC_FILES), config.secure_cookies)
    auth = Auth(config, accounts, renderer)
    pages = Pages(report_source, accounts, renderer)
    routes = [
        Route("/", auth.guard(pages.overview), name="overview"),
        *(Route(f"/{page}", auth.guard(pages.chart_page(page)), name=page) for page in CHART_PAGES),
        Route("/tables/{name:str}", auth.guard(pages.other_table), name="table"),
        Route("/accounts", auth.guard(pages.accounts, Role.OPERATOR), name="accounts"),
        Route("/login", auth.login_page, methods=["GET", "POST"], name="login"),
        Route("/logout", auth.logout, methods=["POST"], name="logout"),
        Route("/static/{digest:str}/{name:str}", renderer.static.serve, name=ROUTE_NAME),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),  # scripts, styles, images from the dashboard only
            Middleware(GZipMiddleware, minimum_size=500),
            Middleware(
                SessionMiddleware,
                secret_key=config.session_key.get_secret_value(),
                session_cookie=SESSION_COOKIE,
                max_age=int(config.session_idle_s),
                same_site="lax",
                https_only=config.secure_cookies,
            ),
        ],
    )
    return app
