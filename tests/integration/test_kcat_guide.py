"""Every kcat command of docs/integrators.md works as written, run through docs/tools/kcat.py
(the stand-in for distributions whose kcat links a librdkafka older than 2.6.1) against the real
broker, as a registered agency with its own SCRAM credentials.

The commands are read from the guide itself, so the guide and this test cannot drift apart: a new
kcat command in the guide that this test does not know how to check fails it. If Debian's old
kcat is installed, the symptom the guide quotes is reproduced with it too."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from nacl.public import PrivateKey

from ops import kafka_access
from ops.access_policy import evidence_reader_rules
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import build_event, parse_headers
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.kafka_helpers import read_everything, register_agency_access

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "integrators.md"
KCAT_PY = REPO / "docs" / "tools" / "kcat.py"
GUIDE_BROKER = "127.0.0.1:19092"


CLIENTS_SECTION = "### Which Kafka clients work"


def code_blocks(text: str) -> list[str]:
    """The ```bash and ```sh blocks of some markdown (also indented ones, in lists), with
    backslash-continued lines joined."""
    blocks = re.findall(r"^([ \t]*)```(?:bash|sh)\n(.*?)^[ \t]*```", text, re.S | re.M)
    return [textwrap.dedent(body).replace("\\\n", " ") for _, body in blocks]


def clients_section() -> str:
    """The guide's opening section on clients: the symptom and the two ways round it."""
    guide = GUIDE.read_text()
    assert CLIENTS_SECTION in guide, "the guide lost its client compatibility section"
    return re.split(r"\n#{1,6} ", guide.split(CLIENTS_SECTION, 1)[1], maxsplit=1)[0]


def guide_bash_blocks() -> list[str]:
    """Every block of the guide but those of the clients section (which the tests below run
    on their own)."""
    return code_blocks(GUIDE.read_text().replace(clients_section(), ""))


def way(marker: str) -> str:
    """One of the section's ways round an old librdkafka, without its `pip install` line
    (the venv has the pinned confluent-kafka already; a unit test checks the pin)."""
    found = [b for b in code_blocks(clients_section()) if marker in b]
    assert len(found) == 1, f"the guide's clients section lost its {marker} snippet"
    return "".join(line for line in found[0].splitlines(True) if not line.startswith("pip "))


def commented_output(snippet: str) -> str:
    """What the snippet's `kcat -V` line says it prints (after the `#`)."""
    match = re.search(r"^kcat -V\s+#\s*(.+)$", snippet, re.M)
    assert match, snippet
    return match[1].strip()


def auth_snippet() -> str:
    found = [b for b in guide_bash_blocks() if "export KCAT_AUTH=" in b]
    assert len(found) == 1, "the guide lost (or doubled) its KCAT_AUTH snippet"
    return found[0]


def guide_kcat_commands() -> list[str]:
    commands = [
        line.strip()
        for block in guide_bash_blocks()
        if "export KCAT_AUTH=" not in block
        for line in block.splitlines()
        if re.search(r"(^|\|)\s*kcat\s", line) and not line.lstrip().startswith("#")
    ]
    assert commands, "the guide has no kcat command any more"
    return commands


@dataclass(frozen=True)
class Agencies:
    """The guide's agency ids (iom-sn, ngo-jamm, ...), each mapped to a fresh registered agency."""

    ids: dict[str, str]
    connections: dict[str, KafkaConnection]

    def localise(self, command: str) -> str:
        for guide_id, real_id in self.ids.items():
            command = re.sub(rf"(?<![\w-]){re.escape(guide_id)}(?![\w-])", real_id, command)
        return command

    def owner(self, command: str) -> KafkaConnection:
        topic = topic_of(command)
        return self.connections[topic.split(".")[1]]


def topic_of(command: str) -> str:
    match = re.search(r"-t\s+(\S+)", command)
    assert match, f"no -t topic in {command!r}"
    return match[1]


@pytest.fixture
async def agencies(kafka: KafkaConnection) -> Agencies:
    guide_ids = sorted(
        {
            topic_of(c).split(".")[1]
            for c in guide_kcat_commands()
            if "-t" in c and topic_of(c).startswith("agency.")
        }
    )
    ids = {guide_id: f.unique(guide_id.split("-")[0]) for guide_id in guide_ids}
    connections = {real: await register_agency_access(kafka, real) for real in ids.values()}
    return Agencies(ids, connections)


