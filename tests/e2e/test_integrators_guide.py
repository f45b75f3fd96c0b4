"""The guide works as written: its Python submission example, run as a partner would run it,
registers a case that appears on intake.cases.v1; and so do its sealed examples (issue 22), the
Python one and the kcat one (the stand-in kcat, intake's key fetched from intake.keys.v1 with the
agency's own credentials, the block sealed by docs/tools/seal_personal.py): intake opens the
block and keeps exactly the personal data the example holds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from services.intake.store import IntakeStore
from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.keys import key_from_environment
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import collect, data_of, headers_of, register_agency_access
from tests.integration.test_kcat_guide import GUIDE_BROKER, auth_snippet, code_blocks, stand_in

REPO = Path(__file__).resolve().parents[2]
GUIDE = (REPO / "docs" / "integrators.md").read_text()
SEALING = "### Sealing the personal block"


def _section(title: str) -> str:
    """From the heading ``title`` to the next heading."""
    return re.split(r"\n#{2,6} ", GUIDE.split(title, 1)[1], maxsplit=1)[0]


def _python_example(where: str) -> str:
    match = re.search(r"```python\n(.*?)```", where, re.S)
    assert match, "the guide lost its Python example"
    return match.group(1)


def _kcat_flow() -> str:
    """The sealing subsection's kcat block: fetch intake's keys, seal, send."""
    [block] = [b for b in code_blocks(_section(SEALING)) if "seal_personal.py" in b]
    return block


def _partner_files(tmp_path: Path, agency: str) -> dict[str, Any]:
    """A partner's working directory: the guide's example submission as the agency's own, and
    the guide's tools at the path the guide gives."""
    example = json.loads((REPO / "docs/examples/submission.json").read_text())
    example["agency_id"] = agency
    (tmp_path / "docs/examples").mkdir(parents=True)
    (tmp_path / "docs/examples/submission.json").write_text(json.dumps(example))
    (tmp_path / "docs/tools").symlink_to(REPO / "docs/tools")
    return dict(example)


def _partner_env(kafka: KafkaConnection, as_agency: KafkaConnection) -> dict[str, str]:
    assert as_agency.username is not None and as_agency.password is not None
    return {
        # python3 with the partner's libraries (aiokafka, pynacl, confluent-kafka)
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "REFEX_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "REFEX_KAFKA_USERNAME": as_agency.username,
        "REFEX_KAFKA_PASSWORD": as_agency.password,
        # The platform's CA certificate, as an agency is given it: the examples speak TLS.
        "REFEX_KAFKA_CA_FILE": str(kafka.ca_file),
    }


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    run = subprocess.run(  # a one-off partner script, run as a partner would
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


async def _registered(kafka: KafkaConnection, agency: str, example: dict[str, Any]) -> str:
    """The case the agency's one submission registered (its id)."""
    cases = await collect(
        kafka, topics.INTAKE_CASES, lambda r: data_of(r).get("submitting_agency_id") == agency
    )
    assert [headers_of(r)["ce_type"] for r in cases] == [ev.CASE_REGISTERED]
    assert data_of(cases[0])["needs"][0]["category"] == example["needs"][0]["category"]
    return str(data_of(cases[0])["case_id"])


async def _stored_personal(dsn: str, case_id: str) -> ev.PersonalData:
    """What intake keeps of the case's personal data, decrypted with its master key."""
    conn = await asyncpg.connect(dsn)
    try:
        return await IntakeStore(conn).read_personal(
            case_id, key_from_environment("INTAKE_MASTER_KEY")
        )
    finally:
        await conn.close()


async def test_the_python_example_of_the_guide_registers_a_case(
    services: dict[str, RunningService], kafka: KafkaConnection, tmp_path: Path
) -> None:
    agency = f.unique("iom")
    # What the operator's registration does; the partner gets its own credentials.
    as_agency = await register_agency_access(kafka, agency)
    assert kafka.ca_file is not None, "make test's broker speaks TLS only"
    example = _partner_files(tmp_path, agency)
    code = _python_example(GUIDE.split("## 3. Submitting a case", 1)[1]).replace("iom-sn", agency)
    _run([sys.executable, "-c", code], tmp_path, _partner_env(kafka, as_agency))
    await _registered(kafka, agency, example)


async def test_the_sealed_python_example_of_the_guide_registers_the_case_intake_opened(
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    tmp_path: Path,
) -> None:
    agency = f.unique("iom")
    as_agency = await register_agency_access(kafka, agency)
    example = _partner_files(tmp_path, agency)
    code = _python_example(_section(SEALING)).replace("iom-sn", agency)
    assert "SealedBox" in code and "intake.keys.v1" in code
    _run([sys.executable, "-c", code], tmp_path, _partner_env(kafka, as_agency))
    case_id = await _registered(kafka, agency, example)
    stored = await _stored_personal(database_urls["intake"], case_id)
    assert stored == ev.PersonalData.model_validate(example["personal"])


async def test_the_sealed_kcat_example_of_the_guide_registers_the_case_intake_opened(
    services: dict[str, RunningService],
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    tmp_path: Path,
) -> None:
    agency = f.unique("iom")
    as_agency = await register_agency_access(kafka, agency)
    example = _partner_files(tmp_path, agency)
    flow = _kcat_flow().replace("iom-sn", agency).replace(GUIDE_BROKER, kafka.bootstrap_servers)
    script = "set -euo pipefail\n" + stand_in() + auth_snippet() + flow
    _run(["bash", "-c", script], tmp_path, _partner_env(kafka, as_agency))
    sealed = json.loads((tmp_path / "submission-sealed.json").read_text())
    assert set(sealed["personal"]) == {"sealed_box", "key_sha256"}
    case_id = await _registered(kafka, agency, example)
    stored = await _stored_personal(database_urls["intake"], case_id)
    assert stored == ev.PersonalData.model_validate(example["personal"])
