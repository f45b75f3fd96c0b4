"""Operator commands against the real broker."""

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from ops.cli import app
from shared.contracts import topics
from shared.kafka.oneshot import follow
from tests import factories as f
from tests.e2e.kafka_helpers import wait_for_topic

runner = CliRunner()


def test_create_topics_reports_the_catalogue(bootstrap: str) -> None:
    result = runner.invoke(app, ["platform", "create-topics", "--bootstrap", bootstrap])
    assert result.exit_code == 0, result.output
    for spec in topics.CATALOGUE:
        assert spec.name in result.output


def test_register_agency_creates_its_inbox_and_publishes_it(bootstrap: str, tmp_path: Path) -> None:
    agency = f.agency(f.unique("ngo"))
    path = tmp_path / "agency.json"
    path.write_text(agency.model_dump_json())
    result = runner.invoke(
        app, ["platform", "register-agency", str(path), "--bootstrap", bootstrap]
    )
    assert result.exit_code == 0, result.output

    async def check() -> list[dict[str, object]]:
        await wait_for_topic(bootstrap, topics.agency_inbox(agency.agency_id), timeout=5)
        return [
            json.loads(r.value or b"{}")
            async for r in follow(bootstrap, topics.DIRECTORY_AGENCIES, idle_timeout_s=2.0)
            if r.key == agency.agency_id.encode()
        ]

    published = asyncio.run(check())
    assert [p["agency_id"] for p in published] == [agency.agency_id]


def test_unreachable_broker_is_a_clear_failure(tmp_path: Path) -> None:
    result = runner.invoke(app, ["platform", "create-topics", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "cannot reach Kafka" in result.output
