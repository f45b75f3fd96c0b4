"""``refex intake …``: act as a partner agency towards intake."""

from __future__ import annotations

from pathlib import Path

import typer

from shared.contracts import events as ev
from shared.contracts.messages import submission_message
from shared.kafka.oneshot import publish_events
from shared.operator import DEFAULT_BOOTSTRAP, Bootstrap, console, load_model, run

app = typer.Typer(help="Intake: submit cases as an agency.", no_args_is_help=True)


@app.command("submit")
def submit(file: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Publish a case submission (JSON file, CaseSubmission contract) on intake.submissions.v1."""
    submission = load_model(file, ev.CaseSubmission)
    event = submission_message(submission)
    run(publish_events(bootstrap, [event]))
    console.print(f"submitted [bold]{submission.agency_case_ref}[/bold] as event {event.event_id}")
