"""Webhooks end to end: a real HTTP receiver, signatures checked with the independent
`standardwebhooks` implementation, retries with the same webhook-id, 410, exhaustion, replay."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import uvicorn
from standardwebhooks import Webhook
from typer.testing import CliRunner

from ops.cli import app
from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.kafka_helpers import (
    collect,
    data_of,
    headers_of,
    provoke_rejection,
    read_past_sentinel,
    register_agency_access,
    subject_is,
)

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SMTP_PORT = _free_port()
CONSOLE_URL = "http://console.example:8004"  # only written into the e-mails
ALLOW_PRIVATE = {"NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS": "true"}  # the receiver is loopback
SERVICE_ENV = {
    "NOTIFICATION_SMTP_HOST": "127.0.0.1",
    "NOTIFICATION_SMTP_PORT": str(SMTP_PORT),
    "NOTIFICATION_CONSOLE_URL": CONSOLE_URL,
    **ALLOW_PRIVATE,
    "NOTIFICATION_WEBHOOK_SCHEDULE_S": "[0.5, 0.5]",
    "NOTIFICATION_WEBHOOK_INTERVAL_S": "0.2",
}


@dataclass
class Receiver:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append(
            {"path": scope["path"], "headers": headers, "body": body, "at": time.time()}
        )
        self.seen[headers.get("webhook-id", "")] += 1
        status = {"/ok": 200, "/gone": 410, "/down": 500}.get(scope["path"], 200)
        extra: list[tuple[bytes, bytes]] = []
        if scope["path"] == "/flaky":
            status = 500 if self.seen[headers.get("webhook-id", "")] <= 2 else 200
        if scope["path"] == "/later" and self.seen[headers.get("webhook-id", "")] == 1:
            status, extra = 503, [(b"retry-after", b"6")]
        await send({"type": "http.response.start", "status": status, "headers": extra})
        await send({"type": "http.response.body", "body": b""})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    target = Receiver(port)
    server = uvicorn.Server(
        uvicorn.Config(target, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield target
    server.should_exit = True
    thread.join(timeout=10)


async def _agency_with_webhook(kafka: KafkaConnection, url: str) -> tuple[str, str]:
    agency = f.unique("ngo")
    await register_agency_access(kafka, agency)
    await publish_events(kafka, [f.agency_event(f.agency(agency))])
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["notification", "add-webhook", agency, url], env=ALLOW_PRIVATE
    )
    assert result.exit_code == 0, result.output
    secret = re.search(r"(whsec_\S+)", result.output)
    assert secret
    return agency, secret.group(1)


_provoke_rejection = provoke_rejection  # an invalid submission: its rejection is an inbox event


async def _wait(predicate: Any, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


async def test_signed_delivery_retried_with_the_same_id_then_replayed(
    services: dict[str, RunningService], receiver: Receiver, kafka: KafkaConnection
) -> None:
    agency, secret = await _agency_with_webhook(kafka, receiver.url("/flaky"))
    await _provoke_rejection(kafka, agency)
    await _wait(lambda: len(receiver.received("/flaky")) >= 3)
    attempts = receiver.received("/flaky")
    ids = {r["headers"]["webhook-id"] for r in attempts}
    assert len(ids) == 1  # the same message each time: receivers can de-duplicate
    for request in attempts:
        payload = Webhook(secret).verify(request["body"], request["headers"])
        assert payload["type"] == ev.INBOX_SUBMISSION_REJECTED
        assert payload["specversion"] == "1.0"
        assert payload["data"]["agency_id"] == agency

    replayed = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["notification", "replay", agency, "--since", "2000-01-01T00:00:00"],
    )
    assert replayed.exit_code == 0, replayed.output
    await _wait(lambda: len(receiver.received("/flaky")) >= 4)
    assert receiver.received("/flaky")[3]["headers"]["webhook-id"] in ids


async def test_rotation_overlap_signs_with_both_and_no_secret_is_stored_or_logged_in_clear(
    services: dict[str, RunningService],
    receiver: Receiver,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> None:
    agency, old = await _agency_with_webhook(kafka, receiver.url("/rotated"))
    rotated = await asyncio.to_thread(
        CliRunner().invoke, app, ["notification", "rotate-webhook-secret", agency]
    )
    assert rotated.exit_code == 0, rotated.output
    found = re.search(r"(whsec_\S+)", rotated.output)
    assert found
    new = found.group(1)
    await _provoke_rejection(kafka, agency)
    await _wait(lambda: len(receiver.received("/rotated")) >= 1)
    request = receiver.received("/rotated")[0]
    assert len(request["headers"]["webhook-signature"].split()) == 2
    for secret in (old, new):  # either secret verifies during the overlap
        assert Webhook(secret).verify(request["body"], request["headers"])["data"]

    conn = await asyncpg.connect(database_urls["notification"])
    try:
        endpoint = await conn.fetchval(
            "SELECT t::text FROM webhook_endpoints t WHERE agency_id = $1", agency
        )
        stored = await conn.fetch(
            "SELECT t::text AS row, t.sealed FROM webhook_secrets t WHERE agency_id = $1", agency
        )
    finally:
        await conn.close()
    assert endpoint and len(stored) == 2
    for secret in (old, new):
        raw_key = base64.b64decode(secret.removeprefix("whsec_"))
        assert secret not in endpoint and secret.removeprefix("whsec_") not in endpoint
        for row in stored:
            assert secret not in row["row"] and secret.encode().hex() not in row["row"]
            assert secret.encode() not in row["sealed"] and raw_key not in row["sealed"]
    logged = services["notification"].log()
    for value in (old, new, os.environ["NOTIFICATION_SECRETS_KEY"]):
        assert value not in logged


async def test_410_disables_the_endpoint(
    services: dict[str, RunningService],
    receiver: Receiver,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> None:
    agency, _ = await _agency_with_webhook(kafka, receiver.url("/gone"))
    await _provoke_rejection(kafka, agency)
    await _wait(lambda: len(receiver.received("/gone")) >= 1)
    conn = await asyncpg.connect(database_urls["notification"])
    try:
        for _ in range(50):
            disabled = await conn.fetchval(
                "SELECT disabled_reason FROM webhook_endpoints WHERE agency_id = $1", agency
            )
            if disabled:
                break
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
    assert disabled == "HTTP 410 Gone"
    # A second event after the 410: wait for its own inbox record (it WAS processed; its webhook
    # delivery, if any, was decided in that same transaction), then prove it was not sent.
    second = await _provoke_rejection(kafka, agency)
    [notice] = await collect(kafka, topics.agency_inbox(agency), subject_is(second))
    webhook_id = f"msg_{headers_of(notice)['ce_id']}"
    conn = await asyncpg.connect(database_urls["notification"])
    try:
        status = await conn.fetchval(
            "SELECT status FROM webhook_deliveries WHERE webhook_id = $1", webhook_id
        )
        while status == "pending":  # queued before the endpoint was disabled: let it finish
            await asyncio.sleep(0.2)
            status = await conn.fetchval(
                "SELECT status FROM webhook_deliveries WHERE webhook_id = $1", webhook_id
            )
    finally:
        await conn.close()
    assert status in (None, "endpoint_disabled"), status
    assert receiver.seen[webhook_id] == 0  # the second event was never POSTed
    assert len(receiver.received("/gone")) == 1  # nothing more is sent to it


async def test_exhaustion_is_reported(
    services: dict[str, RunningService], receiver: Receiver, kafka: KafkaConnection
) -> None:
    agency, _ = await _agency_with_webhook(kafka, receiver.url("/down"))
    await _provoke_rejection(kafka, agency)
    reports = await collect(
        kafka,
        topics.NOTIFICATION_DELIVERIES,
        lambda r: data_of(r)["agency_id"] == agency,
        expected=3,
    )
    assert [data_of(r)["status"] for r in reports] == ["failed", "failed", "exhausted"]
    assert data_of(reports[-1])["attempt"] == 3  # immediately, then the two retries
    assert headers_of(reports[-1])["ce_type"] == ev.DELIVERY_ATTEMPTED
    for report in map(data_of, reports):  # each failure says why
        assert (report["error"], report["http_status"]) == ("http_error", 500)
    assert len(receiver.received("/down")) == 3


async def test_a_refused_connection_is_reported_as_such(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    agency, _ = await _agency_with_webhook(kafka, f"http://127.0.0.1:{_free_port()}/closed")
    await _provoke_rejection(kafka, agency)
    reports = await collect(
        kafka,
        topics.NOTIFICATION_DELIVERIES,
        lambda r: data_of(r)["agency_id"] == agency,
        expected=3,
    )
    assert [(d["status"], d["error"], d.get("http_status")) for d in map(data_of, reports)] == [
        ("failed", "connection_failed", None),
        ("failed", "connection_failed", None),
        ("exhausted", "connection_failed", None),
    ]


async def test_add_webhook_refuses_a_private_url_naming_the_setting_and_audits_the_failure(
    services: dict[str, RunningService],
    receiver: Receiver,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> None:
    agency = f.unique("ngo")
    for url in (receiver.url("/never"), f"http://localhost:{receiver.port}/never"):
        refused = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["notification", "add-webhook", agency, url],
            env={"NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS": None},  # as in production
        )
        assert refused.exit_code == 2, refused.output
        assert "webhook URL refused" in refused.output and "a loopback address" in refused.output
        assert "NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS=true" in refused.output
        assert "whsec_" not in refused.output  # no secret was made for it
    conn = await asyncpg.connect(database_urls["notification"])
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM webhook_endpoints WHERE agency_id = $1", agency
        )
    finally:
        await conn.close()
    assert stored == 0
    audited = await collect(
        kafka, topics.OPERATORS_AUDIT, lambda r: data_of(r).get("target_id") == agency, expected=4
    )
    assert [(d["command"], d["outcome"], d.get("error")) for d in map(data_of, audited)] == [
        ("notification add-webhook", "started", None),
        ("notification add-webhook", "failed", "exit code 2"),
    ] * 2


@pytest.fixture(scope="module")
def mailbox() -> Iterator[list[Any]]:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Keep:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    controller = Controller(Keep(), hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    yield received
    controller.stop()


async def test_emails_arrive_in_the_agency_language_without_personal_data(
    mailbox: list[Any], services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    french, english, arabic = f.unique("gov"), f.unique("ngo"), f.unique("ngo")
    for agency, language in ((french, "fr"), (english, "en"), (arabic, "ar")):
        await register_agency_access(kafka, agency)
        await publish_events(kafka, [f.agency_event(f.agency(agency))])
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["notification", "add-email", agency, f"desk@{agency}.example", "--language", language],
        )
        assert result.exit_code == 0, result.output
        await _provoke_rejection(kafka, agency)
    await _wait(
        lambda: (
            {m["To"] for m in mailbox} >= {f"desk@{a}.example" for a in (french, english, arabic)}
        )
    )
    by_to = {m["To"]: m for m in mailbox}
    fr, en = by_to[f"desk@{french}.example"], by_to[f"desk@{english}.example"]
    ar = by_to[f"desk@{arabic}.example"]
    assert fr["Subject"].startswith("Envoi ") and fr["Subject"].endswith(" refusé")
    assert en["Subject"].startswith("Submission ") and en["Subject"].endswith(" was rejected")
    assert ar["Subject"].startswith("رُفض الإرسال ")
    assert 'dir="rtl"' in ar.get_body(preferencelist=("html",)).get_content()
    for message in (fr, en, ar):
        plain = message.get_body(preferencelist=("plain",)).get_content()
        page = message.get_body(preferencelist=("html",)).get_content()
        assert "consent" in plain and "<p>" in page
        # A rejected submission is about no referral: it leads to the agency's inbox.
        assert plain.rstrip().endswith(f"{CONSOLE_URL}/inbox")
        assert f'<a href="{CONSOLE_URL}/inbox">' in page
        assert "Awa" not in plain + page and "+221700000000" not in plain + page
    logged = await collect(
        kafka,
        topics.NOTIFICATION_DELIVERIES,
        lambda r: data_of(r)["agency_id"] == french and data_of(r)["channel"] == "email",
    )
    assert [data_of(r)["status"] for r in logged] == ["delivered"]
    assert data_of(logged[0])["latency_ms"] >= 0


async def test_each_inbox_holds_only_its_own_agency_events(
    services: dict[str, RunningService], kafka: KafkaConnection
) -> None:
    one, other = f.unique("ngo"), f.unique("ngo")
    for agency in (one, other):
        await register_agency_access(kafka, agency)
        await publish_events(kafka, [f.agency_event(f.agency(agency))])
    mine_id = await _provoke_rejection(kafka, one)
    mine = await collect(kafka, topics.agency_inbox(one), lambda r: True)
    assert [headers_of(r)["ce_subject"] for r in mine] == [mine_id]
    assert all(data_of(r)["agency_id"] == one for r in mine)
    # The rejection was applied (its answer is in one's inbox), so a copy routed to the other
    # inbox was already queued: the other's own answer, provoked now, is queued after it.
    sentinel = await _provoke_rejection(kafka, other)
    theirs = await read_past_sentinel(kafka, topics.agency_inbox(other), subject_is(sentinel))
    assert [headers_of(r)["ce_subject"] for r in theirs] == [sentinel]
    assert all(data_of(r)["agency_id"] == other for r in theirs)


async def test_retry_after_is_honoured_across_a_restart(
    services: dict[str, RunningService],
    receiver: Receiver,
    kafka: KafkaConnection,
    tmp_path: Any,
    database_urls: dict[str, str],
) -> None:
    from tests.e2e.conftest import start_service, stop_service, wait_ready

    agency, secret = await _agency_with_webhook(kafka, receiver.url("/later"))
    await _provoke_rejection(kafka, agency)
    await _wait(lambda: len(receiver.received("/later")) >= 1)
    first = receiver.received("/later")[0]
    # The stored schedule, not the time a restart happens to take: the row's next attempt is
    # Retry-After (6 s) after the 503, not the 0.5 s schedule (nor the 60 s lease).
    conn = await asyncpg.connect(database_urls["notification"])
    try:
        for _ in range(100):
            row = await conn.fetchrow(
                """SELECT status, attempts, last_http_status, next_attempt_at
                     FROM webhook_deliveries WHERE webhook_id = $1""",
                first["headers"]["webhook-id"],
            )
            if row is not None and row["last_http_status"] == 503:
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    assert row is not None and (row["status"], row["attempts"], row["last_http_status"]) == (
        "pending",
        1,
        503,
    )
    due_at = row["next_attempt_at"].timestamp()
    assert 5.9 <= due_at - first["at"] <= 9, due_at - first["at"]  # Retry-After: 6
    stop_service(services["notification"])  # the retry is due in 6 s: it must survive this
    services["notification"] = start_service("notification", tmp_path, SERVICE_ENV)
    wait_ready([services["notification"]])
    await _wait(lambda: len(receiver.received("/later")) >= 2)
    second = receiver.received("/later")[1]
    assert second["at"] >= due_at - 0.1  # not before the stored time
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    Webhook(secret).verify(second["body"], second["headers"])


def _readme_webhook_commands() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("To receive an agency's webhooks on your machine", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "the README lost its local webhook commands"
    return match.group(1)


async def test_the_readme_receiver_gets_signed_deliveries(
    services: dict[str, RunningService], kafka: KafkaConnection, tmp_path: Path
) -> None:
    commands = _readme_webhook_commands()
    assert "NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS=true make run" in commands
    assert "export NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS=true" in commands
    assert "export REFEX_WEBHOOK_SECRET=" in commands
    documented = re.search(r"(refex demo receive-webhooks --port) 9000", commands)
    assert documented and "add-webhook ngo-jamm http://127.0.0.1:9000/ngo-jamm" in commands

    port = _free_port()
    agency, secret = await _agency_with_webhook(kafka, f"http://127.0.0.1:{port}/hooks")
    output = tmp_path / "receiver.out"
    refex = Path(sys.executable).parent / "refex"
    with output.open("wb") as sink:
        receiver = subprocess.Popen(  # noqa: ASYNC220 - a long-running process, polled below
            [str(refex), *documented.group(1).split()[1:], str(port)],
            env={**os.environ, "REFEX_WEBHOOK_SECRET": secret},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        await _wait(lambda: "receiving webhooks" in output.read_text(), timeout=20)
        assert "checking signatures" in output.read_text()
        await _provoke_rejection(kafka, agency)
        await _wait(lambda: "signature=" in output.read_text())
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
    line = next(x for x in output.read_text().splitlines() if "signature=" in x)
    assert "POST /hooks" in line and f"type={ev.INBOX_SUBMISSION_REJECTED}" in line
    assert line.endswith("signature=ok"), line
