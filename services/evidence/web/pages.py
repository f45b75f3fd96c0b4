"""The dashboard's pages: read the filters, ask the report source, shape the tables and charts,
render. Each page is short orchestration; what it shows is decided in filters.py, tables.py
and charts.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from services.evidence.report import (
    ANSWERS_BY_PROVIDER,
    SCORES_BY_PATHWAY,
    UNMET_BY_AREA,
    Report,
    ReportSource,
    Table,
)

from .account_store import Account
from .auth import AccountUnits, Page
from .charts import Chart, drawable, pathway_charts, provider_charts, unmet_charts
from .filters import FILTER_NAMES, ReadFilters, query_of, read_filters
from .i18n import N_, Words, table_title
from .rendering import Renderer
from .tables import table_view

ChartsOf = Callable[[Words, Table], list[Chart]]

# page route name → (title, the report table it draws, its charts)
CHART_PAGES: dict[str, tuple[str, str, ChartsOf]] = {
    "unmet": (N_("Unmet needs by area"), UNMET_BY_AREA, unmet_charts),
    "providers": (N_("Acceptance and time to answer"), ANSWERS_BY_PROVIDER, provider_charts),
    "pathways": (N_("Score trajectories by pathway"), SCORES_BY_PATHWAY, pathway_charts),
}
CHARTED_TABLES = {table for _, table, _ in CHART_PAGES.values()}


@dataclass(frozen=True)
class Pages:
    report_source: ReportSource
    units: AccountUnits
    renderer: Renderer

    async def _report(self, request: Request, account: Account) -> tuple[ReadFilters, Report]:
        read = read_filters(request.query_params, account.country)
        return read, await self.report_source(read.filters)

    def _render(
        self,
        request: Request,
        account: Account,
        template: str,
        read: ReadFilters,
        report: Report,
        **context: object,
    ) -> Response:
        return self.renderer.page(
            request,
            template,
            {
                "account": account,
                "report": report,
                "read": read,
                "filter_names": FILTER_NAMES,
                "query": query_of(read.filters),
                "other_tables": [t.name for t in report.tables if t.name not in CHARTED_TABLES],
                **context,
            },
            status_code=400 if read.problems else 200,
        )

    async def overview(self, request: Request, account: Account) -> Response:
        read, report = await self._report(request, account)
        return self._render(request, account, "overview.html", read, report)

    def chart_page(self, page: str) -> Page:
        title, table_name, charts_of = CHART_PAGES[page]

        async def show(request: Request, account: Account) -> Response:
            read, report = await self._report(request, account)
            words = self.renderer.words_for(request)
            table = report.table(table_name)
            return self._table_page(
                request, account, read, report, title, drawable(charts_of(words, table)), table
            )

        return show

    async def other_table(self, request: Request, account: Account) -> Response:
        read, report = await self._report(request, account)
        words = self.renderer.words_for(request)
        name = request.path_params["name"]
        found = [t for t in report.tables if t.name == name and t.name not in CHARTED_TABLES]
        if not found:
            return self.renderer.page(
                request, "error.html", {"account": account, "message": N_("No such table.")}, 404
            )
        title = table_title(words, name)
        return self._table_page(request, account, read, report, title, [], found[0])

    def _table_page(
        self,
        request: Request,
        account: Account,
        read: ReadFilters,
        report: Report,
        title: str,
        charts: list[Chart],
        table: Table,
    ) -> Response:
        """A page of one report table: its charts above it (if any), the table itself."""
        words = self.renderer.words_for(request)
        return self._render(
            request,
            account,
            "report_page.html",
            read,
            report,
            title=title,
            charts=charts,
            tables=[table_view(words, table)],
        )

    async def accounts(self, request: Request, account: Account) -> Response:
        async with self.units() as unit:
            everyone = await unit.stores.all()
        return self.renderer.page(
            request,
            "accounts.html",
            {"account": account, "accounts": everyone},
        )
