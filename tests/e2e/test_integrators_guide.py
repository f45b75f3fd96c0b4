"""The guide works as written: its Python submission example, run as a partner would run it,
registers a case that appears on intake.cases.v1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import collect, data_of, headers_of, register_agency_access

REPO = Path(__file__).resolve().parents[2]


def _python_example() -> str:
    guide = (REPO / "docs" / "integrators.md").read_text()
    section = guide.split("## 3. Submitting a case", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the guide lost its Python example"
    return match.group(1)


async def test_the_python_example_of_the_guide_registers_a_case(
    services: dict[str, RunningService], kafka: KafkaConnection, tmp_path: Path
) -> None:
    agency = f.unique("iom")
    # What the operator's registration does; the partner gets its own credentials.
    as_agency = await register_agency_access(kafka, agency)
    assert as_agency.username is not None and as_agency.password is not None
    assert kafka.ca_file is not None, "make test's broker speaks TLS only"

    example = json.loads((REPO / "docs/examples/submission.json").read_text())
    example["agency_id"] = agency
    (tmp_path / "docs/examples").mkdir(parents=True)
    (tmp_path / "docs/examples/submission.json").write_text(json.dumps(example))
    code = _python_example().replace("iom-sn", agency)
    partner_env = {
        "PATH": os.environ["PATH"],
        "REFEX_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "REFEX_KAFKA_USERNAME": as_agency.username,
        "REFEX_KAFKA_PASSWORD": as_agency.password,
        # The platform's CA certificate, as an agency is given it: the example speaks TLS.
        "REFEX_KAFKA_CA_FILE": str(kafka.ca_file),
    }
    run = subprocess.run(  # noqa: ASYNC221 - a one-off partner script, run as a partner would
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=partner_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr

    cases = await collect(
        kafka, topics.INTAKE_CASES, lambda r: data_of(r).get("submitting_agency_id") == agency
    )
    assert [headers_of(r)["ce_type"] for r in cases] == [ev.CASE_REGISTERED]
    assert data_of(cases[0])["needs"][0]["category"] == example["needs"][0]["category"]
