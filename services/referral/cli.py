"""``refex referral …``: the service directory that referral materialises."""

from __future__ import annotations

from pathlib import Path

import typer

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.messages import listing_message
from shared.kafka.oneshot import publish_events, publish_tombstone
from shared.operator import DEFAULT_BOOTSTRAP, Bootstrap, console, load_model, run

app = typer.Typer(help="Referral: publish and withdraw service listings.", no_args_is_help=True)


@app.command("publish-listing")
def publish_listing(file: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Publish a service listing (JSON file, ServiceListing contract) on the provider agency's
    agency.<id>.listings.v1 topic."""
    listing = load_model(file, ev.ServiceListing)
    run(publish_events(bootstrap, [listing_message(listing)]))
    console.print(f"listed [bold]{listing.service_id}[/bold] ({listing.status.value})")


@app.command("withdraw-listing")
def withdraw_listing(
    agency_id: str, service_id: str, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP
) -> None:
    """Withdraw a listing: a tombstone for its key on the agency's compacted listings topic."""
    run(publish_tombstone(bootstrap, topics.AGENCY_LISTINGS.name(agency_id), service_id))
    console.print(f"withdrew [bold]{service_id}[/bold]")
