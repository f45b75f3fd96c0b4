"""Helpers for the operator CLI's command groups: load a JSON file as a contract, publish it,
print records. Each service's ``cli`` module builds its own commands from these."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from aiokafka import ConsumerRecord
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from pydantic import BaseModel, ValidationError
from rich.console import Console

from shared.kafka.connection import KafkaConnection
from shared.kafka.inbound import describe_error
from shared.secret_files import environ_or_file

M = TypeVar("M", bound=BaseModel)

console = Console()
err_console = Console(stderr=True)

DEFAULT_BOOTSTRAP = "127.0.0.1:19092"

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap",
        envvar="REFEX_KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers (host:port,...).",
    ),
]


def connect(bootstrap: str) -> KafkaConnection:
    """The operator's connection: ``--bootstrap`` plus the SASL principal from
    ``REFEX_KAFKA_USERNAME`` / ``REFEX_KAFKA_PASSWORD`` and the CA the broker's certificate is
    checked against from ``REFEX_KAFKA_CA_FILE`` (TLS; unset: plaintext). The password is read
    from the environment (or the secret file /run/secrets/refex_kafka_password, as compose gives
    it) only, never from the command line, where ``ps`` and shell history would show it."""
    return KafkaConnection(
        bootstrap,
        os.environ.get("REFEX_KAFKA_USERNAME") or None,
        environ_or_file("REFEX_KAFKA_PASSWORD"),
        os.environ.get("REFEX_KAFKA_CA_FILE") or None,
    )


def operator_kafka() -> KafkaConnection:
    """The operator's connection from the environment alone, for commands that work on a
    service's database and only need Kafka for the audit log."""
    return connect(os.environ.get("REFEX_KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a command's coroutine; an unreachable broker, a refused login or a denied operation
    is a one-line error and exit code 1."""
    try:
        return asyncio.run(coro)
    except KafkaConnectionError as exc:
        err_console.print(
            f"[red]cannot reach Kafka or log in:[/red] {exc}. Is it running (make run)? "
            "Check --bootstrap / REFEX_KAFKA_BOOTSTRAP_SERVERS, the broker's CA in "
            "REFEX_KAFKA_CA_FILE and the credentials in REFEX_KAFKA_USERNAME / "
            "REFEX_KAFKA_PASSWORD."
        )
        raise typer.Exit(1) from exc
    except (
        TopicAuthorizationFailedError,
        GroupAuthorizationFailedError,
        ClusterAuthorizationFailedError,
    ) as exc:
        user = os.environ.get("REFEX_KAFKA_USERNAME") or "(anonymous)"
        err_console.print(
            f"[red]Kafka refused the operation for user {user}:[/red] {type(exc).__name__}. "
            "Its ACLs do not allow it."
        )
        raise typer.Exit(1) from exc


def load_model(path: Path, model: type[M]) -> M:
    """Read and validate a JSON file; on failure print each bad field and exit with code 2."""
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        err_console.print(f"[red]cannot read {path}:[/red] {exc}")
        raise typer.Exit(2) from exc
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        err_console.print(f"[red]{path} is not a valid {model.__name__}:[/red]")
        for line in describe_error(exc).split("; "):
            err_console.print(f"  - {line}")
        raise typer.Exit(2) from exc


def print_record(record: ConsumerRecord[bytes, bytes]) -> None:
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
    try:
        body: Any = json.loads(record.value or b"null")
    except json.JSONDecodeError:
        body = (record.value or b"").decode("utf-8", "replace")
    console.print_json(
        json.dumps(
            {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "key": (record.key or b"").decode("utf-8", "replace"),
                "type": headers.get("ce_type"),
                "id": headers.get("ce_id"),
                "correlationid": headers.get("ce_correlationid"),
                "data": body,
            }
        )
    )
