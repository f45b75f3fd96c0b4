"""Members of an agency (``refex platform add-agency-user``, decision 24) on the real broker: each
has the agency's own rights under its own principal, and loses them, and its login, the moment
``remove-agency-user`` returns. Denials are the broker's own answers, each with a positive
control through the same client (tests/acl_checks.py)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed, TopicAuthorizationFailedError
from typer.testing import CliRunner, Result

from ops import kafka_access
from ops.access_policy import agency_member_user
from ops.cli import app
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from tests import factories as f
from tests.acl_checks import can_read, check_writes, end_offsets, read_range
from tests.e2e.kafka_helpers import read_everything, register_agency_access

runner = CliRunner()
INBOUND = (topics.AGENCY_SUBMISSIONS, topics.AGENCY_LISTINGS, topics.AGENCY_RESPONSES)


def platform(kafka: KafkaConnection, *args: str) -> Result:
    return runner.invoke(app, ["platform", *args, "--bootstrap", kafka.bootstrap_servers])


def said(result: Result) -> str:
    """The command's output as one line: the console wraps long lines where it likes."""
    return " ".join(result.output.split())


def add_user(kafka: KafkaConnection, agency_id: str, user: str) -> KafkaConnection:
    """The member's own connection, with the password the command showed once."""
    result = platform(kafka, "add-agency-user", "--agency", agency_id, "--user", user)
    assert result.exit_code == 0, result.output
    password = re.search(r"password: (\S+)", result.output)
    assert password, result.output
    return kafka.as_user(agency_member_user(agency_id, user), password.group(1))


async def login_refused(connection: KafkaConnection) -> bool:
    """One bare SASL login on the first broker: True when the broker refuses the credential,
    False when it logs in (anything else, an unreachable broker, fails the test)."""
    settings = connection.client_kwargs()
    del settings["bootstrap_servers"]
    host, _, port = connection.servers[0].rpartition(":")
    try:
        conn = await create_conn(host, int(port), **settings)
    except SaslAuthenticationFailed:
        return True
    conn.close()
    return False


def audit_of(kafka: KafkaConnection, target_id: str) -> list[tuple[str, str]]:
    records = asyncio.run(read_everything(kafka, [topics.OPERATORS_AUDIT]))
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    entries = [json.loads(r.value or b"{}") for r in ordered if r.key == target_id.encode()]
    return [(e["command"], e["outcome"]) for e in entries]


@pytest.fixture
def agency_a(kafka: KafkaConnection) -> str:
    agency = f.unique("ngo")
    asyncio.run(register_agency_access(kafka, agency))
    return agency


@pytest.fixture
def agency_b(kafka: KafkaConnection) -> str:
    agency = f.unique("gov")
    asyncio.run(register_agency_access(kafka, agency))
    return agency


def test_a_member_acts_as_its_agency_and_only_as_it(
    kafka: KafkaConnection, agency_a: str, agency_b: str
) -> None:
    # No wait here: add-agency-user returns once the new login works.
    amina = add_user(kafka, agency_a, "amina")

    async def check() -> None:
        await check_writes(
            amina,
            kafka,
            allowed=[x.name(agency_a) for x in INBOUND],
            denied=[x.name(agency_b) for x in INBOUND] + [topics.agency_inbox(agency_a)],
        )
        inbox = topics.agency_inbox(agency_a)
        assert await can_read(amina, inbox, kafka, group=f"agency.{agency_a}.console")
        assert not await can_read(amina, topics.agency_inbox(agency_b), kafka)
        assert not await can_read(amina, inbox, kafka, group=f"agency.{agency_b}.console")
        assert not await can_read(amina, topics.INTAKE_CASES, kafka)

    asyncio.run(check())


