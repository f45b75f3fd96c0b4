"""``refex notification …``: what agencies receive."""

from __future__ import annotations

from typing import Annotated

import typer

from shared.contracts import topics
from shared.kafka.oneshot import follow
from shared.operator import DEFAULT_BOOTSTRAP, Bootstrap, err_console, print_record, run

app = typer.Typer(help="Notification: follow agency inboxes.", no_args_is_help=True)


@app.command("follow-inbox")
def follow_inbox(
    agency_id: str,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest message.")] = True,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            help="Stop after this many seconds without a message (default: follow forever)."
        ),
    ] = None,
) -> None:
    """Print the events on agency.<id>.inbox.v1 as they arrive."""
    try:
        topic = topics.agency_inbox(agency_id)
    except ValueError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc

    async def _follow() -> None:
        async for record in follow(
            bootstrap, topic, from_beginning=from_beginning, idle_timeout_s=idle_timeout
        ):
            print_record(record)

    run(_follow())
