"""The gateway seals the personal block for intake (decision 33), end to end: intake requires
sealed blocks (INTAKE_REQUIRE_SEALED_PERSONAL), and still registers a case typed into the
console's form and one an HTTP-only agency posted in clear, because the gateway sealed each for
intake's current key before publishing. What the agency's submissions topic holds is read back
raw: no marker of the personal data, a box for intake's current key that opens (with the test
environment's intake key) to what was typed. A block the agency sealed itself goes on as it
came; GET /v1/intake-keys serves intake's current key.

The console is driven by its form POSTs, without a browser: sealing is the server's, so the
form works without JavaScript, as every console form does."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from nacl.public import PrivateKey, SealedBox

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.keys import key_from_environment
from tests import factories as f
from tests.e2e.conftest import RunningService
from tests.e2e.directory import eventually
from tests.e2e.kafka_helpers import collect, data_of, headers_of, read_everything
from tests.e2e.personal_data import MARK, PERSONAL, leaks_in
from tests.e2e.test_console_browser import User, _agency_with_login
from tests.e2e.test_gateway import binary
from tests.e2e.test_intake import _known_to_intake

pytestmark = pytest.mark.e2e

# Trimming off: the test reads back what the gateway published (decision 32's trimming would
# delete it within seconds of intake applying it; test_sealed_submissions covers that).
SERVICE_ENV = {"INTAKE_REQUIRE_SEALED_PERSONAL": "true", "INTAKE_TRIM_SUBMISSIONS": "false"}
# The marked personal data, as a caseworker types it into the console's case form.
TYPED = {
    "given_name": PERSONAL["given_name"],
    "family_name": PERSONAL["family_name"],
    "phone": "+221 77 123 98 76",
    "email": f"{MARK.lower()}.mail@example.org",
}


@pytest.fixture(scope="module")
def http(gateway: RunningService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url(""), timeout=30) as client:
        yield client


def _intake_private_key() -> PrivateKey:
    return PrivateKey(key_from_environment("INTAKE_SUBMISSION_KEY"))


async def _key_published(kafka: KafkaConnection, key: PrivateKey) -> str:
    """The key_sha256 of intake's current key, once intake.keys.v1 carries it (intake publishes
    it through its outbox at start: the gateway must not find the topic empty)."""
    public = base64.b64encode(bytes(key.public_key)).decode()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        current = [
            data_of(r)
            for r in await read_everything(kafka, [topics.INTAKE_KEYS])
            if headers_of(r).get("ce_type") == ev.SUBMISSION_KEY_PUBLISHED
            and data_of(r)["public_key"] == public
            and data_of(r)["status"] == "current"
        ]
        if current:
            return str(current[-1]["key_sha256"])
        assert loop.time() < deadline, "intake never published its current key"
        await asyncio.sleep(0.5)


def _token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "the page has no form token"
    return found.group(1)


def _console_case(http: httpx.Client, user: User, ref: str) -> httpx.Response:
    """Log in to the console as ``user`` and submit its new-case form, as a browser without
    JavaScript would (the same fields, the same form token)."""
    login = http.get("/login")
    logged_in = http.post(
        "/login",
        data={
            "login": user.login,
            "password": user.password,
            "form_token": _token(login.text),
            "next": "/cases/new",
        },
        follow_redirects=True,
    )
    assert logged_in.status_code == 200 and "/cases/new" in str(logged_in.url), logged_in.text
    form = {
        **TYPED,
        "agency_case_ref": ref,
        "nationality": "SN",
        "return_country": "SN",
        "return_area": "SN0101",
        "return_date": date.today().isoformat(),
        "sex": "female",
        "age_band": "25-34",
        "return_type": "voluntary_assisted",
        "need_1": "psychosocial.counselling",
        "consent_method": "verbal",
        "purposes": ["referral", "follow_up"],
        "form_token": _token(logged_in.text),
    }
    return http.post("/cases/new", data=form, follow_redirects=False)


def _personal_of(value: bytes) -> Any:
    return json.loads(value)["personal"]


async def test_a_platform_requiring_sealed_blocks_registers_the_gateway_s_cases(
    services: dict[str, RunningService],
    gateway: RunningService,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    http: httpx.Client,
) -> None:
    intake_key = _intake_private_key()
    sha = await _key_published(kafka, intake_key)
    caseworker = await _agency_with_login(kafka, "iom-seal", user="fatou")
    agency = caseworker.agency_id
    await _known_to_intake(database_urls, agency)
    system = await _agency_with_login(kafka, "iom-seal-sys")  # another agency, its own login
    await _known_to_intake(database_urls, system.agency_id)

    # intake's key, over HTTP, for agencies that seal themselves
    keys = await asyncio.to_thread(
        http.get, "/v1/intake-keys", auth=(system.login, system.password)
    )
    assert keys.status_code == 200, keys.text
    assert keys.json()["current"]["key_sha256"] == sha
    assert base64.b64decode(keys.json()["current"]["public_key"]) == bytes(intake_key.public_key)

    # 1. a case typed into the console
    typed_ref = f.unique("FORM")
    posted = await asyncio.to_thread(_console_case, http, caseworker, typed_ref)
    assert posted.status_code == 303, posted.text
    assert posted.headers["location"] == f"/cases?sent={typed_ref}"

    # 2. a case an HTTP-only system posts in clear, and 3. one it sealed itself
    clear = f.submission_event(f.submission(system.agency_id, personal=PERSONAL))
    own_box = f.sealed_personal(PERSONAL, bytes(intake_key.public_key))
    sealed = f.submission_event(f.submission(system.agency_id, personal=own_box))
    for event in (clear, sealed):
        headers, body = binary(event)
        answer = await asyncio.to_thread(
            http.post,
            "/v1/submissions",
            headers=headers,
            content=body,
            auth=(system.login, system.password),
        )
        assert answer.status_code == 202, answer.text

    # Intake, which refuses every clear block here, registered all three. (The caseworker's
    # agency sent nothing else: its one answer is the typed case's, accepted or rejected.)
    for agency_id, sent in ((agency, None), (system.agency_id, clear), (system.agency_id, sealed)):
        [answer] = await collect(
            kafka,
            topics.agency_inbox(agency_id),
            lambda r, sent=sent: (
                headers_of(r).get("ce_type")
                in (ev.INBOX_SUBMISSION_ACCEPTED, ev.INBOX_SUBMISSION_REJECTED)
                and (sent is None or headers_of(r).get("ce_subject") == sent.event_id)
            ),
        )
        assert headers_of(answer)["ce_type"] == ev.INBOX_SUBMISSION_ACCEPTED, data_of(answer)
        assert data_of(answer)["outcome"] == "registered"
        if sent is None:
            assert data_of(answer)["agency_case_ref"] == typed_ref
    registered = "SELECT count(*) FROM cases WHERE agency_id = ANY($1::text[])"
    assert (
        await eventually(registered, [agency, system.agency_id], dsn=database_urls["intake"]) == 3
    )

    # What the broker holds: no marker of the personal data anywhere in the records, and each
    # block a box for intake's current key that opens to what was typed or sent.
    [typed] = await read_everything(kafka, [topics.AGENCY_SUBMISSIONS.name(agency)])
    by_system = {
        headers_of(r)["ce_id"]: r
        for r in await read_everything(kafka, [topics.AGENCY_SUBMISSIONS.name(system.agency_id)])
    }
    assert set(by_system) == {clear.event_id, sealed.event_id}
    for record in (typed, *by_system.values()):
        raw = b"\n".join([record.key or b"", record.value or b"", *(v for _, v in record.headers)])
        assert leaks_in(raw) == [], record.topic
        assert set(_personal_of(record.value)) == {"sealed_box", "key_sha256"}
        assert _personal_of(record.value)["key_sha256"] == sha

    def opened(value: bytes) -> Any:
        box = base64.b64decode(_personal_of(value)["sealed_box"])
        return json.loads(SealedBox(intake_key).decrypt(box))

    assert opened(typed.value) == {
        "given_name": TYPED["given_name"],
        "family_name": TYPED["family_name"],
        "contacts": [
            {"kind": "phone", "value": TYPED["phone"]},
            {"kind": "email", "value": TYPED["email"]},
        ],
    }
    assert opened(by_system[clear.event_id].value) == json.loads(clear.body)["personal"]
    # The system's own box went on untouched.
    assert _personal_of(by_system[sealed.event_id].value) == own_box
    # Nor did the gateway log any of it.
    assert leaks_in(gateway.log().encode()) == []
