import json
import logging

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
