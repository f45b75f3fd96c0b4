"""The agency gateway's HTTP API against the running services, the real broker and PostgreSQL
(issue 20): an HTTP-only agency submits with one POST and reads its acknowledgement on the HTTP
inbox; the same refusals as its consumer's, synchronously; the same ce_id idempotency; a page
cursor and Server-Sent Events; logins checked by the broker at every request."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops import kafka_access
from ops.access_policy import agency_user
from shared.contracts import events as ev
from shared.contracts.envelope import OutgoingEvent
from shared.kafka.agency_messages import read_submission
from shared.kafka.connection import KafkaConnection
from shared.kafka.inbound import InboundEvent
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import REPO, RunningService
from tests.e2e.kafka_helpers import register_agency_access

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def http(gateway: RunningService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url(""), timeout=30) as client:
        yield client


async def _registered(kafka: KafkaConnection, prefix: str) -> tuple[str, str]:
    """A registered agency with no Kafka client: its id and its principal's password."""
    agency_id = f.unique(prefix)
    connection = await register_agency_access(kafka, agency_id)
    await publish_events(kafka, [f.agency_event(f.agency(agency_id))])
    assert connection.password is not None
    return agency_id, connection.password


async def _http_agency(kafka: KafkaConnection, prefix: str) -> tuple[str, httpx.BasicAuth]:
    agency_id, password = await _registered(kafka, prefix)
    return agency_id, httpx.BasicAuth(f"agency.{agency_id}", password)


def binary(event: OutgoingEvent) -> tuple[dict[str, str], bytes]:
    """The HTTP binary mode of an event as the CLI would publish it on Kafka."""
    headers = {
        ("content-type" if k == "content-type" else "ce-" + k.removeprefix("ce_")): v
        for k, v in event.headers.items()
    }
    headers.setdefault("content-type", "application/json")
    return headers, event.body


def structured(event: OutgoingEvent) -> bytes:
    document: dict[str, Any] = {
        k.removeprefix("ce_"): v for k, v in event.headers.items() if k.startswith("ce_")
    }
    document["datacontenttype"] = "application/json"
    document["data"] = json.loads(event.body)
    return json.dumps(document).encode()


