"""``refex evidence add-user | disable-user | enable-user | set-password | list-users``: the
dashboard's accounts, in the evidence database, each change audited on operators.audit.v1 (by
account id: the audit names no person). Run beside the evidence service (its
EVIDENCE_DATABASE_URL), with the operator's Kafka credentials for the audit log.

A password is typed at a hidden prompt, or read from an environment variable named with
``--password-env`` (scripts): never from the command line, where ``ps`` and shell history would
keep it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from shared.db import connected
from shared.kafka.inbound import describe_error
from shared.operator import console, err_console, operator_kafka, run
from shared.operator_audit import audited
from shared.unit import Unit, open_unit

from ..settings import EvidenceSettings
from .account_store import Account, AccountStore, Role, normal_username
from .passwords import hash_password, password_problem

TARGET_KIND = "dashboard_account"
_USERNAME_SHAPE = "3 to 64 characters: letters, digits, '.', '-', '_' or '@'"

PasswordEnv = Annotated[
    str | None,
    typer.Option(
        "--password-env",
        metavar="VAR",
        help="Read the password from this environment variable (else a hidden prompt).",
    ),
]


def _database_dsn() -> str:
    try:
        return EvidenceSettings().database_dsn
    except ValidationError as exc:  # hide_input_in_errors: the message never holds a value
        err_console.print(f"[red]evidence settings incomplete:[/red] {describe_error(exc)}")
        raise typer.Exit(2) from exc


def register(app: typer.Typer, source: str) -> None:
    """Add the account commands to the evidence command group (``source``: the service's
    CloudEvents source, for the unit of work)."""

    def units() -> AbstractAsyncContextManager[Unit[AccountStore]]:
        return open_unit(connected(_database_dsn()), AccountStore, source)

    @app.command("add-user")
    def add_user(
        username: str,
        role: Annotated[Role, typer.Option(help="operator: every page; viewer: the figures.")],
        country: Annotated[
            str | None,
            typer.Option(help="A viewer's scope (ISO 3166-1 alpha-2): it sees this country only."),
        ] = None,
        password_env: PasswordEnv = None,
    ) -> None:
        """Add a dashboard account."""
        name = _checked_username(username)
        scope = _checked_country(country, role)
        password_hash = hash_password(_new_password(password_env))
        account_id = str(uuid.uuid4())

        async def _add() -> bool:
            async with units() as unit:
                return await unit.stores.add(account_id, name, password_hash, role, scope)

        with audited(operator_kafka(), "evidence add-user", TARGET_KIND, account_id):
            if not run(_add()):
                err_console.print(f"[red]an account named {name} exists already[/red]")
                raise typer.Exit(1)
        where = f", country {scope}" if scope else ""
        console.print(f"dashboard account {name} ({role.value}{where}) added: {account_id}")

    def _set_disabled(username: str, disabled: bool, command: str) -> None:
        account = _existing(units, username)

        async def _change() -> Account | None:
            async with units() as unit:
                return await unit.stores.set_disabled(username, disabled, datetime.now(UTC))

        with audited(operator_kafka(), command, TARGET_KIND, account.account_id):
            run(_change())
        state = "disabled; its sessions ended" if disabled else "enabled again"
        console.print(f"dashboard account {account.username} {state}")

    @app.command("disable-user")
    def disable_user(username: str) -> None:
        """Disable a dashboard account: it can no longer log in, and its open sessions end at
        their next click."""
        _set_disabled(username, True, "evidence disable-user")

    @app.command("enable-user")
    def enable_user(username: str) -> None:
        """Enable a disabled dashboard account again (it logs in anew)."""
        _set_disabled(username, False, "evidence enable-user")

    @app.command("set-password")
    def set_password(username: str, password_env: PasswordEnv = None) -> None:
        """Give a dashboard account a new password; its open sessions end."""
        account = _existing(units, username)
        password_hash = hash_password(_new_password(password_env))

        async def _change() -> bool:
            async with units() as unit:
                return await unit.stores.set_password(username, password_hash, datetime.now(UTC))

        with audited(operator_kafka(), "evidence set-password", TARGET_KIND, account.account_id):
            run(_change())
        console.print(f"new password of dashboard account {account.username} set")

    @app.command("list-users")
    def list_users() -> None:
        """The dashboard accounts: name, role, scope, state, last login."""

        async def _all() -> list[Account]:
            async with units() as unit:
                return await unit.stores.all()

        table = Table("account", "role", "country", "state", "last login (UTC)", "id")
        for a in run(_all()):
            table.add_row(
                a.username,
                a.role.value,
                a.country or "all",
                "active" if a.active else "disabled",
                a.last_login_at.isoformat(timespec="seconds") if a.last_login_at else "never",
                a.account_id,
            )
        console.print(table)


def _checked_username(username: str) -> str:
    name = normal_username(username)
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-_@")
    if not 3 <= len(name) <= 64 or not set(name) <= allowed:
        err_console.print(f"[red]account name refused:[/red] {_USERNAME_SHAPE}")
        raise typer.Exit(2)
    return name


def _checked_country(country: str | None, role: Role) -> str | None:
    if country is None:
        return None
    if role is not Role.VIEWER:
        err_console.print("[red]only a viewer has a country scope[/red] (operators see all)")
        raise typer.Exit(2)
    code = country.strip().upper()
    if len(code) != 2 or not code.isalpha() or not code.isascii():
        err_console.print("[red]--country: an ISO 3166-1 alpha-2 code, e.g. SN[/red]")
        raise typer.Exit(2)
    return code


def _new_password(password_env: str | None) -> str:
    if password_env is not None:
        password = os.environ.get(password_env, "")
        if not password:
            err_console.print(f"[red]{password_env} is not set[/red]")
            raise typer.Exit(2)
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem:
        err_console.print(f"[red]password refused:[/red] {problem}")
        raise typer.Exit(2)
    return password


def _existing(
    units: Callable[[], AbstractAsyncContextManager[Unit[AccountStore]]], username: str
) -> Account:
    async def _find() -> Account | None:
        async with units() as unit:
            return await unit.stores.by_username(username)

    account: Account | None = run(_find())
    if account is None:
        err_console.print(f"[red]no dashboard account named {normal_username(username)}[/red]")
        raise typer.Exit(1)
    return account