def test_a_removed_member_is_refused_at_once(kafka: KafkaConnection, agency_a: str) -> None:
    amina = add_user(kafka, agency_a, "amina")
    moussa = add_user(kafka, agency_a, "moussa")
    member = agency_member_user(agency_a, "amina")
    submissions = topics.AGENCY_SUBMISSIONS.name(agency_a)

    async def remove_while_connected() -> None:
        live = AIOKafkaProducer(**amina.client_kwargs(), acks="all", request_timeout_ms=5000)
        await live.start()
        try:
            meta = await live.send_and_wait(submissions, b"{}", key=b"k")  # the positive control
            tp = TopicPartition(submissions, meta.partition)
            assert await read_range(kafka, {tp: meta.offset}, {tp: meta.offset + 1}) == [b"{}"]
            result = await asyncio.to_thread(
                platform, kafka, "remove-agency-user", "--agency", agency_a, "--user", "amina"
            )
            assert result.exit_code == 0, result.output
            # No sleep: the command returned once the broker refuses both.
            assert await login_refused(amina), "a new login is refused"
            before = await end_offsets(kafka, submissions)
            with pytest.raises(TopicAuthorizationFailedError):
                await asyncio.wait_for(live.send_and_wait(submissions, b"late", key=b"k"), 15)
        finally:
            await live.stop()
        after = await end_offsets(kafka, submissions)
        assert b"late" not in await read_range(kafka, before, after)
        # the other member of the same agency keeps every right
        await check_writes(moussa, kafka, allowed=[submissions], denied=[])

    asyncio.run(remove_while_connected())
    assert audit_of(kafka, member) == [
        ("platform add-agency-user", "started"),
        ("platform add-agency-user", "succeeded"),
        ("platform remove-agency-user", "started"),
        ("platform remove-agency-user", "succeeded"),
    ]
    listed = platform(kafka, "list-agency-users", "--agency", agency_a)
    assert listed.exit_code == 0, listed.output
    assert "moussa" in listed.output and "amina" not in listed.output
    assert "as the agency" in listed.output

    again = platform(kafka, "remove-agency-user", "--agency", agency_a, "--user", "amina")
    assert again.exit_code == 1 and "no such user" in said(again)


@pytest.mark.parametrize("user", ["Amina", "amina.sow", "-x", "a" * 33, "amina_sow"])
def test_a_bad_user_name_is_refused_before_anything(
    kafka: KafkaConnection, agency_a: str, user: str
) -> None:
    result = platform(kafka, "add-agency-user", "--agency", agency_a, "--user", user)
    assert result.exit_code == 2 and "invalid user name" in said(result), result.output
    principal = f"agency.{agency_a}.{user}"
    assert not kafka_access.KafkaAccess(kafka).has_credential(principal)
    assert audit_of(kafka, principal) == []


def test_listing_the_users_of_a_bad_agency_id_is_refused(kafka: KafkaConnection) -> None:
    result = platform(kafka, "list-agency-users", "--agency", "ngo.jamm")
    assert result.exit_code == 2 and "invalid agency id" in said(result), result.output


def test_a_user_of_an_unregistered_agency_is_refused(kafka: KafkaConnection) -> None:
    ghost = f.unique("ghost")
    result = platform(kafka, "add-agency-user", "--agency", ghost, "--user", "amina")
    assert result.exit_code == 1 and "register the agency first" in said(result)
    member = agency_member_user(ghost, "amina")
    assert not kafka_access.KafkaAccess(kafka).has_credential(member)
    assert audit_of(kafka, member) == [], "refused before any change: nothing to audit"


def test_a_password_file_sets_the_password_and_a_weak_one_is_refused(
    kafka: KafkaConnection, agency_a: str, tmp_path: Path
) -> None:
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    args = ("add-agency-user", "--agency", agency_a, "--user", "desk-1", "--password-file")
    refused = platform(kafka, *args, str(weak))
    assert refused.exit_code == 2 and "shorter than" in said(refused), refused.output

    chosen = f"chosen-{uuid.uuid4().hex}"
    good = tmp_path / "good"
    good.write_text(chosen + "\n")
    result = platform(kafka, *args, str(good))
    assert result.exit_code == 0, result.output
    assert chosen not in result.output, "a chosen password is never printed"
    desk = kafka.as_user(agency_member_user(agency_a, "desk-1"), chosen)
    asyncio.run(
        check_writes(desk, kafka, allowed=[topics.AGENCY_SUBMISSIONS.name(agency_a)], denied=[])
    )


def test_deregistering_an_agency_removes_its_users(kafka: KafkaConnection, agency_a: str) -> None:
    amina = add_user(kafka, agency_a, "amina")
    assert not asyncio.run(login_refused(amina)), "the positive control: amina logs in"
    result = platform(kafka, "deregister-agency", agency_a)
    assert result.exit_code == 0, result.output
    assert asyncio.run(login_refused(amina))
    access = kafka_access.KafkaAccess(kafka)
    assert access.acls_of(amina.username) == []
    listed = platform(kafka, "list-agency-users", "--agency", agency_a)
    assert "amina" not in listed.output
