"""``refex intake …``: act as a partner agency towards intake."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from shared.contracts import events as ev
from shared.contracts.messages import submission_message
from shared.db import connected
from shared.kafka.inbound import describe_error
from shared.kafka.oneshot import publish_events
from shared.keys import decode_key, key_from_environment
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

from .crypto import secret_key_id
from .handlers import SOURCE
from .identity import identity_hashes
from .key_rotation import UnknownMasterKey, rewrap_data_keys
from .settings import IntakeSettings
from .store import IntakeStore

app = typer.Typer(
    help="Intake: submit cases as an agency; inspect a case; rotate the master and duplicate "
    "keys; show the submission public keys.",
    no_args_is_help=True,
)


@app.command("submit")
def submit(file: Path, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Publish a case submission (JSON file, CaseSubmission contract) on intake.submissions.v1."""
    submission = load_model(file, ev.CaseSubmission)
    event = submission_message(submission)
    run(publish_events(connect(bootstrap), [event]))
    console.print(f"submitted [bold]{submission.agency_case_ref}[/bold] as event {event.event_id}")


def _settings() -> IntakeSettings:
    try:
        return IntakeSettings()  # the service's own environment: INTAKE_DATABASE_URL, keys
    except ValidationError as exc:
        err_console.print(f"[red]intake settings incomplete:[/red] {describe_error(exc)}")
        raise typer.Exit(2) from exc


@app.command("public-key")
def public_key() -> None:
    """Print intake's submission public keys (issue 22): the current one, for which agencies
    seal a submission's personal block, and the previous ones still opened. The same records
    are on intake.keys.v1, which every agency reads with its own credentials; this is for an
    operator who hands the key over another way. Runs beside the service, with its
    environment (INTAKE_SUBMISSION_KEY); prints public keys only."""
    published = _settings().submission_keys().published()
    if not published:
        err_console.print(
            "[red]INTAKE_SUBMISSION_KEY is not set:[/red] intake opens no sealed block"
        )
        raise typer.Exit(1)
    for key in published:  # one line each, not a table: nothing folded when copied
        console.print(
            f"{key.status.value} public_key={key.public_key} key_sha256={key.key_sha256}",
            highlight=False,
            soft_wrap=True,
        )


@app.command("case-history")
def case_history(case_id: str) -> None:
    """Show a case's pseudonymous history, consent versions and disclosure log (no personal
    data is decrypted). Runs beside the service, with its environment."""

    async def _show() -> None:
        async with open_unit(connected(_settings().database_dsn), IntakeStore, SOURCE) as unit:
            history, consents, disclosures = await unit.stores.case_record(case_id)
        if not history:
            err_console.print(f"[red]no case {case_id}[/red]")
            raise typer.Exit(1)
        _table("history", ["at", "action", "agency", "event", "details"], history)
        _table("consent versions", ["version", "kind", "recorded", "purposes"], consents)
        _table(
            "disclosure log",
            [
                "at",
                "kind",
                "referral / handover",
                "recipient",
                "outcome",
                "reason",
                "consent version",
            ],
            disclosures,
        )

    try:
        uuid.UUID(case_id)
    except ValueError as exc:
        err_console.print("[red]a case id is a UUID[/red]")
        raise typer.Exit(2) from exc
    run(_show())


def _table(title: str, columns: list[str], rows: list[Any]) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)


@app.command("rotate-duplicate-key")
def rotate_duplicate_key(
    batch: Annotated[int, typer.Option(help="Cases re-hashed per transaction.")] = 200,
) -> None:
    """Re-hash every case's identity under the *configured* duplicate key
    (INTAKE_DUPLICATE_KEY / INTAKE_DUPLICATE_KEY_ID), then drop the hashes of other keys.

    Rotation: give intake the new key and a new key id, restart it, then run this command."""
    settings = _settings()
    master = decode_key(settings.master_key)
    key, key_id = decode_key(settings.duplicate_key), settings.duplicate_key_id

    async def _rotate() -> tuple[int, int]:
        dsn = settings.database_dsn
        async with open_unit(connected(dsn), IntakeStore, SOURCE) as unit:
            ids = await unit.stores.unerased_case_ids()
        rehashed = 0
        for start in range(0, len(ids), batch):  # one transaction per batch of cases
            async with open_unit(connected(dsn), IntakeStore, SOURCE) as unit:
                for case_id in ids[start : start + batch]:
                    personal = await unit.stores.read_personal(case_id, master)
                    hashes = identity_hashes(key, personal)
                    await unit.stores.replace_identity_hashes(case_id, key_id, hashes)
                    rehashed += 1
        async with open_unit(connected(dsn), IntakeStore, SOURCE) as unit:
            dropped = await unit.stores.drop_identity_hashes_except(key_id)
        return rehashed, dropped

    with audited(operator_kafka(), "intake rotate-duplicate-key", "key", key_id):
        rehashed, dropped = run(_rotate())
    console.print(
        f"re-hashed {rehashed} cases under key [bold]{key_id}[/bold]; "
        f"dropped {dropped} hashes of other keys"
    )


def _old_key(variable: str) -> bytes:
    try:
        return key_from_environment(variable)
    except ValueError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command("rotate-master-key")
def rotate_master_key(
    old_key_env: Annotated[
        list[str],
        typer.Option(help="Name of an environment variable holding a previous master key."),
    ],
) -> None:
    """Re-wrap every case's data key under the *configured* master key (INTAKE_MASTER_KEY).

    Rotation: keep the old key in another variable (e.g. INTAKE_OLD_MASTER_KEY), set the new
    INTAKE_MASTER_KEY, stop intake, run this command with --old-key-env INTAKE_OLD_MASTER_KEY,
    start intake. Idempotent; the personal data ciphertext itself is not rewritten."""
    settings = _settings()
    current = decode_key(settings.master_key)
    old_keys = [_old_key(variable) for variable in old_key_env]
    key_id = secret_key_id(current)

    async def _rotate() -> tuple[int, int]:
        dsn = settings.database_dsn
        result = await rewrap_data_keys(lambda: connected(dsn), current, old_keys)
        return result.rewrapped, result.already_current

    with audited(operator_kafka(), "intake rotate-master-key", "key", key_id):
        try:
            rewrapped, current_count = run(_rotate())
        except UnknownMasterKey as exc:
            err_console.print(
                f"[red]{exc} opens with none of the given keys[/red]; nothing after it "
                "was changed. Give every old key with --old-key-env."
            )
            raise typer.Exit(1) from exc
    console.print(
        f"re-wrapped {rewrapped} data keys under master key {key_id}; "
        f"{current_count} were already under it"
    )