def shell_env(kafka: KafkaConnection, as_agency: KafkaConnection) -> dict[str, str]:
    """An integrator's shell: their credentials, the platform's CA certificate (the broker
    speaks TLS only) and a `python3` that has confluent-kafka."""
    assert as_agency.username is not None and as_agency.password is not None
    assert as_agency.ca_file is not None
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "REFEX_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "REFEX_KAFKA_USERNAME": as_agency.username,
        "REFEX_KAFKA_PASSWORD": as_agency.password,
        "REFEX_KAFKA_CA_FILE": as_agency.ca_file,
    }


def stand_in() -> str:
    """Way 1 as the guide writes it, pointed at this checkout, without its `kcat -V` line."""
    snippet = way("tools/kcat.py").replace("/path/to/", f"{REPO}/")
    assert str(KCAT_PY) in snippet, snippet
    return "".join(line for line in snippet.splitlines(True) if not line.startswith("kcat -V"))


def shell_script(command: str, kafka: KafkaConnection, prelude: str | None = None) -> str:
    """The guide's KCAT_AUTH snippet and command as an integrator types them, after the
    definition of `kcat` (the stand-in unless told otherwise; "" for the installed kcat), with
    the guide's broker replaced by the test broker."""
    return (
        "set -euo pipefail\n"
        + (stand_in() if prelude is None else prelude)
        + auth_snippet()
        + command.replace(GUIDE_BROKER, kafka.bootstrap_servers)
        + "\n"
    )


async def run_shell(
    script: str, env: dict[str, str], timeout: float = 60, cwd: Path = REPO
) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def header_dict(record: ConsumerRecord[bytes, bytes]) -> dict[str, bytes | None]:
    return dict(record.headers or ())


def expected_headers(command: str) -> dict[str, str]:
    """-H name=value as written in the command; a $(...) value is evaluated by the shell."""
    return dict(re.findall(r"-H\s+([^=\s]+)=(\S+)", command))


def check_headers(record: ConsumerRecord[bytes, bytes], command: str) -> None:
    written = expected_headers(command)
    got = header_dict(record)
    assert list(got) == list(written), "headers in the command's order, nothing else"
    for name, value in written.items():
        raw = got[name]
        assert raw is not None
        if value.startswith("$("):
            uuid.UUID(raw.decode())  # the guide's fresh ce_id
        else:
            assert raw.decode() == value, name
    parse_headers(record.headers or ())  # a CloudEvent the services' consumers accept


async def check_file_produce(command: str, agencies: Agencies, kafka: KafkaConnection) -> None:
    """`kcat -P ... -k KEY -H ... FILE...`: one record per file, key and headers as given."""
    local = agencies.localise(command)
    before = await read_everything(kafka, [topic_of(local)])
    code, output = await run_shell(
        shell_script(local, kafka), shell_env(kafka, agencies.owner(local))
    )
    assert code == 0, output
    files = [word for word in command.split() if word.startswith("docs/examples/")]
    assert files, command
    key = re.search(r"-k\s+(\S+)", command)
    records = (await read_everything(kafka, [topic_of(local)]))[len(before) :]
    assert [r.value for r in records] == [(REPO / p).read_bytes() for p in files]
    for record in records:
        assert record.key == (key[1].encode() if key else None)
        check_headers(record, local)


SEALED_FILE = "submission-sealed.json"  # what the guide's sealing step writes (§3)
INPUTS = ("intake-keys.jsonl", "submission.json")  # and what it reads


def _seal_example(agency_id: str, directory: Path) -> bytes:
    """The guide's example submission of ``agency_id``, its personal block sealed by the guide's
    tool for a key of this test, written where the guide's sealing step writes it."""
    public = bytes(PrivateKey.generate().public_key)
    record = {
        "key_sha256": hashlib.sha256(public).hexdigest(),
        "public_key": base64.b64encode(public).decode(),
        "status": "current",
    }
    (directory / "intake-keys.jsonl").write_text(json.dumps(record) + "\n")
    example = json.loads((REPO / "docs/examples/submission.json").read_text())
    (directory / "submission.json").write_text(json.dumps({**example, "agency_id": agency_id}))
    sealed = subprocess.run(
        [sys.executable, str(REPO / "docs/tools/seal_personal.py"), *INPUTS],
        cwd=directory,
        capture_output=True,
        check=True,
    ).stdout
    (directory / SEALED_FILE).write_bytes(sealed)
    return sealed


