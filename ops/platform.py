"""``refex platform …``: what operators own: topics and the agency registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.messages import agency_message
from shared.kafka.admin import TopicCreationError, ensure_agency_topics, ensure_topics
from shared.kafka.oneshot import publish_events
from shared.operator import DEFAULT_BOOTSTRAP, Bootstrap, console, err_console, load_model, run

from .contract_docs import write_contract_docs

app = typer.Typer(help="Platform: topics and the agency registry.", no_args_is_help=True)


@app.command("create-topics")
def create_topics(bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Create every topic of the catalogue that does not exist yet."""
    try:
        results = run(ensure_topics(bootstrap, topics.CATALOGUE))
    except TopicCreationError as exc:
        err_console.print(f"[red]topic creation failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table("topic", "owner", "partitions", "cleanup", "state")
    for result in results:
        spec = topics.spec(result.name)
        table.add_row(
            spec.name,
            spec.owner.value,
            str(spec.partitions),
            spec.cleanup_policy.value,
            "created" if result.created else "exists",
        )
    console.print(table)


@app.command("register-agency")
def register_agency(file: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Create an agency's topics (submissions, listings, responses, inbox) and publish it
    (JSON file, AgencyRecord contract) on directory.agencies.v1."""
    agency = load_model(file, ev.AgencyRecord)
    inbox = topics.agency_inbox(agency.agency_id)

    async def _register() -> None:
        await ensure_agency_topics(bootstrap, agency.agency_id)
        await publish_events(
            bootstrap,
            [agency_message(agency)],
        )

    run(_register())
    console.print(f"registered [bold]{agency.agency_id}[/bold]; inbox topic {inbox}")


REPO_ROOT = Path(__file__).resolve().parents[1]


@app.command("export-contracts")
def export_contracts(
    root: Annotated[
        Path, typer.Option(help="Repository root; files go to docs/schemas and docs/asyncapi.")
    ] = REPO_ROOT,
) -> None:
    """Write the payload JSON Schemas (docs/schemas) and AsyncAPI documents (docs/asyncapi)."""
    for path in write_contract_docs(root):
        console.print(f"wrote {path.relative_to(root)}", soft_wrap=True, highlight=False)