async def _inbox_until(
    http: httpx.Client, auth: httpx.BasicAuth, wanted: Any, timeout: float = 45
) -> tuple[list[dict[str, Any]], str]:
    """Read the HTTP inbox page by page from its start until ``wanted(events)`` is true."""
    events: list[dict[str, Any]] = []
    cursor = None
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        params: dict[str, str] = {"cursor": cursor} if cursor else {}
        response = await asyncio.to_thread(http.get, "/v1/inbox", params=params, auth=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        events.extend(page["events"])
        cursor = page["cursor"]
        if wanted(events):
            return events, cursor
        assert asyncio.get_running_loop().time() < deadline, f"not in the inbox: {events[-5:]}"
        await asyncio.sleep(0.5)


async def test_an_http_only_agency_submits_a_case_with_one_post_and_reads_its_acknowledgement(
    gateway: RunningService,
    kafka: KafkaConnection,
    http: httpx.Client,
    database_urls: dict[str, str],
) -> None:
    agency, auth = await _http_agency(kafka, "http-ngo")
    event = f.submission_event(f.submission(agency))
    headers, body = binary(event)
    response = await asyncio.to_thread(
        http.post, "/v1/submissions", headers=headers, content=body, auth=auth
    )
    assert response.status_code == 202, response.text
    assert response.json() == {
        "id": event.event_id,
        "type": ev.CASE_SUBMITTED,
        "topic": f"agency.{agency}.submissions.v1",
    }

    def acknowledged(events: list[dict[str, Any]]) -> bool:
        return any(
            e["type"] == ev.INBOX_SUBMISSION_ACCEPTED
            and e["data"]["submission_id"] == event.event_id
            for e in events
        )

    events, cursor = await _inbox_until(http, auth, acknowledged)
    [ack] = [e for e in events if e["type"] == ev.INBOX_SUBMISSION_ACCEPTED]
    assert ack["data"]["outcome"] == "registered" and ack["data"]["agency_id"] == agency
    assert ack["specversion"] == "1.0" and ack["correlationid"] == event.event_id

    # Retried (the same ce_id, structured mode this time): accepted, and nothing new is made.
    again = await asyncio.to_thread(
        http.post,
        "/v1/submissions",
        headers={"content-type": "application/cloudevents+json"},
        content=structured(event),
        auth=auth,
    )
    assert again.status_code == 202, again.text
    conn = await asyncpg.connect(database_urls["intake"])
    try:
        await asyncio.sleep(3)  # long enough for intake to have read the retry
        cases = await conn.fetchval("SELECT count(*) FROM cases WHERE agency_id = $1", agency)
    finally:
        await conn.close()
    assert cases == 1
    # The cursor goes on from where the reader was: nothing it read comes again.
    page = (
        await asyncio.to_thread(http.get, "/v1/inbox", params={"cursor": cursor}, auth=auth)
    ).json()
    assert all(e["id"] != ack["id"] for e in page["events"])


async def test_a_bad_message_is_refused_at_once_with_its_consumers_field_errors(
    gateway: RunningService, kafka: KafkaConnection, http: httpx.Client
) -> None:
    agency, auth = await _http_agency(kafka, "http-bad")
    submission = f.submission(agency).model_dump(mode="json")
    submission["profile"]["return_country"] = "XX"
    submission["needs"][0]["urgency"] = "whenever"
    good = f.submission_event(f.submission(agency))
    headers, _ = binary(good)
    body = json.dumps(submission).encode()
    response = await asyncio.to_thread(
        http.post, "/v1/submissions", headers=headers, content=body, auth=auth
    )
    assert response.status_code == 400
    refusal = response.json()
    # Exactly what intake would have put on the inbox for the same record.
    kafka_headers = [(k, v.encode()) for k, v in good.headers.items()]
    record = f.record(good.topic, body, kafka_headers, key=submission["agency_case_ref"].encode())
    expected = read_submission(InboundEvent.from_record(record))
    assert not isinstance(expected, ev.CaseSubmission)
    assert refusal["reason"] == expected.reason  # type: ignore[union-attr]
    assert refusal["errors"] == [e.model_dump(mode="json") for e in expected.errors]  # type: ignore[union-attr]
    assert {e["field"] for e in refusal["errors"]} >= {"profile.return_country", "needs.0.urgency"}

    no_envelope = await asyncio.to_thread(
        http.post,
        "/v1/responses",
        headers={"content-type": "application/json"},
        content=b"{}",
        auth=auth,
    )
    assert no_envelope.status_code == 400
    assert no_envelope.json()["reason"] == "invalid CloudEvents envelope"
    assert {e["field"] for e in no_envelope.json()["errors"]} >= {"ce_id", "ce_type"}

    unknown = await asyncio.to_thread(
        http.post, "/v1/outbox", headers=headers, content=good.body, auth=auth
    )
    assert unknown.status_code == 422  # not one of the agency's topics
    bad_cursor = await asyncio.to_thread(http.get, "/v1/inbox", params={"cursor": "%%%"}, auth=auth)
    assert bad_cursor.status_code == 400


async def test_logins_are_the_brokers_and_a_removed_principal_is_refused_at_once(
    gateway: RunningService, kafka: KafkaConnection, http: httpx.Client
) -> None:
    agency, auth = await _http_agency(kafka, "http-gone")
    ok = await asyncio.to_thread(http.get, "/v1/inbox", auth=auth)
    assert ok.status_code == 200
    wrong = await asyncio.to_thread(
        http.get, "/v1/inbox", auth=httpx.BasicAuth(f"agency.{agency}", "not the password")
    )
    assert wrong.status_code == 401 and "www-authenticate" in wrong.headers
    operator_name = await asyncio.to_thread(
        http.get, "/v1/inbox", auth=httpx.BasicAuth("admin", "whatever")
    )
    assert operator_name.status_code == 401  # only agency principals log in here

    access = kafka_access.KafkaAccess(kafka)
    await asyncio.to_thread(access.revoke_user, agency_user(agency))
    await asyncio.to_thread(access.delete_credential, agency_user(agency))
    for _ in range(50):  # the broker's credential cache follows the controller within moments
        gone = await asyncio.to_thread(http.get, "/v1/inbox", auth=auth)
        if gone.status_code == 401:
            break
        await asyncio.sleep(0.1)
    assert gone.status_code == 401
    event = f.submission_event(f.submission(agency))
    headers, body = binary(event)
    refused = await asyncio.to_thread(
        http.post, "/v1/submissions", headers=headers, content=body, auth=auth
    )
    assert refused.status_code == 401


async def test_the_inbox_streams_as_server_sent_events(
    gateway: RunningService, kafka: KafkaConnection, http: httpx.Client
) -> None:
    agency, auth = await _http_agency(kafka, "http-sse")
    event = f.submission_event(f.submission(agency))
    headers, body = binary(event)

    async def first_event() -> dict[str, Any]:
        async with (
            httpx.AsyncClient(base_url=gateway.url(""), timeout=60) as client,
            client.stream("GET", "/v1/inbox/stream", auth=auth) as stream,
        ):
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            async for line in stream.aiter_lines():
                if line.startswith(("id:", "event:", "data:")):
                    name, _, value = line.partition(":")
                    fields[name] = value.strip()
                elif not line and "data" in fields:
                    return {**fields, "data": json.loads(fields["data"])}
        raise AssertionError("the stream ended")

    reading = asyncio.ensure_future(first_event())
    await asyncio.sleep(1)
    posted = await asyncio.to_thread(
        http.post, "/v1/submissions", headers=headers, content=body, auth=auth
    )
    assert posted.status_code == 202
    got = await asyncio.wait_for(reading, 45)
    assert got["event"] == ev.INBOX_SUBMISSION_ACCEPTED
    assert got["data"]["data"]["submission_id"] == event.event_id
    # Its id is a cursor: a page read from it starts after it.
    page = await asyncio.to_thread(http.get, "/v1/inbox", params={"cursor": got["id"]}, auth=auth)
    assert page.status_code == 200
    assert got["data"]["id"] not in {e["id"] for e in page.json()["events"]}


def test_the_openapi_document_is_served_and_lists_the_agency_api(http: httpx.Client) -> None:
    document = http.get("/docs/openapi.json").json()
    assert set(document["paths"]) >= {"/v1/{family}", "/v1/inbox", "/v1/inbox/stream"}
    page = http.get("/login")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' 'wasm-unsafe-eval'" in csp and "unsafe-inline" not in csp


def _guide_block(starting: str) -> str:
    """The shell block of docs/integrators.md §15 whose first line starts with ``starting``."""
    guide = (REPO / "docs" / "integrators.md").read_text()
    section = guide[guide.index("## 15. Without a Kafka client") : guide.index("## 16.")]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return next(b for b in blocks if b.startswith(starting))


async def test_the_guides_curl_examples_work_as_written(
    gateway: RunningService, kafka: KafkaConnection, http: httpx.Client, tmp_path: Path
) -> None:
    """§15's commands, run by the shell: only the address, the agency, the password and the
    example file's agency are this test's (and ``uuidgen``, not on every machine, is given)."""
    agency, password = await _registered(kafka, "curl-ngo")
    example = (REPO / "docs" / "examples" / "submission.json").read_text()
    submission = tmp_path / "submission.json"
    submission.write_text(example.replace('"iom-sn"', f'"{agency}"'))
    event_id = str(uuid.uuid4())
    post = (
        _guide_block("curl -sS -u")
        .replace("http://127.0.0.1:18005", gateway.url(""))
        .replace("agency.iom-sn", f"agency.{agency}")
        .replace("urn:iom-sn:crm", f"urn:{agency}:crm")
        .replace("@docs/examples/submission.json", f"@{submission}")
        .replace("$(uuidgen)", event_id)
    )
    env = {**os.environ, "PASSWORD": password}
    done = await asyncio.to_thread(
        subprocess.run, ["bash", "-c", post], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == event_id

    read = _guide_block('curl -sS -u "agency.ngo-jamm').splitlines()[0]
    read = read.replace("http://127.0.0.1:18005", gateway.url("")).replace(
        "agency.ngo-jamm", f"agency.{agency}"
    )
    for _ in range(60):
        listed = await asyncio.to_thread(
            subprocess.run, ["bash", "-c", read], capture_output=True, text=True, env=env
        )
        assert listed.returncode == 0, listed.stderr
        if ev.INBOX_SUBMISSION_ACCEPTED in listed.stdout:
            break
        await asyncio.sleep(0.5)
    assert f'"{ev.INBOX_SUBMISSION_ACCEPTED}"' in listed.stdout


async def test_the_gateways_metrics_are_on_their_own_port_and_name_no_one(
    http: httpx.Client, kafka: KafkaConnection
) -> None:
    """/metrics is not on the agencies' port; on its own port requests are counted by route
    template and logins by outcome, and no agency, user name or id appears."""
    assert (await asyncio.to_thread(http.get, "/metrics")).status_code == 404
    agency_id, auth = await _http_agency(kafka, "ngo-metrics")
    wrong = httpx.BasicAuth(f"agency.{agency_id}", "not-the-password")
    assert (await asyncio.to_thread(http.get, "/v1/inbox", auth=wrong)).status_code == 401
    assert (await asyncio.to_thread(http.get, "/v1/inbox", auth=auth)).status_code == 200
    referral_id = str(uuid.uuid4())
    await asyncio.to_thread(http.get, f"/referrals/{referral_id}")  # any answer: a template

    port = int(os.environ["GATEWAY_METRICS_PORT"])
    async with httpx.AsyncClient(timeout=10) as scraper:
        text = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def total(name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)

    assert total("refex_gateway_requests_total", route="/v1/inbox", status="401") >= 1
    assert total("refex_gateway_requests_total", route="/v1/inbox", status="200") >= 1
    assert total("refex_gateway_logins_total", outcome="refused") >= 1
    assert total("refex_gateway_logins_total", outcome="accepted") >= 1
    assert total("refex_gateway_request_duration_seconds_count", route="/v1/inbox") >= 2
    assert total("process_resident_memory_bytes") > 0
    for secret in (agency_id, referral_id, "not-the-password"):
        assert secret not in text
