"""Hypothesis strategies of malformed Kafka records for every inbound topic (tests of hardened
inputs: tests/unit/test_fuzz_parsing.py on the parsers, tests/e2e/test_fuzz_inbound.py on the
running services).

Every generated record carries at least one defect that makes it unacceptable by the documented
contract (docs/integrators.md, shared/contracts), whatever else it carries:

- body: random bytes, not UTF-8, JSON in UTF-16/32, broken JSON, JSON of the wrong shape, nesting
  too deep, an integer of too many digits, a field of the wrong type / out of range / too long /
  with control characters or unpaired surrogates, an unknown field, a field missing;
- size: over the topic's ``max_message_bytes``, which is also the broker's limit: such a record
  reaches a service only compressed (padding that compresses well; the e2e producer uses gzip),
  and the service must refuse it after decompression;
- envelope: a required CloudEvents header missing, any attribute garbled (not UTF-8, too long,
  control characters, wrong spec version, bad traceparent or time, not JSON content type);
- type: a ``ce_type`` of another topic, unknown, or garbage;
- key: on topics keyed by the record's identity, a key that is not that identity (or none);
- sender: on an agency's own topic, a header or body claiming another agency;
- tombstone: on a topic that takes none, or with a key that names nothing valid.

Records may also carry harmless noise (extra headers of any bytes, null header values).
Schema-level defects are kept only if the contract model indeed refuses the mutated body (the
models define what "invalid" is; the services are what is tested).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.topics import AGENCY_ID_PATTERN, CleanupPolicy, TopicSpec
from tests import factories as f
from tests.raw_kafka import RawHeaderName

PAST = "2026-11-01T10:00:00Z"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")  # W3C
IDENTIFIER = re.compile(r"[A-Za-z0-9._:-]{1,100}")
REQUIRED_ATTRIBUTES = ("ce_id", "ce_source", "ce_type", "ce_specversion")
# Room the broker needs around a value in a one-record batch (batch and record overhead).
BATCH_OVERHEAD = 256


@dataclass(frozen=True)
class Draft:
    """A record being built: a valid one first, then made invalid."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]
    defects: tuple[str, ...] = ()
    noise: tuple[tuple[str, bytes | None], ...] = ()

    def with_defect(self, name: str, **changes: Any) -> Draft:
        return Draft(
            **{
                "key": self.key,
                "value": self.value,
                "headers": self.headers,
                "noise": self.noise,
                **changes,
                "defects": (*self.defects, name),
            }
        )


@dataclass(frozen=True)
class Malformed:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    defects: tuple[str, ...]

    @property
    def ce_id(self) -> str | None:
        raw = dict(self.headers).get("ce_id")
        return raw.decode("utf-8", "replace") if raw is not None else None

    @property
    def size(self) -> int:
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(k.encode()) + len(v or b"") for k, v in self.headers)
        )


@dataclass(frozen=True)
class Base:
    """A valid message of one type: its body as JSON data and its key."""

    ce_type: str
    body: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Target:
    """One inbound topic to fuzz, with valid messages of each type it carries."""

    topic: str
    spec: TopicSpec
    sender: str | None  # the agency of the topic (None: a fixed topic)
    bases: tuple[Base, ...]
    key_field: str | None  # the body field the key must equal (None: the key is not checked)
    body_agency_field: str | None = None  # the body field that names the sender
    # Also header names that are not UTF-8 (published with tests.raw_kafka; aiokafka cannot
    # read them back, so only the running services' tests can use them).
    raw_header_names: bool = False

    @property
    def broker_limit(self) -> int:
        """What the broker takes of an uncompressed record batch on this topic."""
        return int(self.spec.config()["max.message.bytes"])


# ----- valid messages of every inbound type -----


