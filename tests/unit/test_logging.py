import json
import logging

import aiokafka.client
import pytest
import structlog

from shared.logging import configure_logging, get_logger, message_context


def test_json_lines_with_context_bound_and_cleared(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("unit", "INFO")
    log = get_logger("t")
    with message_context(event_id="e-1", correlation_id="c-1", partition=None):
        log.info("inside", count=2)
    log.info("after")
    logging.getLogger("faststream.unit").info("stdlib record")
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) >= 3, out
    inside, after, stdlib = lines[-3:]
    assert inside["event"] == "inside" and inside["event_id"] == "e-1"
    assert inside["correlation_id"] == "c-1" and "partition" not in inside
    assert inside["service"] == "unit" and inside["level"] == "info"
    assert "event_id" not in after and "correlation_id" not in after
    assert stdlib["event"] == "stdlib record" and stdlib["service"] == "unit"
    structlog.reset_defaults()


def test_aiokafka_asking_for_no_broker_yet_is_not_an_error_but_an_unreachable_one_is(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """aiokafka logs "Unable connect to node with id None" when it has no broker for a request
    yet (and retries); a broker it knows but cannot reach is still an error."""
    configure_logging("unit", "INFO")
    client = aiokafka.client.log  # the logger aiokafka's client really logs it with
    stale = "StaleMetadata: Broker id None not in current metadata"
    client.error("Unable connect to node with id %s: %s", None, stale)
    client.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == [
        "Unable connect to node with id 1: [Errno 111] Connect call failed"
    ]
    assert lines[0]["level"] == "error"
    structlog.reset_defaults()
