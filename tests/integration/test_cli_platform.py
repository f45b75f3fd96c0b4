"""Operator commands against the real broker."""

import asyncio
import json
import re
import uuid
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from ops.cli import app
from shared.contracts import topics
from shared.db.migrations import migrate_service
from shared.kafka.connection import KafkaConnection
from tests import factories as f
from tests.e2e.kafka_helpers import read_everything, wait_for_topic

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def test_create_topics_reports_the_catalogue(kafka: KafkaConnection) -> None:
    result = runner.invoke(
        app, ["platform", "create-topics", "--bootstrap", kafka.bootstrap_servers]
    )
    assert result.exit_code == 0, result.output
    for spec in topics.CATALOGUE:
        assert spec.name in result.output


def _audit_of(kafka: KafkaConnection, target_id: str) -> list[dict[str, object]]:
    """The target's audit records, read to the end offsets: a command writes its audit records
    (acknowledged) before it returns, so what is not there by then was never written."""
    records = asyncio.run(read_everything(kafka, [topics.OPERATORS_AUDIT]))
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))  # one key, one partition
    return [json.loads(r.value or b"{}") for r in ordered if r.key == target_id.encode()]


def test_register_agency_creates_its_inbox_and_publishes_it(
    kafka: KafkaConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFEX_OPERATOR", "amina.operator")
    agency = f.agency(f.unique("ngo"))
    path = tmp_path / "agency.json"
    path.write_text(agency.model_dump_json())
    result = runner.invoke(
        app, ["platform", "register-agency", str(path), "--bootstrap", kafka.bootstrap_servers]
    )
    assert result.exit_code == 0, result.output
    password = re.search(r"password: (\S+)", result.output)
    assert password, "a new agency's password is shown once to the operator"

    audit = _audit_of(kafka, agency.agency_id)
    assert [(a["command"], a["outcome"]) for a in audit] == [
        ("platform register-agency", "started"),
        ("platform register-agency", "succeeded"),
    ]
    assert {a["operator"] for a in audit} == {"amina.operator"}
    assert {a["kafka_principal"] for a in audit} == {kafka.username}
    assert len({a["audit_id"] for a in audit}) == 1
    assert password.group(1) not in json.dumps(audit), "never a secret in the audit log"

    async def check() -> list[dict[str, object]]:
        await wait_for_topic(kafka, topics.agency_inbox(agency.agency_id), timeout=5)
        return [
            json.loads(r.value or b"{}")
            for r in await read_everything(kafka, [topics.DIRECTORY_AGENCIES])
            if r.key == agency.agency_id.encode()
        ]

    published = asyncio.run(check())
    assert [p["agency_id"] for p in published] == [agency.agency_id]

    # Registering again keeps the password (none is shown) and is audited again.
    again = runner.invoke(
        app, ["platform", "register-agency", str(path), "--bootstrap", kafka.bootstrap_servers]
    )
    assert again.exit_code == 0 and "password:" not in again.output
    assert len(_audit_of(kafka, agency.agency_id)) == 4


async def _referral_schema(dsn: str) -> None:
    """The referral database as the service leaves it (this test may run before any e2e)."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        await migrate_service(pool, "referral", REPO / "services/referral/migrations")
    finally:
        await pool.close()


def test_a_failed_operator_command_is_audited_as_failed(
    kafka: KafkaConnection, database_urls: dict[str, str]
) -> None:
    asyncio.run(_referral_schema(database_urls["referral"]))
    agency_id = f.unique("ghost")
    result = runner.invoke(
        app,
        ["platform", "rotate-agency-password", agency_id, "--bootstrap", kafka.bootstrap_servers],
    )
    assert result.exit_code == 1 and "register the agency first" in result.output
    assert _audit_of(kafka, agency_id) == [], "refused before any change: nothing to audit"

    missing = str(uuid.uuid4())
    result = runner.invoke(app, ["referral", "entered-in-error", missing])
    assert result.exit_code == 1, result.output
    assert [(a["outcome"], a.get("error")) for a in _audit_of(kafka, missing)] == [
        ("started", None),
        ("failed", "exit code 1"),
    ]


def test_unreachable_broker_is_a_clear_failure(tmp_path: Path) -> None:
    result = runner.invoke(app, ["platform", "create-topics", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "cannot reach Kafka" in result.output


def test_replicas_says_every_partition_is_in_sync_on_a_healthy_broker(
    kafka: KafkaConnection,
) -> None:
    # A partition a replica short (exit 1, listed) needs a node down: test_cluster.py's bounce.
    result = runner.invoke(app, ["platform", "replicas", "--bootstrap", kafka.bootstrap_servers])
    assert result.exit_code == 0, result.output
    assert "every partition has all its replicas in sync" in result.output