async def check_sealed_produce(
    command: str, agencies: Agencies, kafka: KafkaConnection, directory: Path
) -> None:
    """`kcat -P ... -k KEY -H ... submission-sealed.json` (§3): the sealed file as one message,
    key and headers as given. (That intake opens what the guide's tool sealed, for the key the
    guide's `-C` fetched, is tests/e2e/test_integrators_guide.py's.)"""
    local = agencies.localise(command)
    sealed = _seal_example(topic_of(local).split(".")[1], directory)
    before = await read_everything(kafka, [topic_of(local)])
    code, output = await run_shell(
        shell_script(local, kafka), shell_env(kafka, agencies.owner(local)), cwd=directory
    )
    assert code == 0, output
    [record] = (await read_everything(kafka, [topic_of(local)]))[len(before) :]
    assert record.value == sealed and b"sealed_box" in sealed
    key = re.search(r"-k\s+(\S+)", command)
    assert key and record.key == key[1].encode()
    check_headers(record, local)


async def check_keys_fetch(command: str, kafka: KafkaConnection, directory: Path) -> None:
    """`kcat -C ... -t intake.keys.v1 -o beginning -e -f '%s\\n' > FILE` (§3): any agency reads
    intake's keys, every record's value on a line of the file, and the command ends at the end
    of the topic. The record published here is a retired key, so that no reader of the shared
    test broker could take it for intake's current one."""
    output_file = re.search(r">\s*(\S+)\s*$", command)
    assert output_file and " -e" in command and "-o beginning" in command, command
    reader = await register_agency_access(kafka, f.unique("ngo"))
    public = uuid.uuid4().bytes * 2
    event = build_event(
        topic=topics.INTAKE_KEYS,
        key=hashlib.sha256(public).hexdigest(),
        type_=ev.SUBMISSION_KEY_PUBLISHED,
        source="urn:referralexchange:service:intake",
        data=ev.SubmissionKey(
            key_sha256=hashlib.sha256(public).hexdigest(),
            public_key=base64.b64encode(public).decode(),
            status=ev.SubmissionKeyStatus.RETIRED,
            published_at=datetime.now(UTC),
        ),
    )
    await publish_events(kafka, [event])
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # the new agency's ACLs reach the broker's authorizer shortly after
        code, output = await run_shell(
            shell_script(command, kafka), shell_env(kafka, reader), cwd=directory
        )
        written = directory / output_file[1]
        lines = written.read_bytes().splitlines() if written.exists() else []
        if code == 0 and event.body in lines:
            return
        assert asyncio.get_running_loop().time() < deadline, (code, output[-2000:])
        await asyncio.sleep(1)


async def check_stdin_produce(command: str, agencies: Agencies, kafka: KafkaConnection) -> None:
    """`echo "KEY<delim>" | kcat -P ... -K<delim> -Z`: a tombstone (key, NULL value)."""
    local = agencies.localise(command)
    before = await read_everything(kafka, [topic_of(local)])
    code, output = await run_shell(
        shell_script(local, kafka), shell_env(kafka, agencies.owner(local))
    )
    assert code == 0, output
    line = re.search(r'echo\s+"([^"]*)"', command)
    delim = re.search(r"-K\s*(\S+)", command)
    assert line and delim and "-Z" in command.split(), f"unknown stdin form: {command}"
    key, _, value = line[1].partition(delim[1])
    new = (await read_everything(kafka, [topic_of(local)]))[len(before) :]
    assert [(r.key, r.value) for r in new] == [(key.encode(), value.encode() or None)]


def render(format_: str, key: str, headers: dict[str, str], value: bytes) -> bytes:
    """What kcat prints for one message with the guide's -f format (the pieces it uses)."""
    text = format_.replace("\\n", "\n")
    pieces = {
        "%h": ",".join(f"{k}={v}" for k, v in headers.items()),
        "%k": key,
        "%s": value.decode(),
    }
    return re.sub(r"%[hks]", lambda m: pieces[m[0]], text).encode()


