"""``refex platform …``: what operators own: topics, Kafka principals and ACLs, the agency
registry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.messages import agency_message
from shared.contracts.topics import Owner
from shared.kafka.admin import (
    TopicCreationError,
    ensure_agency_topics,
    ensure_topics,
    visible_topics,
    wait_for_group_coordinators,
    wait_until_in_sync,
)
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import follow, publish_events, publish_tombstone
from shared.operator import (
    DEFAULT_BOOTSTRAP,
    Bootstrap,
    connect,
    console,
    err_console,
    load_model,
    run,
)
from shared.operator_audit import audited
from shared.secret_files import environ_or_file
from shared.secret_policy import weakness

from . import dead_letter_replay as dlq
from . import kafka_access, platform_status
from .access_policy import (
    SERVICES,
    InvalidMemberName,
    agency_member_of,
    agency_member_rules,
    agency_member_user,
    agency_rules,
    agency_user,
    evidence_reader_rules,
    registered_principal_rules,
    service_rules,
    service_user,
)
from .contract_docs import write_contract_docs

app = typer.Typer(
    help="Platform: topics, Kafka credentials and ACLs, the agency registry.", no_args_is_help=True
)

CredentialsFile = Annotated[
    Path | None,
    typer.Option(
        "--credentials-file",
        help="Write the agency's new Kafka credentials to this file (mode 0600, "
        "REFEX_KAFKA_USERNAME / REFEX_KAFKA_PASSWORD lines) instead of printing them.",
    ),
]

AgencyOption = Annotated[str, typer.Option("--agency", help="The agency's id.")]
UserOption = Annotated[
    str, typer.Option("--user", help="The member's user name: 1 to 32 of a-z 0-9 -.")
]
PasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="Take the member's password from this file (its first line) instead of "
        "generating one; nothing is printed then.",
    ),
]


@contextmanager
def _access_change(action: str) -> Iterator[None]:
    """A credential or ACL change the broker refuses is a one-line error and exit code 1."""
    try:
        yield
    except kafka_access.AccessError as exc:
        err_console.print(f"[red]{action} failed:[/red] {exc}")
        raise typer.Exit(1) from exc


def service_password_variable(service: Owner) -> str:
    return f"{service.value.upper()}_KAFKA_PASSWORD"


@app.command("create-topics")
def create_topics(bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Create every topic of the catalogue that does not exist yet; set an existing topic's
    size limit and segment age back to the catalogue's if they differ, the registered
    agencies' topics included (so that what the catalogue changed reaches them)."""
    kafka = connect(bootstrap)
    try:
        existing = run(visible_topics(kafka))
        agencies = [topics.spec(n) for n in sorted(existing) if topics.family_of(n) is not None]
        results = run(ensure_topics(kafka, [*topics.CATALOGUE, *agencies]))
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
            result.state,
        )
    console.print(table)


