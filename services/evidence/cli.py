"""``refex evidence …``: the evidence read model's aggregates, for operators."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from shared.contracts.taxonomy import Dimension, Level
from shared.db import connected
from shared.kafka.inbound import describe_error
from shared.operator import console, err_console, run

from .export import table_csv
from .handlers import SOURCE
from .report import Filters, Report
from .settings import EvidenceSettings
from .source import report_of
from .store import EvidenceStore
from .web import account_cli

app = typer.Typer(help="Evidence: the suppressed aggregates of outcomes and pathways.")


@app.callback()
def _group() -> None:
    """Evidence: the suppressed aggregates of outcomes and pathways."""


@app.command("export")
def export(
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Write one CSV per table here (<table>.csv); else print to stdout."),
    ] = None,
    table: Annotated[str | None, typer.Option(help="Only this table (e.g. unmet_by_area).")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2, e.g. SN.")] = None,
    region: Annotated[str | None, typer.Option(help="An area code prefix, e.g. SN01.")] = None,
    period: Annotated[str | None, typer.Option(help="A month (UTC), e.g. 2026-12.")] = None,
    dimension: Annotated[Dimension | None, typer.Option(help="Needs of this dimension.")] = None,
    level: Annotated[Level | None, typer.Option(help="Needs of this level.")] = None,
) -> None:
    """The report's tables as CSV, small cells suppressed exactly as on the dashboard and on
    evidence.aggregates.v1 (EVIDENCE_K). Pseudonymous aggregates only. Runs beside the
    evidence service, with its environment (EVIDENCE_DATABASE_URL)."""
    try:
        settings = EvidenceSettings()
    except ValidationError as exc:
        err_console.print(f"[red]evidence settings incomplete:[/red] {describe_error(exc)}")
        raise typer.Exit(2) from exc
    filters = Filters(country, region, period, dimension, level)

    async def _report() -> Report:
        async with connected(settings.database_dsn) as conn:
            facts = await EvidenceStore(conn).facts()
        return report_of(facts, filters, settings.k, datetime.now(UTC))

    report = run(_report())
    tables = [t for t in report.tables if table is None or t.name == table]
    if not tables:
        names = ", ".join(t.name for t in report.tables)
        err_console.print(f"[red]no table {table}[/red]; the tables: {names}")
        raise typer.Exit(1)
    if out_dir is None:
        for t in tables:
            if len(tables) > 1:
                typer.echo(f"# {t.name}")
            typer.echo(table_csv(t), nl=False)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for t in tables:
        (out_dir / f"{t.name}.csv").write_text(table_csv(t))
    console.print(f"wrote {len(tables)} tables to {out_dir} (k = {report.k})")


# The dashboard's accounts: add-user, disable-user, enable-user, set-password, list-users.
account_cli.register(app, SOURCE)