def _ids(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def bases_for(topic_spec: TopicSpec, agency: str) -> tuple[Base, ...]:
    """A valid body of each type the topic carries; every agency named in them is ``agency``."""
    ref, case, referral = _ids("R"), _ids("case"), _ids("ref")
    consent = f.consent()
    # Areas no other test uses: a valid case or listing of these must not meet theirs.
    area = f.unique_area()
    profile = f.profile(return_area=area)
    case_body = {
        "case_id": case,
        "submitting_agency_id": agency,
        "profile": profile,
        "needs": f.needs(),
        "consent": consent,
    }
    owner = {"agency_id": agency, "agency_case_ref": ref}
    by_type: dict[str, tuple[dict[str, Any], str]] = {
        ev.CASE_SUBMITTED: (
            f.submission(agency, agency_case_ref=ref, profile=profile).model_dump(
                mode="json", exclude_none=True
            ),
            ref,
        ),
        ev.CASE_UPDATE_SUBMITTED: ({**owner, "needs": f.needs()}, ref),
        ev.CONSENT_WITHDRAWN: ({**owner, "withdrawn_at": PAST}, ref),
        ev.ERASURE_REQUESTED: (
            {**owner, "requested_at": PAST, "basis": "data_subject_request"},
            ref,
        ),
        ev.CASE_CLOSURE_SUBMITTED: ({**owner, "closed_at": PAST, "reason": "completed"}, ref),
        ev.SERVICE_LISTED: (
            (
                listing := f.listing(agency, service_areas=[area]).model_dump(
                    mode="json", exclude_none=True
                )
            ),
            listing["service_id"],
        ),
        ev.RESPONSE_SUBMITTED: (
            {
                "referral_id": referral,
                "agency_id": agency,
                "action": "accept",
                "responded_at": PAST,
            },
            case,
        ),
        ev.CASE_REGISTERED: (case_body, case),
        ev.CASE_UPDATED: (case_body, case),
        ev.CONSENT_CHANGED: ({"case_id": case, "consent": consent}, case),
        ev.CASE_CLOSED: ({"case_id": case, "reason": "completed", "closed_at": PAST}, case),
        ev.CASE_ERASED: (
            {
                "case_id": case,
                "erased_at": PAST,
                "submitting_agency_id": agency,
                "agency_case_ref": ref,
            },
            case,
        ),
        ev.SUBMISSION_REJECTED: (
            {
                "submission_id": _ids("sub"),
                "agency_id": agency,
                "topic": topics.AGENCY_SUBMISSIONS.name(agency),
                "reason": "body does not match the CaseSubmission contract",
                "errors": [{"field": "needs", "message": "Field required"}],
            },
            agency,
        ),
        ev.DISCLOSURE_SEALED: (
            {
                "disclosure_id": _ids("disc"),
                "referral_id": referral,
                "case_id": case,
                "recipient_agency_id": agency,
                "sealed_box": "c2VhbGVk",
                "recipient_key_sha256": "ab" * 32,
                "consent_recorded_at": PAST,
            },
            case,
        ),
        ev.DISCLOSURE_REFUSED: (
            {
                "disclosure_id": _ids("disc"),
                "referral_id": referral,
                "case_id": case,
                "recipient_agency_id": agency,
                "reason": "no_public_key",
            },
            case,
        ),
        ev.AGENCY_REGISTERED: (
            {"agency_id": agency, "name": "Fuzz", "type": "ngo", "countries": ["SN"]},
            agency,
        ),
        ev.REFERRAL_REQUESTED: (
            {
                "referral_id": referral,
                "case_id": case,
                "need_id": "n1",
                "category": "psychosocial.counselling",
                "urgency": "normal",
                "referring_agency_id": agency,
                "recipient_agency_id": agency,
                "service_id": _ids("svc"),
                "explanation": {"matched": ["category"], "score": 0.5, "components": {"a": 1.0}},
            },
            case,
        ),
        ev.REFERRAL_TRANSITIONED: (
            {
                "referral_id": referral,
                "case_id": case,
                "need_id": "n1",
                "from_state": "requested",
                "to_state": "accepted",
                "attempt": 1,
                "referring_agency_id": agency,
                "recipient_agency_id": agency,
                "occurred_at": PAST,
            },
            case,
        ),
        ev.NEED_UNMATCHED: (
            {
                "case_id": case,
                "need_id": "n1",
                "category": "psychosocial.counselling",
                "referring_agency_id": agency,
                "reason": "no_listing",
            },
            case,
        ),
        ev.RESPONSE_REFUSED: (
            {"response_id": _ids("resp"), "agency_id": agency, "error": "unknown_referral"},
            agency,
        ),
        ev.REMINDER_DUE: (
            {
                "referral_id": referral,
                "case_id": case,
                "need_id": "n1",
                "recipient_agency_id": agency,
                "respond_by": PAST,
                "attempt": 1,
            },
            case,
        ),
    }
    return tuple(
        Base(ce_type, *by_type[ce_type]) for ce_type in topic_spec.payloads if ce_type in by_type
    )


def target(topic: str, agency: str, *, raw_header_names: bool = False) -> Target:
    """The fuzzing target for an inbound topic; ``agency`` is the sender on an agency's topic
    and the agency every body names (a fresh one per test)."""
    topic_spec = topics.spec(topic)
    family = topics.family_of(topic)
    sender = family.agency_of(topic) if family is not None else None
    key_field: str | None = None
    if family is topics.AGENCY_SUBMISSIONS:
        key_field = "agency_case_ref"  # the key decides the partition: a case's order
    if topic_spec.cleanup_policy is CleanupPolicy.COMPACT:
        key_field = topic_spec.key  # compaction keeps the latest record per key
    return Target(
        topic=topic,
        spec=topic_spec,
        sender=sender,
        bases=bases_for(topic_spec, sender or agency),
        key_field=key_field,
        body_agency_field="agency_id" if sender is not None else None,
        raw_header_names=raw_header_names,
    )


def headers_for(base: Base, target_: Target) -> dict[str, bytes | None]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(uuid.uuid4()),
        "ce_source": f"urn:referralexchange:fuzz:{target_.sender or 'operator'}",
        "ce_type": base.ce_type,
        "ce_time": PAST,
        "content-type": "application/json",
        "ce_traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }
    if target_.sender is not None:
        headers["ce_agencyid"] = target_.sender
    return {k: v.encode() for k, v in headers.items()}


def valid_record(target_: Target, base: Base | None = None) -> Malformed:
    """A valid record (no defect) of the target: what a well-behaved client sends."""
    base = base or target_.bases[0]
    return Malformed(
        target_.topic,
        base.key.encode(),
        json.dumps(base.body).encode(),
        tuple(headers_for(base, target_).items()),
        (),
    )


# ----- building blocks (built once: strategies built inside a draw are slow) -----

# Text: st.text draws each character on its own, which is slow at 8,000 records a run; text
# decoded from random bytes is one draw, and still brings every odd thing (control characters,
# unpaired surrogates from the undecodable bytes, noncharacters, long sequences).
_any_text = st.binary(max_size=24).map(
    lambda raw: raw.decode("utf-8", "surrogateescape")
) | st.text(st.characters(codec=None, exclude_categories=()), max_size=4)
_control_text = st.builds(
    lambda text, bad: text + bad,
    _any_text,
    st.sampled_from(["\x00", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f", "\ufffe", "\udc80"]),
)
_not_utf8 = st.sampled_from(
    [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\x80", b"\xf8\x88\x80\x80"]
)
_other_agency_ids = st.integers(0, 10**9).map(lambda n: f"other-agency-{n}")
_unknown_types = st.builds(
    lambda domain, event, major: f"org.referralexchange.{domain}.{event}.v{major}",
    st.sampled_from(["intake", "referral", "directory", "notification", "platform"]),
    st.sampled_from(["case-submitted", "nothing", "service-listed", "response-refused", "x"]),
    st.integers(1, 3),
)
_not_decodable = st.binary(min_size=1, max_size=20).filter(
    lambda raw: raw.decode("utf-8", "replace").encode() != raw
)


@functools.cache
def _pick(values: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """``st.sampled_from``, built once per choice: strategies built at every draw are slow."""
    return st.sampled_from(values)


@functools.cache
def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


def _encode_lossy(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    items: Any = doc.items() if isinstance(doc, dict) else []
    if isinstance(doc, list):
        items = enumerate(doc)
    for k, v in items:
        found.append((*prefix, k))
        found += _paths(v, (*prefix, k))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy(doc)
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    doc = copy.deepcopy(doc)
    del _get(doc, path[:-1])[path[-1]]
    return doc


def _refused(ce_type: str, doc: Any) -> bool:
    """Whether the contract model of ``ce_type`` refuses ``doc`` (a JSON document)."""
    try:
        ev.PAYLOADS[ce_type].model_validate(doc)
    except (ValidationError, ValueError):
        return True
    return False


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _any_text
)
# Two levels deep (st.recursive is several times slower to draw from; deep nesting has its own
# defect below).
_json_flat = (
    _json_scalars
    | st.lists(_json_scalars, max_size=4)
    | st.dictionaries(_any_text, _json_scalars, max_size=4)
)
json_values = (
    _json_flat
    | st.lists(_json_flat, max_size=3)
    | st.dictionaries(_any_text, _json_flat, max_size=3)
)

# A value that is wrong for some field: type, range, length, characters, encoding tricks.
bad_values = st.one_of(
    _json_scalars,
    st.integers(min_value=2**31),
    st.integers(max_value=-1),
    st.floats(allow_nan=True, allow_infinity=True),
    _control_text,
    _any_text,
    st.integers(201, 20_000).map(lambda n: "x" * n),  # longer than any text field
    st.integers(101, 2_000).map(lambda n: ["SN"] * n),  # longer than any list
    st.lists(_json_flat, max_size=3),
    st.dictionaries(_any_text, _json_flat, max_size=3),
    st.sampled_from(
        [
            "9999-12-31",
            "9999-12-31T23:59:59Z",
            "2026-02-30",
            "0000-01-01T00:00:00Z",
            "2026-11-01T10:00:00",  # no time zone
            "-1",
            "SN0101" * 40,
            "ZZ",
            "zz",
            "",
            " ",
        ]
    ),
)
_unknown_field_names = _any_text | st.integers(1, 300).map(lambda n: "k" * n)

# Envelope attributes and what makes each invalid (CloudEvents 1.0 and the documented limits).
_too_long = {
    name: st.integers(limit + 1, 2_000).map(lambda n: "i" * n)
    for name, limit in (("ce_source", 500), ("ce_agencyid", 64), ("other", 200))
}
_BAD_ATTRIBUTE: dict[str, st.SearchStrategy[str]] = {
    "ce_id": st.just("") | _control_text | _too_long["other"],
    "ce_source": st.just("") | _control_text | _too_long["ce_source"],
    "ce_type": st.just("") | _control_text | _too_long["other"],
    "ce_specversion": _any_text.filter(lambda s: s != "1.0"),
    "ce_time": st.builds(lambda s: "x" + s, _any_text) | st.just("2026-13-45T00:00:00Z"),
    "ce_traceparent": _any_text.filter(lambda s: TRACEPARENT.fullmatch(s) is None),
    "content-type": st.sampled_from(["text/plain", "application/xml", "json", "", "*/*"]),
    "ce_subject": _control_text | _too_long["other"],
    "ce_correlationid": _control_text | _too_long["other"],
    "ce_causationid": _control_text | _too_long["other"],
    "ce_agencyid": _control_text | _too_long["ce_agencyid"],
}
_attributes = st.sampled_from(sorted(_BAD_ATTRIBUTE))
_key_noise = st.none() | st.binary(max_size=30)
_BOOL = st.booleans()
_RANDOM_BYTES = st.binary(max_size=600)
_INVALID_KEYS = st.none() | _not_decodable | _any_text.map(_encode_lossy)


@functools.cache
def _types_not_of(topic: str) -> st.SearchStrategy[str]:
    carried = topics.spec(topic).payloads
    others = st.sampled_from(sorted(set(ev.PAYLOADS) - set(carried)))
    return (others | _unknown_types | _any_text.filter(bool)).filter(lambda s: s not in carried)


# Headers that are no CloudEvents attribute, with odd values: noise a consumer must ignore.
# (Drawn as a name and a value, not as a list: hypothesis' lists are slow to draw.)
_NOISE_NAMES = ("x-trace", "X-Retry", "x-ce_id", "ce-id", "", "x-\u00e9t\u00e9")
_NOISE_VALUES = (None, b"", b"\xff\xfe", b"\x00", b"x" * 100, b"\xed\xa0\x80")


# ----- defects: each takes a draft and returns it with one more defect -----

Mutation = Callable[[st.DrawFn, Draft, Base, Target], Draft]


def _headers_size(d: Draft) -> int:
    return sum(len(k.encode()) + len(v or b"") for k, v in [*d.headers.items(), *d.noise])


def _room(d: Draft, t: Target) -> int:
    """The largest value the broker still takes with these key and headers."""
    return t.broker_limit - BATCH_OVERHEAD - _headers_size(d) - len(d.key or b"")


def _with_marker(draw: st.DrawFn, base: Base, *, strings_only: bool = False) -> bytes:
    """The base body serialised with one value (any, or a string) replaced by ``"@@BAD@@"``."""
    paths = _paths(base.body)
    if strings_only:
        paths = [p for p in paths if isinstance(_get(base.body, p), str)]
    return json.dumps(_set(base.body, draw(_pick(tuple(paths))), "@@BAD@@")).encode()


def _body_random_bytes(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    return d.with_defect("body:random-bytes", value=draw(_RANDOM_BYTES))


def _body_not_utf8(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    text = _with_marker(draw, base, strings_only=True)
    bad = b"a" + draw(_not_utf8) + b"b"
    return d.with_defect("body:not-utf8", value=text.replace(b"@@BAD@@", bad))


def _body_utf16(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    codec = draw(
        _pick(
            (
                "utf-16",
                "utf-16-le",
                "utf-16-be",
                "utf-32",
                "utf-32-be",
            )
        )
    )
    return d.with_defect("body:json-not-in-utf8", value=json.dumps(base.body).encode(codec))


def _body_broken_json(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    text = json.dumps(base.body).encode()
    if draw(_BOOL):
        return d.with_defect("body:truncated", value=text[: draw(_ints(0, len(text) - 1))])
    junk = draw(_pick((b"x", b"}", b",", b"]", b'"', b"{}", b"\x00", b"/*")))
    return d.with_defect("body:trailing-junk", value=text + junk)


def _body_wrong_shape(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    doc: Any = draw(json_values)
    if not _refused(base.ce_type, doc):  # pragma: no cover - random JSON is never a contract
        doc = [doc]
    return d.with_defect("body:wrong-shape", value=json.dumps(doc).encode())


def _body_constants(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    """Non-standard JSON that Python's parser takes: NaN, Infinity."""
    constant = draw(
        _pick(
            (
                b"NaN",
                b"Infinity",
                b"-Infinity",
            )
        )
    )
    return d.with_defect("body:nan", value=_with_marker(draw, base).replace(b'"@@BAD@@"', constant))


def _body_deep(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    opener, closer = draw(_pick(((b"[", b"]"), (b'{"a":', b"}"))))
    depth = draw(_ints(500, min(40_000, _room(d, t) // (len(opener) + 1) - 1)))
    return d.with_defect("body:deep-nesting", value=opener * depth + b"1" + closer * depth)


def _body_huge_int(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    text = _with_marker(draw, base)
    digits = draw(_ints(4_301, min(60_000, _room(d, t) - len(text))))
    return d.with_defect("body:huge-int", value=text.replace(b'"@@BAD@@"', b"7" * digits))


def _body_field(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    """One field (at any depth) replaced, removed, or an unknown one added."""
    how = draw(
        _pick(
            (
                "replace",
                "replace",
                "remove",
                "add",
            )
        )
    )
    if how == "add":
        dicts = [()] + [p for p in _paths(base.body) if isinstance(_get(base.body, p), dict)]
        where, name = draw(_pick(tuple(dicts))), draw(_unknown_field_names)
        doc = _add(base.body, where, name, draw(bad_values))
    elif how == "remove":
        doc = _delete(base.body, draw(_pick(tuple(_paths(base.body)))))
    else:
        doc = _set(base.body, draw(_pick(tuple(_paths(base.body)))), draw(bad_values))
    if not _refused(base.ce_type, doc):  # e.g. an optional field removed: break the version
        doc = {
            **doc,
            "schema_version": draw(
                _pick(
                    (
                        "2",
                        1,
                        None,
                        "v1",
                    )
                )
            ),
        }
    value = json.dumps(doc).encode()
    if len(value) > _room(d, t):  # a long value in a small topic: cut it, still invalid
        value = value[: _room(d, t)]
    return d.with_defect(f"field:{how}", value=value)


def _add(doc: Any, path: tuple[Any, ...], name: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    _get(doc, path)[name] = value
    return doc


# How far past its limit an oversize record goes: it reaches the service only compressed.
OVERSIZE_MAX_EXTRA = 16 * 1024


def _oversize(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    """Valid JSON otherwise, padded with spaces (they compress) to just over the limit or up to
    :data:`OVERSIZE_MAX_EXTRA` beyond it."""
    text = json.dumps(base.body).encode()
    over = t.spec.max_message_bytes + 1 - (_headers_size(d) + len(d.key or b""))
    low = max(over, len(text) + 2)
    high = low + OVERSIZE_MAX_EXTRA
    size = draw(_pick((low, high)) | _ints(low, high))  # both edges, and anything between
    return d.with_defect("size:over-limit", value=b"{" + b" " * (size - len(text)) + text[1:])


def _envelope(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    headers = dict(d.headers)
    attribute = draw(_attributes)
    how = draw(
        _pick(
            (
                "missing",
                "garbled",
                "garbled",
                "not-utf8",
                "null",
            )
        )
    )
    if how in ("missing", "null") and attribute in REQUIRED_ATTRIBUTES:
        if how == "null":
            headers[attribute] = None  # a null header value: Kafka allows it
        else:
            headers.pop(attribute, None)
        return d.with_defect(f"envelope:{attribute}-{how}", headers=headers)
    if how == "not-utf8":
        good = (headers.get(attribute) or b"x")[:20]
        headers[attribute] = good + draw(_not_utf8)
        return d.with_defect(f"envelope:{attribute}-not-utf8", headers=headers)
    headers[attribute] = _encode_lossy(draw(_BAD_ATTRIBUTE[attribute]))
    return d.with_defect(f"envelope:{attribute}-garbled", headers=headers)


def _wrong_type(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    bad = draw(_types_not_of(t.topic))
    if bad in t.spec.payloads:  # pragma: no cover - practically never
        bad = "x" + bad
    headers = {**d.headers, "ce_type": _encode_lossy(bad)}
    return d.with_defect("type:not-of-this-topic", headers=headers)


def _wrong_key(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    key = draw(_key_noise)
    if key == base.key.encode():
        key = key + b"-other"
    return d.with_defect("key:not-the-identity", key=key)


def _other_agency(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    other = draw(_other_agency_ids)
    if other == t.sender:
        other = other + "-x"
    if draw(_BOOL) or t.body_agency_field not in base.body:
        return d.with_defect(
            "sender:header-claims-another-agency",
            headers={**d.headers, "ce_agencyid": other.encode()},
        )
    body = {**base.body, str(t.body_agency_field): other}
    return d.with_defect("sender:body-claims-another-agency", value=json.dumps(body).encode())


def _tombstone(draw: st.DrawFn, d: Draft, base: Base, t: Target) -> Draft:
    if t.spec.cleanup_policy is not CleanupPolicy.COMPACT:
        return d.with_defect("tombstone:topic-takes-none", value=None)
    pattern = AGENCY_ID_PATTERN if t.spec.key == "agency_id" else IDENTIFIER.pattern
    invalid = draw(_INVALID_KEYS)
    if invalid is not None and re.fullmatch(pattern, invalid.decode("utf-8", "replace")):
        invalid = b"not a key: " + invalid
    return d.with_defect("tombstone:key-names-nothing", value=None, key=invalid)


BODY_DEFECTS: tuple[Mutation, ...] = (
    _body_random_bytes,
    _body_not_utf8,
    _body_utf16,
    _body_broken_json,
    _body_wrong_shape,
    _body_constants,
    _body_deep,
    _body_huge_int,
    _body_field,
    _body_field,
    _body_field,
)
HEADER_DEFECTS: tuple[Mutation, ...] = (_envelope, _envelope, _envelope, _wrong_type)
# Rare kinds, generated in fixed numbers (hypothesis does not draw anything with a steady
# frequency, and these must be few: a tombstone is a record without any other defect; a body
# over the limit is costly to move; a header name nobody can read is costly to find).
TOMBSTONE, OVERSIZE, UNREADABLE_NAME = "tombstone", "oversize", "unreadable-header-name"
RARE_PER_KIND = 10
_RAW_NAMES = st.binary(min_size=1, max_size=6).map(lambda raw: "\xff" + raw.decode("latin-1"))


@st.composite
def malformed(draw: st.DrawFn, t: Target, rare: str | None = None) -> Malformed:
    """One record of ``t``'s topic with at least one defect (see the module docstring), and
    with the ``rare`` kind of defect if given."""
    base = t.bases[draw(_ints(0, len(t.bases) - 1))]
    key: bytes | None = base.key.encode()
    if t.key_field is None:  # the key is not checked there: any key is noise
        key = draw(_key_noise) if draw(_BOOL) else key
    draft = Draft(
        key=key,
        value=json.dumps(base.body).encode(),
        headers=headers_for(base, t),
        noise=tuple(
            (draw(_pick(_NOISE_NAMES)), draw(_pick(_NOISE_VALUES)))
            for _ in range(draw(_ints(0, 2)))
        ),
    )
    extra: tuple[Mutation, ...] = ()
    if t.key_field is not None:
        extra += (_wrong_key,)
    if t.sender is not None:
        extra += (_other_agency,)
    if rare == UNREADABLE_NAME:
        name = RawHeaderName(draw(_RAW_NAMES))  # 0xFF never starts a UTF-8 sequence
        draft = draft.with_defect("envelope:header-name-not-utf8", noise=((name, b"x"),))
    if rare == TOMBSTONE:
        mutations: list[Mutation] = [_tombstone]
    else:
        # Headers, key and sender first: the body's size is measured with the final ones.
        choices = _pick(HEADER_DEFECTS + extra)
        mutations = [draw(choices) for _ in range(draw(_ints(0, 2)))]
        if rare == OVERSIZE:
            mutations.append(_oversize)
        elif (not mutations and rare is None) or draw(_ints(0, 3)) > 0:
            mutations.append(draw(_pick(BODY_DEFECTS)))
    for mutate in mutations:
        draft = mutate(draw, draft, base, t)
    key = draft.key
    if key is None and (draft.value is None or t.spec.cleanup_policy is CleanupPolicy.COMPACT):
        # The broker refuses a record without key on a compacted topic, and the client one with
        # neither key nor value: an empty key is as wrong for these topics.
        key = b""
    headers = [*draft.headers.items(), *draft.noise]
    record = Malformed(t.topic, key, draft.value, tuple(headers), draft.defects)
    assert record.size <= t.broker_limit - BATCH_OVERHEAD or "size:over-limit" in record.defects, (
        "the broker would refuse it even compressed"
    )
    return record


def any_malformed(t: Target) -> st.SearchStrategy[Malformed]:
    """Mostly common defects, sometimes a tombstone or a body over the limit (for tests that
    draw records one by one)."""
    common = malformed(t)
    return st.one_of(common, common, common, malformed(t, TOMBSTONE), malformed(t, OVERSIZE))


def generate(t: Target, count: int, seed_value: int) -> list[Malformed]:
    """``count`` malformed records for ``t``, then :data:`RARE_PER_KIND` of each rare kind.

    Collected from inside a ``@given`` function that only records its examples: the documented
    way to run a strategy outside a test (``strategy.example()`` is for interactive use only).
    Only the generate phase runs (no shrinking, no example database), with no deadline, and a
    seed makes a run reproducible. Hypothesis may stop early if it ran out of distinct inputs;
    callers check the count."""
    found: list[Malformed] = []
    kinds = [TOMBSTONE, OVERSIZE] + ([UNREADABLE_NAME] if t.raw_header_names else [])
    for rare, examples in [(None, count), *((kind, RARE_PER_KIND) for kind in kinds)]:

        @seed(seed_value)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(malformed(t, rare))
        def collect(record: Malformed) -> None:
            found.append(record)

        collect()
    return found


def defect_counts(records: Sequence[Malformed]) -> dict[str, int]:
    """How many records carry each kind of defect (a record may carry several)."""
    counts: dict[str, int] = {}
    for r in records:
        for kind in {d.split(":")[0] for d in r.defects}:
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))