async def check_follow(command: str, agencies: Agencies, kafka: KafkaConnection) -> None:
    """`kcat -C ... -t agency.<id>.inbox.v1 -o beginning -f ...`: prints what is in the inbox,
    then what arrives while it runs, in the guide's format, until stopped."""
    local = agencies.localise(command)
    inbox = topic_of(local)
    agency_id = inbox.split(".")[1]
    format_ = re.search(r"-f\s+'([^']*)'", command)
    assert format_, f"the inbox command lost its -f format: {command}"

    def inbox_event() -> tuple[str, dict[str, str], bytes]:
        event = build_event(
            topic=inbox,
            key=str(uuid.uuid4()),
            type_=ev.INBOX_SUBMISSION_REJECTED,
            source="urn:referralexchange:service:notification",
            data=ev.SubmissionRejected(
                submission_id=str(uuid.uuid4()),
                agency_id=agency_id,
                topic=topics.AGENCY_SUBMISSIONS.name(agency_id),
                reason="body is not JSON",
            ),
        )
        return event.key, dict(event.headers), event.body

    producer = AIOKafkaProducer(**kafka.client_kwargs(), acks="all")  # as notification writes
    await producer.start()

    async def publish(event: tuple[str, dict[str, str], bytes]) -> None:
        key, headers, body = event
        await producer.send_and_wait(
            inbox, body, key=key.encode(), headers=[(k, v.encode()) for k, v in headers.items()]
        )

    first, second = inbox_event(), inbox_event()
    process = None
    try:
        await publish(first)
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            shell_script(local, kafka),
            cwd=REPO,
            env=shell_env(kafka, agencies.owner(local)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # so the whole pipeline can be stopped
        )
        assert process.stdout is not None
        seen = b""
        for event in (first, second):
            expected = seen + render(format_[1], *event)
            while len(seen) < len(expected):
                chunk = await asyncio.wait_for(process.stdout.read(65536), 30)
                assert chunk, f"stopped early: {seen!r}"
                seen += chunk
            assert seen == expected
            if event is first:
                await publish(second)  # arrives while it follows the inbox
        os.killpg(process.pid, signal.SIGTERM)  # what Ctrl-C or a supervisor does
        await asyncio.wait_for(process.wait(), 15)
    finally:
        await producer.stop()
        if process is not None and process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def check_aggregates(command: str, kafka: KafkaConnection) -> None:
    """`kcat -C ... -t evidence.aggregates.v1 -o beginning -e -f ...` (§14): an agency an
    operator granted the aggregates reads them in the guide's format, and the command ends at
    the end of the topic."""
    format_ = re.search(r"-f\s+'([^']*)'", command)
    assert format_ and " -e" in command, f"the aggregates command lost -f or -e: {command}"
    reader_id = f.unique("gov")
    reader = await register_agency_access(kafka, reader_id)
    await asyncio.to_thread(kafka_access.KafkaAccess(kafka).grant, evidence_reader_rules(reader_id))
    event = build_event(
        topic=topics.EVIDENCE_AGGREGATES,
        key="unmet_by_area",
        type_=ev.EVIDENCE_AGGREGATES_PUBLISHED,
        source="urn:org:referralexchange:evidence",
        data=ev.EvidenceAggregatesPublished(
            table="unmet_by_area",
            period=f"test-{uuid.uuid4().hex[:8]}",
            keys=["area", "reason"],
            figures=["unmet_needs"],
            rows=[ev.AggregateRow(key=["SN", "no_listing"], values=[7.0], cases=7)],
            k=5,
            generated_at=datetime.now(UTC),
        ),
    )
    await publish_events(kafka, [event])
    expected = render(format_[1], event.key, dict(event.headers), event.body)
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # the new ACL reaches the broker's authorizer shortly after it is written
        code, output = await run_shell(shell_script(command, kafka), shell_env(kafka, reader))
        if code == 0 and expected.decode() in output:
            return
        assert asyncio.get_running_loop().time() < deadline, (code, output[-2000:])
        await asyncio.sleep(1)


async def test_every_kcat_command_of_the_guide_works_with_the_stand_in(
    kafka: KafkaConnection, agencies: Agencies, tmp_path: Path
) -> None:
    checked = []
    for command in guide_kcat_commands():
        words = command.split()
        if "-P" in words and SEALED_FILE in words:
            await check_sealed_produce(command, agencies, kafka, tmp_path)
        elif "-P" in words and "|" not in words:
            await check_file_produce(command, agencies, kafka)
        elif "-P" in words:
            await check_stdin_produce(command, agencies, kafka)
        elif "-C" in words and topic_of(command).endswith(".inbox.v1"):
            await check_follow(command, agencies, kafka)
        elif "-C" in words and topic_of(command) == topics.EVIDENCE_AGGREGATES:
            await check_aggregates(command, kafka)
        elif "-C" in words and topic_of(command) == topics.INTAKE_KEYS:
            await check_keys_fetch(command, kafka, tmp_path)
        else:
            pytest.fail(f"the guide has a kcat command this test cannot check yet: {command}")
        checked.append(command)
    # the submission, the listing, its tombstone and the inbox, at least
    assert len(checked) >= 4


