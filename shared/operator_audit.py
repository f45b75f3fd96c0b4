"""Audit log of operator commands: who changed which agency, channel or key, when, and how it
ended, on ``operators.audit.v1`` (readable by operators only; kept five years).

A command writes a ``started`` record *before* it changes anything and refuses to act if that
record cannot be written, so no change happens without a trace; then ``succeeded`` or
``failed`` (with the error type, never its message, which might quote input). Records name
targets by id only: no secret and no personal data is ever audited.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import typer
from rich.console import Console

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event
from shared.contracts.messages import OPERATOR_SOURCE
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events

_err = Console(stderr=True)


def operator_name() -> str:
    """``REFEX_OPERATOR`` (a named person on a shared admin account), else the OS user."""
    return os.environ.get("REFEX_OPERATOR") or getpass.getuser()


def audit_record(
    kafka: KafkaConnection,
    audit_id: str,
    command: str,
    target_kind: str,
    target_id: str | None,
    outcome: ev.AuditOutcome,
    error: str | None = None,
) -> ev.OperatorCommandAudited:
    return ev.OperatorCommandAudited(
        audit_id=audit_id,
        command=command,
        target_kind=target_kind,
        target_id=target_id,
        outcome=outcome,
        operator=operator_name(),
        os_user=getpass.getuser(),
        host=socket.gethostname(),
        kafka_principal=kafka.username,
        error=error,
        at=datetime.now(UTC),
    )


def _publish(kafka: KafkaConnection, record: ev.OperatorCommandAudited) -> None:
    event = build_event(
        topic=topics.OPERATORS_AUDIT,
        key=record.target_id or record.target_kind,
        type_=ev.OPERATOR_COMMAND_AUDITED,
        source=OPERATOR_SOURCE,
        subject=record.command,
        data=record,
        correlation_id=record.audit_id,
    )
    asyncio.run(publish_events(kafka, [event]))


@contextmanager
def audited(
    kafka: KafkaConnection, command: str, target_kind: str, target_id: str | None = None
) -> Iterator[None]:
    """Wrap one operator command (synchronous code: it runs its own event loop per record)."""
    audit_id = str(uuid.uuid4())

    def write(outcome: ev.AuditOutcome, error: str | None = None) -> None:
        _publish(
            kafka, audit_record(kafka, audit_id, command, target_kind, target_id, outcome, error)
        )

    try:
        write(ev.AuditOutcome.STARTED)
    except Exception as exc:
        _err.print(
            f"[red]cannot write the audit log ({topics.OPERATORS_AUDIT}):[/red] "
            f"{type(exc).__name__}. Nothing was changed."
        )
        raise typer.Exit(1) from exc
    try:
        yield
    except typer.Exit as exc:
        write(
            ev.AuditOutcome.SUCCEEDED if exc.exit_code == 0 else ev.AuditOutcome.FAILED,
            None if exc.exit_code == 0 else f"exit code {exc.exit_code}",
        )
        raise
    except BaseException as exc:
        write(ev.AuditOutcome.FAILED, type(exc).__name__)
        raise
    write(ev.AuditOutcome.SUCCEEDED)
