"""``refex referral …``: the service directory that referral materialises."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.events import ReferralState
from shared.contracts.messages import listing_message
from shared.db import connected
from shared.kafka.inbound import describe_error
from shared.kafka.oneshot import publish_events, publish_tombstone
from shared.operator import (
    DEFAULT_BOOTSTRAP,
    Bootstrap,
    connect,
    console,
    err_console,
    load_model,
    operator_kafka,
    run,
)
from shared.operator_audit import audited
from shared.unit import open_unit

from . import routing
from .evidence import (
    COLUMNS,
    CONTINUITY_COLUMNS,
    LEVEL_COLUMNS,
    STRUCTURAL_COLUMNS,
    ContinuityRow,
    EvidenceRow,
    LevelRow,
    StructuralRow,
)
from .handlers import SOURCE, announce
from .settings import ReferralSettings
from .store import ReferralStore

app = typer.Typer(
    help="Referral: publish and withdraw service listings; evidence on pathways.",
    no_args_is_help=True,
)


@app.command("publish-listing")
def publish_listing(file: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Publish a service listing (JSON file, ServiceListing contract) on the provider agency's
    agency.<id>.listings.v1 topic."""
    listing = load_model(file, ev.ServiceListing)
    run(publish_events(connect(bootstrap), [listing_message(listing)]))
    console.print(f"listed [bold]{listing.service_id}[/bold] ({listing.status.value})")


@app.command("withdraw-listing")
def withdraw_listing(
    agency_id: str, service_id: str, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP
) -> None:
    """Withdraw a listing: a tombstone for its key on the agency's compacted listings topic."""
    run(publish_tombstone(connect(bootstrap), topics.AGENCY_LISTINGS.name(agency_id), service_id))
    console.print(f"withdrew [bold]{service_id}[/bold]")


@app.command("evidence")
def evidence(
    area_digits: Annotated[
        int,
        typer.Option(
            help="Digits of the area code after the country: 0 country, 2 first level, ..."
        ),
    ] = 2,
    csv_file: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Also write the pathways as CSV here, and the continuity, levels and "
            "structural tables beside it (FILE's name with -continuity, -levels or -structural "
            "before its suffix).",
        ),
    ] = None,
) -> None:
    """Per area, dimension and category: referrals, acceptance and completion rates, median
    hours to answer and to decide, unmet needs and why. Per area and programme (the owner
    agency): handovers proposed, requested, completed, rejected, expired and failed, ends of
    assistance, and needs whose support continued after the owner's assistance ended. Per
    level and beneficiary type: needs referred, accepted, completed and unmet, people and
    returnees concerned. The structural gaps reported to government agencies (per district,
    category and period: unmet needs, the period before, trend, reasons), each addressed
    agency's commitment beside it. Runs beside the referral service, with its environment
    (REFERRAL_DATABASE_URL)."""
    try:
        dsn = ReferralSettings().database_dsn
    except ValidationError as exc:
        err_console.print(f"[red]referral settings incomplete:[/red] {describe_error(exc)}")
        raise typer.Exit(2) from exc

    async def _report() -> tuple[
        list[EvidenceRow], list[ContinuityRow], list[LevelRow], list[StructuralRow]
    ]:
        async with open_unit(connected(dsn), ReferralStore, SOURCE) as unit:
            pathways = await unit.stores.pathway_report(area_digits)
            continuity = await unit.stores.continuity_report(area_digits)
            by_level = await unit.stores.level_report()
            return pathways, continuity, by_level, await unit.stores.structural_report()

    rows, continued, by_level, gaps = run(_report())
    table = Table(*COLUMNS, title="Referral pathways")
    for row in rows:
        table.add_row(*row.formatted())
    console.print(table)
    continuity = Table(*CONTINUITY_COLUMNS, title="Continuity (per area and programme)")
    for c in continued:
        continuity.add_row(*c.formatted())
    console.print(continuity)
    levels = Table(*LEVEL_COLUMNS, title="By level and beneficiary type")
    for level in by_level:
        levels.add_row(*level.formatted())
    console.print(levels)
    structural = Table(*STRUCTURAL_COLUMNS, title="Structural gaps and commitments")
    for g in gaps:
        structural.add_row(*g.formatted())
    console.print(structural)
    if csv_file is not None:
        _write_csv(csv_file, COLUMNS, [row.values for row in rows])
        beside = continuity_csv(csv_file)
        _write_csv(beside, CONTINUITY_COLUMNS, [c.values for c in continued])
        by_level_csv = beside_csv(csv_file, "levels")
        _write_csv(by_level_csv, LEVEL_COLUMNS, [level.values for level in by_level])
        gaps_file = beside_csv(csv_file, "structural")
        _write_csv(gaps_file, STRUCTURAL_COLUMNS, [g.values for g in gaps])
        console.print(
            f"wrote {len(rows)} rows to {csv_file}, {len(continued)} to {beside}, "
            f"{len(by_level)} to {by_level_csv}, {len(gaps)} to {gaps_file}"
        )


def beside_csv(csv_file: Path, table: str) -> Path:
    """Where another table goes beside the pathways' CSV: evidence.csv → evidence-<table>.csv."""
    return csv_file.with_name(f"{csv_file.stem}-{table}{csv_file.suffix or '.csv'}")


def continuity_csv(csv_file: Path) -> Path:
    """Where the continuity table goes beside the pathways' CSV: evidence.csv →
    evidence-continuity.csv."""
    return beside_csv(csv_file, "continuity")


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


@app.command("entered-in-error")
def entered_in_error(referral_id: str) -> None:
    """Mark a referral as entered in error (from any state). Runs beside the referral service,
    with its environment; the service's outbox relay publishes the transition."""
    try:
        dsn = ReferralSettings().database_dsn
    except ValidationError as exc:
        err_console.print(f"[red]referral settings incomplete:[/red] {describe_error(exc)}")
        raise typer.Exit(2) from exc

    async def _mark() -> str | None:
        async with open_unit(connected(dsn), ReferralStore, SOURCE) as unit:
            ref = await unit.stores.load_referral(referral_id)
            if ref is None:
                return None
            if ref.status is ReferralState.ENTERED_IN_ERROR:
                return ref.status.value
            out = await routing.transition(unit.stores, ref, ReferralState.ENTERED_IN_ERROR)
            announce(unit, out, correlation_id=ref.correlation_id)
            return ref.status.value

    with audited(operator_kafka(), "referral entered-in-error", "referral", referral_id):
        previous = run(_mark())
        if previous is None:
            err_console.print(f"[red]no referral {referral_id}[/red]")
            raise typer.Exit(1)
    console.print(f"referral {referral_id}: {previous} → entered_in_error")
