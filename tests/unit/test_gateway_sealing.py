"""The gateway seals a submission's personal block for intake (decision 33): intake's keys as
intake.keys.v1 holds them, the clear block replaced by a box only intake's key opens, the copy
of the keys the process keeps (read again when old or when an inbox says they changed), and
what the console's form and the HTTP API publish with it. No broker: a fake reads the topic."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nacl.public import PrivateKey, SealedBox
from pydantic import SecretStr

from services.gateway.agency_kafka import KafkaRefused, ProducerPool
from services.gateway.app import gateway_app
from services.gateway.auth import Authenticated, Authenticator
from services.gateway.console import case_form
from services.gateway.console.publishing import KEYS_UNAVAILABLE, ConsolePublisher
from services.gateway.inbox import InboxMessage
from services.gateway.ingress import Checked, Family, KafkaRecord, check
from services.gateway.intake_keys import (
    NO_KEY_MAX_AGE_S,
    IntakeKeys,
    KeysUnavailable,
    sealed_for_intake,
)
from services.gateway.principals import Principal
from services.gateway.sealing import KeyRecord, current_key, keys_on_topic, sealed_value
from services.gateway.sessions import Session
from services.gateway.settings import GatewaySettings
from shared.contracts import events as ev
from shared.kafka.agency_input import Refusal
from shared.kafka.connection import KafkaConnection
from tests import factories as f

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx: it works as is
    from starlette.testclient import TestClient

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONNECTION = KafkaConnection("127.0.0.1:1").as_user("agency.iom-x.fatou", "pw")
PERSONAL = {
    "given_name": "Zqmark Awa",
    "family_name": "Ndiaye",
    "contacts": [{"kind": "phone", "value": "+221 77 123 98 76"}],
}


def _key(private: PrivateKey, status: str = "current", at: datetime = T0) -> ev.SubmissionKey:
    public = bytes(private.public_key)
    return ev.SubmissionKey(
        key_sha256=hashlib.sha256(public).hexdigest(),
        public_key=base64.b64encode(public).decode(),
        status=ev.SubmissionKeyStatus(status),
        published_at=at,
    )


def _record(key: ev.SubmissionKey | None, sha: str = "", ce_type: str = "") -> KeyRecord:
    if key is None:  # a tombstone
        return KeyRecord(sha.encode(), None, None)
    return KeyRecord(
        key.key_sha256.encode(),
        ce_type or ev.SUBMISSION_KEY_PUBLISHED,
        key.model_dump_json().encode(),
    )


def _opened(block: dict[str, Any], private: PrivateKey) -> Any:
    return json.loads(SealedBox(private).decrypt(base64.b64decode(block["sealed_box"])))


class _Topic:
    """intake.keys.v1 as the fake reads it: what it holds, how often it was read, and whether
    the broker answers."""

    def __init__(self, *keys: ev.SubmissionKey) -> None:
        self.keys = list(keys)
        self.reads = 0
        self.refuse = False

    async def fetch(self, connection: KafkaConnection) -> list[ev.SubmissionKey]:
        self.reads += 1
        await asyncio.sleep(0)  # a real read yields: concurrent requests overlap here
        if self.refuse:
            raise KafkaRefused("KafkaConnectionError")
        return list(self.keys)


# ----- what intake.keys.v1 says -----


def test_the_topic_gives_one_key_per_sha_the_current_one_first() -> None:
    old, new, gone, forged = (PrivateKey.generate() for _ in range(4))
    bad_sha = _key(forged).model_copy(update={"key_sha256": "0" * 64})
    records = [
        _record(_key(gone, "current", T0 - timedelta(days=90))),
        _record(_key(old, "current", T0 - timedelta(days=30))),
        _record(_key(gone, "retired", T0 - timedelta(days=29))),
        _record(_key(old, "previous", T0)),  # the rotation: the old key turns previous...
        _record(_key(new, "current", T0)),  # ...and a new current key comes
        _record(bad_sha),  # its sha is not its key's: skipped
        _record(_key(forged), ce_type=ev.INBOX_SUBMISSION_ACCEPTED),  # not a key record
        KeyRecord(b"x", ev.SUBMISSION_KEY_PUBLISHED, b"{not json"),
    ]
    keys = keys_on_topic(records)
    assert [(k.key_sha256, k.status.value) for k in keys] == [
        (_key(new).key_sha256, "current"),
        (_key(old).key_sha256, "previous"),
        (_key(gone).key_sha256, "retired"),
    ]
    assert current_key(keys) == _key(new, "current", T0)
    # A tombstone takes a key off the topic.
    assert current_key(keys_on_topic([*records, _record(None, _key(new).key_sha256)])) is None
    assert current_key([]) is None
    assert current_key([_key(gone, "retired")]) is None


# ----- sealing a message -----


def test_a_clear_block_is_sealed_for_the_key_and_the_rest_of_the_message_kept() -> None:
    private = PrivateKey.generate()
    key = _key(private)
    body = f.submission("iom-x", personal=PERSONAL).model_dump(mode="json")
    value = json.dumps(body).encode()
    sealed = sealed_value(ev.CASE_SUBMITTED, value, key)
    assert sealed is not None and b"Zqmark" not in sealed and b"98 76" not in sealed
    document = json.loads(sealed)
    assert list(document) == list(body)  # the same members, in the same order
    assert {k: v for k, v in document.items() if k != "personal"} == {
        k: v for k, v in body.items() if k != "personal"
    }
    assert document["personal"]["key_sha256"] == key.key_sha256
    assert _opened(document["personal"], private) == body["personal"]
    # The message is still valid for intake, now with the sealed form of the block.
    parsed = ev.CaseSubmission.model_validate_json(sealed)
    assert isinstance(parsed.personal, ev.SealedPersonal)

    # Nothing to seal: a block its sender sealed, an update without one, another type.
    assert sealed_value(ev.CASE_SUBMITTED, sealed, key) is None
    update = {"agency_id": "iom-x", "agency_case_ref": "C-1", "needs": f.needs()}
    assert sealed_value(ev.CASE_UPDATE_SUBMITTED, json.dumps(update).encode(), key) is None
    assert sealed_value(ev.CONSENT_WITHDRAWN, value, key) is None
    updated = {**update, "personal": PERSONAL}
    sealed_update = sealed_value(ev.CASE_UPDATE_SUBMITTED, json.dumps(updated).encode(), key)
    assert sealed_update is not None
    assert _opened(json.loads(sealed_update)["personal"], private) == PERSONAL


# ----- the process's copy of the keys -----


async def test_the_keys_are_read_once_then_again_when_old_or_said_to_have_changed() -> None:
    clock = [100.0]
    first, second = PrivateKey.generate(), PrivateKey.generate()
    topic = _Topic(_key(first))
    keys = IntakeKeys(topic.fetch, max_age_s=300, clock=lambda: clock[0])
    # Requests arriving together read the topic once.
    found = await asyncio.gather(*(keys.current(CONNECTION) for _ in range(5)))
    assert topic.reads == 1 and {k.key_sha256 for k in found if k} == {_key(first).key_sha256}
    clock[0] += 299
    await keys.current(CONNECTION)
    assert topic.reads == 1  # still fresh
    topic.keys = [_key(second), _key(first, "previous")]
    clock[0] += 2
    assert await keys.current(CONNECTION) == _key(second)  # old: read again
    assert topic.reads == 2

    def rejected(error: str | None) -> InboxMessage:
        data = {"submission_id": "s1", "reason": "r", "errors": [], "error": error}
        return InboxMessage(0, 1, {"type": ev.INBOX_SUBMISSION_REJECTED}, data)

    # Rejections unrelated to the keys change nothing...
    for message in (
        rejected(None),
        rejected("sealed_box_unopenable"),
        InboxMessage(0, 2, {"type": ev.INBOX_SUBMISSION_ACCEPTED}, {"error": "sealed_key_unknown"}),
    ):
        keys.saw(message)
        await keys.current(CONNECTION)
    assert topic.reads == 2
    # ...one for a key intake no longer holds, or a clear block it now refuses, does.
    for code, reads in (("sealed_key_unknown", 3), ("personal_not_sealed", 4)):
        keys.saw(rejected(code))
        await keys.current(CONNECTION)
        assert topic.reads == reads, code


async def test_a_topic_without_a_current_key_is_read_again_sooner() -> None:
    clock = [0.0]
    topic = _Topic()  # intake's first start: its key is still on its way
    keys = IntakeKeys(topic.fetch, max_age_s=300, clock=lambda: clock[0])
    assert await keys.current(CONNECTION) is None
    clock[0] = NO_KEY_MAX_AGE_S - 1
    assert await keys.current(CONNECTION) is None and topic.reads == 1
    topic.keys = [_key(PrivateKey.generate())]
    clock[0] = NO_KEY_MAX_AGE_S + 1
    assert await keys.current(CONNECTION) == topic.keys[0] and topic.reads == 2


async def test_an_unreadable_topic_falls_back_on_the_copy_and_without_one_publishes_nothing() -> (
    None
):
    clock = [0.0]
    key = _key(PrivateKey.generate())
    topic = _Topic(key)
    keys = IntakeKeys(topic.fetch, max_age_s=10, clock=lambda: clock[0])
    topic.refuse = True
    with pytest.raises(KeysUnavailable):
        await keys.current(CONNECTION)
    topic.refuse = False
    assert await keys.current(CONNECTION) == key
    topic.refuse, clock[0] = True, 60.0
    assert await keys.current(CONNECTION) == key  # stale, but a rotation keeps it opening
    topic.refuse = False
    assert await keys.current(CONNECTION) == key and topic.reads == 4


async def test_only_a_clear_block_reads_the_keys() -> None:
    topic = _Topic()
    topic.refuse = True  # any read would fail: none is made
    keys = IntakeKeys(topic.fetch, max_age_s=10)
    needs = {"agency_id": "iom-x", "agency_case_ref": "C-1", "needs": f.needs()}
    sealed_by_sender = f.submission(
        "iom-x", personal=f.sealed_personal(PERSONAL, bytes(PrivateKey.generate().public_key))
    )
    for ce_type, data in (
        (ev.CASE_UPDATE_SUBMITTED, needs),
        (ev.CASE_SUBMITTED, sealed_by_sender.model_dump(mode="json")),
    ):
        checked = _checked(ce_type, data)
        assert await sealed_for_intake(checked, Family.SUBMISSIONS, "iom-x", CONNECTION, keys) is (
            checked
        )
    assert topic.reads == 0


def _checked(ce_type: str, data: dict[str, Any]) -> Checked:
    event = f.submission_event(f.submission("iom-x"))
    headers = [(k, v.encode()) for k, v in event.headers.items() if k != "ce_type"]
    checked = check(
        Family.SUBMISSIONS,
        "iom-x",
        [*headers, ("ce_type", ce_type.encode())],
        json.dumps(data).encode(),
    )
    assert isinstance(checked, Checked), checked
    return checked


# ----- the console's case form -----


class _Producers:
    def __init__(self) -> None:
        self.records: list[KafkaRecord] = []

    async def publish(self, connection: object, record: KafkaRecord) -> None:
        self.records.append(record)


FORM = {
    "agency_case_ref": "FORM-1",
    "given_name": "Zqmark Fatima",
    "family_name": "Ba",
    "phone": "+221770009988",
    "sex": "female",
    "age_band": "25-34",
    "nationality": "SN",
    "return_country": "SN",
    "return_area": "SN0101",
    "return_date": "2026-11-20",
    "return_type": "voluntary_assisted",
    "need_1": "psychosocial.counselling",
    "consent_method": "verbal",
}


async def _submit_form(form: dict[str, str], topic: _Topic) -> tuple[Refusal | None, list[Any]]:
    producers = _Producers()
    publisher = ConsolePublisher(producers, IntakeKeys(topic.fetch, 60))  # type: ignore[arg-type]
    session = Session("sid", Principal("iom-x", "fatou"), CONNECTION, 0.0, 0.0)
    data = case_form.case_submission("iom-x", form, ["referral"], T0)
    refused = await publisher.publish(session, Family.SUBMISSIONS, ev.CASE_SUBMITTED, data)
    return refused, producers.records


async def test_the_console_publishes_a_typed_case_with_its_personal_block_sealed() -> None:
    private = PrivateKey.generate()
    refused, [record] = await _submit_form(FORM, _Topic(_key(private)))
    assert refused is None and b"Zqmark" not in record.value and b"9988" not in record.value
    personal = json.loads(record.value)["personal"]
    assert _opened(personal, private) == {
        "given_name": "Zqmark Fatima",
        "family_name": "Ba",
        "contacts": [{"kind": "phone", "value": "+221770009988"}],
    }
    # The rest of the record is what the agency's own system would have written.
    assert record.topic == "agency.iom-x.submissions.v1" and record.key == b"FORM-1"
    assert dict(record.headers)["ce_type"] == ev.CASE_SUBMITTED.encode()


async def test_the_console_checks_the_block_in_clear_and_never_sends_it_so() -> None:
    topic = _Topic(_key(PrivateKey.generate()))
    # A mistake in the block is named by its field, before anything is sealed.
    refused, records = await _submit_form({**FORM, "given_name": ""}, topic)
    assert isinstance(refused, Refusal) and records == []
    assert [e.field for e in refused.errors] == ["personal.given_name"]
    # Intake's keys unreadable: nothing is published, in clear or otherwise.
    down = _Topic()
    down.refuse = True
    refused, records = await _submit_form(FORM, down)
    assert isinstance(refused, Refusal) and refused.reason == KEYS_UNAVAILABLE
    assert records == []
    # Intake publishes no key: it opens no box and requires none, so the block goes as typed.
    refused, [record] = await _submit_form(FORM, _Topic())
    assert refused is None and json.loads(record.value)["personal"]["given_name"] == "Zqmark Fatima"


# ----- the HTTP API -----


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> tuple[TestClient, _Topic, _Producers, PrivateKey]:
    """The gateway's app with a broker that accepts the login, records what is published and
    holds intake.keys.v1 as the fake says."""
    private = PrivateKey.generate()
    topic, producers = _Topic(_key(private), _key(PrivateKey.generate(), "retired")), _Producers()

    async def accepted(self: Authenticator, login: str, password: str) -> Authenticated:
        return Authenticated(Principal("iom-x", None), CONNECTION)

    monkeypatch.setattr(Authenticator, "authenticate", accepted)
    monkeypatch.setattr(ProducerPool, "publish", lambda self, c, r: producers.publish(c, r))
    monkeypatch.setattr("services.gateway.app.read_intake_keys", topic.fetch)
    app = gateway_app(GatewaySettings(session_key=SecretStr("unit-test-only")))
    return TestClient(app, base_url="http://gateway.test"), topic, producers, private


def _post(client: TestClient, data: dict[str, Any]) -> Any:
    event = f.submission_event(f.submission("iom-x"))
    headers = {"ce-" + k.removeprefix("ce_"): v for k, v in event.headers.items()}
    headers["content-type"] = "application/json"
    return client.post(
        "/v1/submissions", headers=headers, content=json.dumps(data), auth=("agency.iom-x", "pw")
    )


def test_the_api_serves_intake_s_keys(
    api: tuple[TestClient, _Topic, _Producers, PrivateKey],
) -> None:
    client, topic, _, private = api
    answer = client.get("/v1/intake-keys", auth=("agency.iom-x", "pw"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["current"]["key_sha256"] == _key(private).key_sha256
    assert base64.b64decode(body["current"]["public_key"]) == bytes(private.public_key)
    assert [k["status"] for k in body["keys"]] == ["current", "retired"]
    client.get("/v1/intake-keys", auth=("agency.iom-x", "pw"))
    assert topic.reads == 1  # the process's copy
    assert client.get("/v1/intake-keys").status_code == 401


def test_the_api_seals_a_clear_block_and_passes_a_sealed_one_as_sent(
    api: tuple[TestClient, _Topic, _Producers, PrivateKey],
) -> None:
    client, _, producers, private = api
    clear = f.submission("iom-x", personal=PERSONAL).model_dump(mode="json")
    assert _post(client, clear).status_code == 202
    [record] = producers.records
    assert b"Zqmark" not in record.value
    assert _opened(json.loads(record.value)["personal"], private) == clear["personal"]

    theirs = f.sealed_personal(PERSONAL, bytes(private.public_key))
    assert _post(client, {**clear, "personal": theirs}).status_code == 202
    assert json.loads(producers.records[1].value)["personal"] == theirs  # untouched

    # A mistake in the clear block: the 400 names its field, nothing is published.
    refused = _post(client, {**clear, "personal": {**PERSONAL, "given_name": ""}})
    assert refused.status_code == 400
    assert [e["field"] for e in refused.json()["errors"]] == ["personal.given_name"]
    assert "Zqmark" not in refused.text
    assert len(producers.records) == 2


def test_the_api_publishes_nothing_in_clear_when_the_keys_cannot_be_read(
    api: tuple[TestClient, _Topic, _Producers, PrivateKey],
) -> None:
    client, topic, producers, _ = api
    topic.refuse = True
    answer = _post(client, f.submission("iom-x", personal=PERSONAL).model_dump(mode="json"))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert producers.records == []
    assert client.get("/v1/intake-keys", auth=("agency.iom-x", "pw")).status_code == 503
    # A message without a clear block does not depend on the keys.
    listing = f.listing("iom-x")
    event = f.listing_event(listing)
    headers = {"ce-" + k.removeprefix("ce_"): v for k, v in event.headers.items()}
    headers["content-type"] = "application/json"
    posted = client.post(
        "/v1/listings", headers=headers, content=event.body, auth=("agency.iom-x", "pw")
    )
    assert posted.status_code == 202, posted.text