@app.command("grant-services")
def grant_services(bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Create or update each service's Kafka principal, with the password from
    ``<SERVICE>_KAFKA_PASSWORD`` (the variable the service itself reads), and its ACLs on the
    catalogue's fixed topics and on its consumer group; grant again every registered agency's
    and member's rules (the services' on the agency's topics included), so that what the
    policy gained reaches those registered before. Idempotent."""
    access = kafka_access.KafkaAccess(connect(bootstrap))
    # From the environment, or from compose's secret files (/run/secrets/intake_kafka_password…).
    passwords = {s: environ_or_file(service_password_variable(s)) or "" for s in SERVICES}
    missing = [service_password_variable(s) for s, pw in passwords.items() if not pw]
    if missing:
        err_console.print(f"[red]not set:[/red] {', '.join(missing)}")
        raise typer.Exit(2)
    table = Table("principal", "ACLs")
    with audited(connect(bootstrap), "platform grant-services", "service_principals"):
        for service, password in passwords.items():
            user = service_user(service)
            rules = service_rules(service)
            with _access_change(f"granting {user}"):
                access.set_password(user, password)
                access.grant(rules)
            table.add_row(f"User:{user}", str(len(rules)))
        # The agencies registered before this version of the policy get what it added since
        # (e.g. intake's DELETE on their submissions, their READ on intake.keys.v1).
        with _access_change("granting the registered agencies' rules"):
            registered = registered_principal_rules(access.scram_users())
            access.grant(registered)
        table.add_row("registered agencies and their members", str(len(registered)))
    console.print(table)


@app.command("provision")
def provision(bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """create-topics, then grant-services: what a new or upgraded deployment needs before the
    services start (compose's platform-init, deploy/local/up.sh). Idempotent. Returns once the
    services' consumer groups have a coordinator, so they start without retrying."""
    create_topics(bootstrap)
    grant_services(bootstrap)
    try:
        run(wait_for_group_coordinators(connect(bootstrap), [s.value for s in SERVICES]))
    except TopicCreationError as exc:
        err_console.print(f"[red]the broker is not ready for consumers:[/red] {exc}")
        raise typer.Exit(1) from exc


def _hand_over(user: str, password: str, credentials_file: Path | None) -> None:
    """Give an agency its new credentials: once, to the operator, never to a log."""
    if credentials_file is None:
        console.print(
            f"Kafka credentials (give them to the agency; they are not shown again):\n"
            f"  username: {user}\n  password: {password}",
            highlight=False,
        )
        return
    credentials_file.touch(mode=0o600, exist_ok=True)
    credentials_file.chmod(0o600)
    credentials_file.write_text(f"REFEX_KAFKA_USERNAME={user}\nREFEX_KAFKA_PASSWORD={password}\n")
    console.print(f"Kafka credentials of {user} written to {credentials_file}")


def _set_new_password(
    kafka: KafkaConnection,
    access: kafka_access.KafkaAccess,
    user: str,
    credentials_file: Path | None,
) -> None:
    password = kafka_access.new_password()
    with _access_change(f"setting the password of {user}"):
        access.set_password(user, password)
    _hand_over(user, password, credentials_file)
    # Handed over first: were the wait to fail, the password would still not be lost. Once it
    # returns, the agency's first login with it works.
    run(kafka_access.wait_until_login_works(kafka.as_user(user, password)))


@app.command("register-agency")
def register_agency(
    file: Path,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    credentials_file: CredentialsFile = None,
) -> None:
    """Register an agency (JSON file, AgencyRecord contract): create its topics, its Kafka
    principal ``agency.<id>`` (a new one gets a generated password, shown once) and the ACLs
    that let it write only its own inbound topics and read only its inbox, then publish it on
    directory.agencies.v1. Re-registering updates the record and keeps the password."""
    agency = load_model(file, ev.AgencyRecord)
    kafka = connect(bootstrap)
    access = kafka_access.KafkaAccess(kafka)
    user = agency_user(agency.agency_id)
    with audited(kafka, "platform register-agency", "agency", agency.agency_id):
        run(ensure_agency_topics(kafka, agency.agency_id))
        if not access.has_credential(user):
            _set_new_password(kafka, access, user, credentials_file)
        with _access_change(f"granting {user}"):
            access.grant(agency_rules(agency.agency_id))
        run(publish_events(kafka, [agency_message(agency)]))
    inbox = topics.agency_inbox(agency.agency_id)
    console.print(f"registered [bold]{agency.agency_id}[/bold]; inbox topic {inbox}")


@app.command("rotate-agency-password")
def rotate_agency_password(
    agency_id: str,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    credentials_file: CredentialsFile = None,
) -> None:
    """Give an agency a new Kafka password (e.g. after a suspected leak). New connections need
    it at once; ACLs are unchanged."""
    kafka = connect(bootstrap)
    access = kafka_access.KafkaAccess(kafka)
    user = agency_user(agency_id)
    if not access.has_credential(user):
        err_console.print(f"[red]{user} has no credentials:[/red] register the agency first")
        raise typer.Exit(1)
    with audited(kafka, "platform rotate-agency-password", "agency", agency_id):
        _set_new_password(kafka, access, user, credentials_file)


@app.command("deregister-agency")
def deregister_agency(agency_id: str, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Remove an agency: its members are removed (add-agency-user), its ACLs and those of the
    services on its topics go at once (every further request is refused), its credential is
    deleted, and a tombstone on directory.agencies.v1 tells the services. Its topics stay until
    their retention ends."""
    kafka = connect(bootstrap)
    access = kafka_access.KafkaAccess(kafka)
    user = agency_user(agency_id)
    with audited(kafka, "platform deregister-agency", "agency", agency_id):
        for name in _members_of(access, agency_id):
            member = agency_member_user(agency_id, name)
            with _access_change(f"removing {member}"):
                run(kafka_access.remove_principal(access, kafka, member))
            console.print(f"removed user {member}")
        with _access_change(f"revoking {user}"):
            access.revoke_user(user)
            access.revoke_rules(agency_rules(agency_id))
            if access.has_credential(user):
                access.delete_credential(user)
        run(publish_tombstone(kafka, topics.DIRECTORY_AGENCIES, agency_id))
    console.print(f"deregistered [bold]{agency_id}[/bold]")


@contextmanager
def _names_checked() -> Iterator[None]:
    """An agency id or user name that cannot name a member is refused (exit code 2), before
    anything is changed."""
    try:
        yield
    except InvalidMemberName as exc:
        err_console.print(f"[red]refused:[/red] {exc}")
        raise typer.Exit(2) from exc


def _member_principal(agency_id: str, user: str) -> str:
    with _names_checked():
        return agency_member_user(agency_id, user)


def _chosen_password(password_file: Path) -> str:
    try:
        lines = password_file.read_text().splitlines()
    except OSError as exc:
        err_console.print(f"[red]cannot read {password_file}:[/red] {exc.strerror}")
        raise typer.Exit(2) from exc
    password = lines[0] if lines else ""
    problem = weakness(password)
    if problem:
        err_console.print(f"[red]refused:[/red] the password in {password_file} {problem}")
        raise typer.Exit(2)
    return password


def _members_of(access: kafka_access.KafkaAccess, agency_id: str) -> list[str]:
    with _access_change("listing credentials"):
        principals = access.scram_users()
    with _names_checked():
        return [u for p in principals if (u := agency_member_of(agency_id, p)) is not None]


@app.command("add-agency-user")
def add_agency_user(
    agency: AgencyOption,
    user: UserOption,
    password_file: PasswordFile = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """Give one person (or machine) of a registered agency its own Kafka principal
    ``agency.<agency>.<user>`` with the agency's own rights, so nobody shares a password: a new
    password is shown once, unless --password-file gives one. Adding an existing user again
    gives it a new password (rotation): its old one is refused for every new login."""
    member = _member_principal(agency, user)
    password = _chosen_password(password_file) if password_file else None
    kafka = connect(bootstrap)
    access = kafka_access.KafkaAccess(kafka)
    if not access.has_credential(agency_user(agency)):
        err_console.print(f"[red]{agency} is not registered:[/red] register the agency first")
        raise typer.Exit(1)
    with audited(kafka, "platform add-agency-user", "agency_user", member):
        member_password = password or kafka_access.new_password()
        with _access_change(f"granting {member}"):
            kafka_access.grant_agency_member(access, agency, user, member_password)
        if password is None:
            _hand_over(member, member_password, None)
        else:
            console.print(f"{member} logs in with the password of {password_file}")
        # Once this returns, the member's first login works (the gateway's included).
        run(kafka_access.wait_until_login_works(kafka.as_user(member, member_password)))


@app.command("remove-agency-user")
def remove_agency_user(
    agency: AgencyOption, user: UserOption, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP
) -> None:
    """Take a member's access away: its ACLs first (even an open connection's next request is
    refused), then its credential (no new login). Returns once the broker refuses both."""
    member = _member_principal(agency, user)
    kafka = connect(bootstrap)
    access = kafka_access.KafkaAccess(kafka)
    with _access_change(f"looking up {member}"):
        exists = access.has_credential(member) or bool(access.acls_of(member))
    if not exists:
        err_console.print(f"[red]no such user:[/red] {member} has no credential and no ACL")
        raise typer.Exit(1)
    with (
        audited(kafka, "platform remove-agency-user", "agency_user", member),
        _access_change(f"removing {member}"),
    ):
        run(kafka_access.remove_principal(access, kafka, member))
    console.print(f"removed [bold]{member}[/bold]: the broker refuses its login and requests")


@app.command("list-agency-users")
def list_agency_users(agency: AgencyOption, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """List an agency's members and whether each has exactly the agency's own rights."""
    access = kafka_access.KafkaAccess(connect(bootstrap))
    table = Table("user", "principal", "ACLs")
    for user in _members_of(access, agency):
        member = agency_member_user(agency, user)
        with _access_change(f"listing ACLs of {member}"):
            granted = access.acls_of(member)
        expected = agency_member_rules(agency, user)
        table.add_row(user, f"User:{member}", "as the agency" if granted == expected else "differ")
    console.print(table)


def _evidence_reading(agency_id: str, bootstrap: str, grant: bool) -> None:
    """Add or take back an agency's READ on evidence.aggregates.v1, audited."""
    kafka = connect(bootstrap)
    access = kafka_access.KafkaAccess(kafka)
    user = agency_user(agency_id)
    if grant and not access.has_credential(user):
        err_console.print(f"[red]{user} has no credentials:[/red] register the agency first")
        raise typer.Exit(1)
    command = "grant-evidence" if grant else "revoke-evidence"
    with (
        audited(kafka, f"platform {command}", "agency", agency_id),
        _access_change(f"{command} for {user}"),
    ):
        if grant:
            access.grant(evidence_reader_rules(agency_id))
        else:
            access.revoke_rules(evidence_reader_rules(agency_id))
    may = "may" if grant else "may no longer"
    console.print(f"{agency_id} {may} read {topics.EVIDENCE_AGGREGATES}")


@app.command("grant-evidence")
def grant_evidence(agency_id: str, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Let a registered agency (a government or UN agency, a programme manager) read the
    evidence aggregates on evidence.aggregates.v1: pseudonymous tables, small cells
    suppressed (decision 22). Nobody reads them without this grant."""
    _evidence_reading(agency_id, bootstrap, grant=True)


@app.command("revoke-evidence")
def revoke_evidence(agency_id: str, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> None:
    """Take back an agency's reading of evidence.aggregates.v1 (its other rights stay)."""
    _evidence_reading(agency_id, bootstrap, grant=False)


@app.command("acls")
def show_acls(
    user: Annotated[str | None, typer.Option(help="Only this principal (e.g. intake).")] = None,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """List the ACLs on the broker."""
    with _access_change("listing ACLs"):
        rules = kafka_access.KafkaAccess(connect(bootstrap)).acls_of(user)
    table = Table("principal", "operation", "resource", "name", "pattern")
    for rule in rules:
        table.add_row(rule.principal, rule.operation, rule.resource, rule.name, rule.pattern)
    console.print(table)


@app.command("audit-log")
def audit_log(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    target: Annotated[str | None, typer.Option(help="Only records about this target id.")] = None,
) -> None:
    """Show the audit log of operator commands (operators.audit.v1), oldest first."""

    async def _read() -> list[ev.OperatorCommandAudited]:
        found = []
        async for record in follow(connect(bootstrap), topics.OPERATORS_AUDIT, idle_timeout_s=2.0):
            entry = ev.OperatorCommandAudited.model_validate_json(record.value or b"{}")
            if target is None or entry.target_id == target:
                found.append(entry)
        return found

    table = Table("at (UTC)", "operator", "command", "target", "outcome", "principal", "host")
    for e in run(_read()):
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.operator,
            e.command,
            f"{e.target_kind} {e.target_id or ''}".strip(),
            e.outcome.value + (f" ({e.error})" if e.error else ""),
            e.kafka_principal or "-",
            e.host,
        )
    console.print(table)


@app.command("replay-dead-letters")
def replay_dead_letters(
    service: dlq.Service,
    from_offset: dlq.FromOffset = None,
    since: dlq.Since = None,
    original_topic: dlq.OriginalTopic = None,
    dry_run: dlq.DryRun = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """After a fix: send a service's dead letters (<service>.dlq.v1) back to their original
    topics, byte for byte (same ce_id: the service's inbox skips what was applied already).
    Refuses, sending nothing, if a selected dead letter lacks part of its original record."""
    dlq.replay_command(
        connect(bootstrap),
        service,
        from_offset=from_offset,
        since=since,
        original_topic=original_topic,
        dry_run=dry_run,
    )


@app.command("status")
def status(
    service_url: Annotated[
        list[str] | None,
        typer.Option(
            "--service-url",
            help="SERVICE=URL of a service's HTTP endpoints (repeatable); defaults: "
            f"{platform_status.URLS_VARIABLE}, else make run's ports.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """The platform at a glance: per service its lag, outbox backlog and dead letters, per
    agency a disabled webhook endpoint, deliveries given up and referrals past their deadline.
    Exit code 1 when something needs attention (listed last), so a script can page on it."""
    try:
        urls = platform_status.service_urls(service_url or [])
    except ValueError as exc:
        err_console.print(f"[red]--service-url / {platform_status.URLS_VARIABLE}:[/red] {exc}")
        raise typer.Exit(2) from exc
    report = run(platform_status.gather(connect(bootstrap), urls))
    if as_json:
        console.print_json(data=report.as_json())
    else:
        platform_status.render(report, console)
    if platform_status.problems(report):
        raise typer.Exit(1)


@app.command("replicas")
def replicas(
    wait: Annotated[
        float,
        typer.Option(
            help="Seconds to wait until every partition is in sync (0: report once). A rolling "
            "restart of the brokers runs this between two nodes."
        ),
    ] = 0.0,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
) -> None:
    """The partitions a replica short (a node down or catching up). Exit code 0 when every
    partition has all its replicas in sync, 1 otherwise: restarting another node then could
    leave a partition below min.insync.replicas, and its writes would stop."""
    short = run(wait_until_in_sync(connect(bootstrap), timeout_s=wait))
    if not short:
        console.print("every partition has all its replicas in sync")
        return
    table = Table("topic", "partition", "replicas", "in sync", title="Partitions a replica short")
    for u in short:
        table.add_row(
            u.topic,
            str(u.partition),
            ",".join(map(str, u.replicas)),
            ",".join(map(str, u.in_sync)) or "-",
        )
    console.print(table)
    raise typer.Exit(1)


REPO_ROOT = Path(__file__).resolve().parents[1]


@app.command("export-contracts")
def export_contracts(
    root: Annotated[
        Path, typer.Option(help="Repository root; files go to docs/schemas, asyncapi, openapi.")
    ] = REPO_ROOT,
) -> None:
    """Write the payload JSON Schemas, the AsyncAPI documents and the gateway's OpenAPI."""
    for path in write_contract_docs(root):
        console.print(f"wrote {path.relative_to(root)}", soft_wrap=True, highlight=False)