async def test_the_stand_in_refuses_a_wrong_password_at_once(
    kafka: KafkaConnection, agencies: Agencies
) -> None:
    command = agencies.localise(
        next(c for c in guide_kcat_commands() if " -C " in c and topic_of(c).startswith("agency."))
    )
    env = shell_env(kafka, agencies.owner(command)) | {"REFEX_KAFKA_PASSWORD": "wrong"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    code, output = await run_shell(shell_script(command, kafka), env)
    assert code == 1
    assert "% ERROR: Local: Authentication failure" in output
    assert loop.time() - started < 20  # no waiting for timeouts


# ----- the symptom, with the distribution's own kcat if it is installed -----


def documented_symptom() -> str:
    """The line the guide quotes from an old kcat's output."""
    match = re.search(
        r"(SASL authentication error: [^\n`]*invalid credentials[^\n`]*SCRAM-SHA-512)",
        GUIDE.read_text(),
    )
    assert match, "the guide no longer quotes the old kcat's error"
    return re.sub(r"\s*\(after \d+ms.*", "", match[1])


async def installed_kcat_librdkafka() -> tuple[int, ...] | None:
    if shutil.which("kcat") is None:
        return None
    _, version = await run_shell("kcat -V", {"PATH": os.environ["PATH"]})
    found = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(n) for n in found.groups()) if found else None


async def test_the_stand_in_is_defined_as_the_guide_says() -> None:
    snippet = way("tools/kcat.py").replace("/path/to/", f"{REPO}/")
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    code, output = await run_shell(snippet, env)
    assert code == 0, output
    assert output.strip() == commented_output(snippet)


async def test_an_old_kcat_fails_as_the_guide_says_and_works_with_the_wheel_s_librdkafka(
    kafka: KafkaConnection, agencies: Agencies, tmp_path: Path
) -> None:
    version = await installed_kcat_librdkafka()
    if version is None or version >= (2, 6, 1):
        pytest.skip("no kcat with librdkafka < 2.6.1 installed (Debian 12: apt-get install kcat)")
    command = agencies.localise(next(c for c in guide_kcat_commands() if "-P" in c.split()))
    env = shell_env(kafka, agencies.owner(command)) | {"HOME": str(tmp_path)}
    code, output = await run_shell(shell_script(command, kafka, prelude=""), env)
    assert code != 0
    assert documented_symptom() in output
    assert await read_everything(kafka, [topic_of(command)]) == []
    # Way 2: the same kcat, given the librdkafka of the confluent-kafka wheel.
    snippet = way("LD_LIBRARY_PATH")
    code, output = await run_shell(shell_script(command, kafka, prelude=snippet), env)
    assert code == 0, output
    assert commented_output(snippet).strip("… ") in output
    assert len(await read_everything(kafka, [topic_of(command)])) == 1


# ----- the guide's Java client settings (TLS with a PEM trust store) -----

JAVA_CLIENT = REPO / "tests" / "integration" / "java" / "GuideJavaClient.java"


def java_properties() -> str:
    """The guide's one ```properties block: a Java client's settings."""
    blocks = re.findall(r"^```properties\n(.*?)^```", GUIDE.read_text(), re.S | re.M)
    assert len(blocks) == 1, "the guide lost (or doubled) its Java client properties"
    return str(blocks[0])


async def run_java_client(properties: str, tmp_path: Path) -> tuple[int, str]:
    libs = os.environ.get("REFEX_KAFKA_LIBS", str(REPO / ".local" / "kafka-libs"))
    config = tmp_path / "client.properties"
    config.write_text(properties)
    process = await asyncio.create_subprocess_exec(
        "java",
        "-cp",
        f"{libs}/*",
        str(JAVA_CLIENT),
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def test_the_java_settings_of_the_guide_work_over_tls(
    kafka: KafkaConnection, tmp_path: Path
) -> None:
    """kafka-clients (the broker's own 4.4 jar) with the guide's properties, the CA given as a
    PEM trust store: it connects, verifies the broker, logs in as the agency and sees its own
    topics. Without the trust store (the JDK's default CAs) it is refused."""
    agency = f.unique("iom")
    as_agency = await register_agency_access(kafka, agency)
    assert as_agency.username and as_agency.password and as_agency.ca_file
    properties = (
        java_properties()
        .replace(GUIDE_BROKER, kafka.bootstrap_servers)
        .replace("/path/to/ca.crt", as_agency.ca_file)
        .replace('username="agency.iom-sn"', f'username="{as_agency.username}"')
        .replace('password="your-password"', f'password="{as_agency.password}"')
    )
    assert as_agency.password in properties and as_agency.ca_file in properties, properties
    code, output = await run_java_client(properties, tmp_path)
    assert code == 0, output
    assert {t.name for t in topics.agency_topics(agency)} <= set(output.split())

    without_ca = "".join(
        line for line in properties.splitlines(True) if not line.startswith("ssl.truststore.")
    )
    code, output = await run_java_client(without_ca, tmp_path)
    assert code == 1, output
    assert "refused:" in output
