"""The topology-equivalent baseline's pure parts: the catalogue's roles, the topology derived
from the records a phase produced (routes, sizes, sources), the raw processes' spec, and the
scale-out bench's duplicate counting and instance names."""

from __future__ import annotations

import pytest

from shared.contracts import topics
from tests.bench.pipeline import Traffic
from tests.bench.report import duplicates, markdown, targets
from tests.bench.run import instance_names
from tests.bench.topology import Roles, Seen, derive, process_spec, roles, scratch

SUB = "agency.ref-a.submissions.v1"
CASES, EVENTS, DISCLOSURES = topics.INTAKE_CASES, topics.REFERRAL_EVENTS, topics.INTAKE_DISCLOSURES
INBOX_P, INBOX_R = "agency.pro-a.inbox.v1", "agency.ref-a.inbox.v1"


def _roles() -> Roles:
    return roles(["ref-a", "pro-a"])


def _seen(topic: str, event_id: str, cause: str = "", value: int = 100) -> Seen:
    return Seen(topic, event_id, cause, key_bytes=10, value_bytes=value, header_bytes=50)


def test_roles_follow_the_catalogue() -> None:
    r = _roles()
    assert r.partitions[SUB] == 3 and r.partitions[CASES] == 6
    assert r.producer[SUB] is None  # an agency writes it: a source
    assert r.producer[CASES] == "intake"
    assert r.producer[INBOX_P] == "notification"
    assert r.consumers[CASES] == ("referral", "notification")
    assert r.consumers[INBOX_P] == ()  # the agency reads its inbox, no service
    assert SUB in r.inputs("intake") and EVENTS in r.inputs("intake")
    assert "agency.pro-a.listings.v1" in r.inputs("referral")  # consumed, traffic or not
    assert INBOX_P not in r.inputs("notification")


def _one_submission(n: int) -> list[Seen]:
    """submission → case registered + accepted; registered → referral requested; requested →
    disclosure (intake) and referral-received (notification); accepted → the referrer's
    inbox; disclosure → the provider's inbox."""
    s, reg, acc, req, dis = (f"{k}{n}" for k in ("s", "reg", "acc", "req", "dis"))
    return [
        _seen(SUB, s, value=2000),
        _seen(CASES, reg, s),
        _seen(CASES, acc, s),
        _seen(EVENTS, req, reg),
        _seen(DISCLOSURES, dis, req, value=900),
        _seen(INBOX_P, f"in-req{n}", req),
        _seen(INBOX_R, f"in-acc{n}", acc),
        _seen(INBOX_P, f"in-dis{n}", dis),
    ]


def test_routes_follow_the_causation_ids() -> None:
    seen = [r for n in range(10) for r in _one_submission(n)]
    topo = derive(_roles(), seen, {SUB: [("ce_type", "00")]})
    assert topo.sources == {SUB: 10}
    assert topo.services["intake"].routes == {SUB: {CASES: 2.0}, EVENTS: {DISCLOSURES: 1.0}}
    assert topo.services["referral"].routes == {CASES: {EVENTS: 0.5}}
    assert topo.services["notification"].routes == {
        CASES: {INBOX_R: 0.5},
        DISCLOSURES: {INBOX_P: 1.0},
        EVENTS: {INBOX_P: 1.0},
    }
    assert topo.unattributed == {}
    sub = topo.topics[SUB]
    assert (sub.records, sub.partitions, sub.value_bytes, sub.mean_bytes) == (10, 3, 2000, 2060)
    assert sub.headers == [("ce_type", "00")]
    assert topo.topics[DISCLOSURES].value_bytes == 900
    assert topo.records == 80


def test_fed_with_the_sources_the_routes_give_the_counted_records() -> None:
    seen = [r for n in range(7) for r in _one_submission(n)]
    # a timer's event (no cause in the phase) and one caused by a warm-up record
    seen += [_seen(EVENTS, "reminder", ""), _seen(INBOX_P, "late", "warm-up-event")]
    topo = derive(_roles(), seen, {})
    produced = topo.produced()
    for topic, shape in topo.topics.items():
        assert produced.get(topic, 0.0) == pytest.approx(shape.records), topic


def test_uncaused_records_are_spread_over_all_inputs_of_their_producer() -> None:
    seen = [_seen(SUB, "s1"), _seen(CASES, "c1", "s1"), _seen(CASES, "c2", "s1")]
    seen += [_seen(EVENTS, "e1", "")]  # referral emitted it on a timer
    topo = derive(_roles(), seen, {})
    assert topo.services["referral"].routes == {CASES: {EVENTS: 0.5}}
    # a service with no input records at all: its records cannot be attributed
    lonely = derive(_roles(), [_seen(EVENTS, "e1", "")], {})
    assert lonely.unattributed == {EVENTS: 1}
    assert lonely.services["referral"].routes == {}


def test_a_cause_on_a_topic_the_producer_does_not_consume_is_no_route() -> None:
    # notification does not consume the submissions: its inbox record caused "by" one is not a
    # route from the submissions topic
    seen = [_seen(SUB, "s1"), _seen(CASES, "c1", "s1"), _seen(INBOX_R, "i1", "s1")]
    topo = derive(_roles(), seen, {})
    assert topo.services["notification"].routes == {CASES: {INBOX_R: 1.0}}


def test_the_raw_processes_get_scratch_copies_of_their_topics() -> None:
    topo = derive(_roles(), [r for n in range(4) for r in _one_submission(n)], {})
    spec = process_spec(topo, "run1")
    intake = spec["services"]["intake"]
    assert intake["group"] == "bench.topo.run1.intake"
    assert scratch("run1", SUB) == f"bench.topo.run1.{SUB}"
    assert set(intake["inputs"]) == {scratch("run1", t) for t in _roles().inputs("intake")}
    assert intake["routes"][scratch("run1", SUB)] == [[scratch("run1", CASES), 2.0]]
    assert spec["records"][scratch("run1", DISCLOSURES)]["value_bytes"] == 900
    assert scratch("run1", SUB) not in spec["records"]  # sources are fed by the bench


def test_summary_groups_the_agency_topics_by_family() -> None:
    topo = derive(_roles(), [r for n in range(4) for r in _one_submission(n)], {})
    summary = topo.summary(submissions=4)
    inbox = summary["topics"]["agency.<agency_id>.inbox.v1"]
    assert inbox == {"topics": 2, "records": 12, "per_submission": 3.0, "mean_bytes": 160}
    assert summary["records_per_submission"] == 8.0
    assert summary["services"]["notification"]["out_per_submission"] == 3.0


def test_an_event_applied_twice_is_a_duplicate_a_redelivery_is_not() -> None:
    traffic = Traffic(sent_at={"s1": 0.0}, needs={"s1": 1})
    assert traffic.first_time("e1", INBOX_P, "received", "ref-1")
    traffic.record("s1", "n1", "received", 1.0, "e1")
    assert not traffic.first_time("e1", INBOX_P, "received", "ref-1")  # the same record again
    assert traffic.redelivered == 1
    assert (traffic.duplicate_need_ends, traffic.duplicate_inbox_events) == (0, 0)
    # a second, distinct event for the same need: the referral was made twice
    assert traffic.first_time("e2", INBOX_P, "received", "ref-2")
    traffic.record("s1", "n1", "received", 2.0, "e2")
    assert traffic.duplicate_need_ends == 1
    assert traffic.duplicate_inbox_events == 0  # another subject
    assert traffic.first_time("e3", INBOX_P, "received", "ref-2")
    assert traffic.duplicate_inbox_events == 1


def test_instances_are_named_per_process() -> None:
    assert [n for n, _, _ in instance_names(1)] == ["intake", "referral", "notification"]
    assert instance_names(2)[:2] == [("intake-1", "intake", 0), ("intake-2", "intake", 1)]


def _result(ratio: float, ratio_3hop: float, duplicated: int = 0) -> dict[str, object]:
    return {
        "when": "2026-11-23T00:00:00+00:00",
        "machine": {"cpus": 2},
        "services": ["intake"],
        "directory": {"listings": 2000},
        "throughput": {
            "submissions": 100,
            "submissions_per_s": 40.0,
            "inbox_events_per_s": 80.0,
            "completion_rate_per_s": 40.0,
            "messages": 1200,
            "messages_per_s": 480.0,
            "p50_ms": 10.0,
            "p99_ms": 20.0,
        },
        "resources": {"intake": {"cpu_cores": 0.5, "peak_rss_mb": 80.0}},
        "baseline": {"messages_per_s": 4000.0, "ratio": ratio_3hop},
        "topology_baseline": {
            "processes": 3,
            "submissions": 100,
            "submissions_per_s": 40.0 / ratio,
            "messages": 1200,
            "messages_per_s": 480.0 / ratio,
            "ratio": ratio,
            "topology": {
                "topics": {
                    "intake.cases.v1": {
                        "topics": 1,
                        "records": 200,
                        "per_submission": 2.0,
                        "mean_bytes": 700,
                    }
                }
            },
        },
        "exactly_once": {
            "duplicate_need_ends": duplicated,
            "duplicate_inbox_events": 0,
            "redelivered": 2,
            "inbox_events": 500,
        },
    }


def test_the_target_is_the_topology_ratio_and_the_3_hop_one_is_a_reference() -> None:
    judged = {t.name: (t.measured, t.met) for t in targets(_result(0.4, 0.01))}
    assert judged["pipeline / raw baseline (same topology)"] == (0.4, True)
    assert judged["pipeline / raw 3-hop baseline"] == (0.01, None)
    assert targets(_result(0.2, 0.01))[5].met is False
    text = markdown(_result(0.4, 0.01))
    assert "| pipeline / raw baseline (same topology) | >= 0.3 | 0.400 | met |" in text
    assert "| raw baseline, same topology: submissions/s, messages/s | 100.0, 1200 |" in text
    assert "| intake.cases.v1 | 1 | 2.00 | 700 |" in text
    assert "| inbox events applied twice / redelivered | 0 / 2 |" in text


def test_duplicates_fail_the_run() -> None:
    assert duplicates(_result(0.4, 0.01)) == 0
    assert duplicates(_result(0.4, 0.01, duplicated=3)) == 3


def test_the_docs_block_says_the_instances_and_the_machine_load() -> None:
    result = _result(0.4, 0.01)
    assert "listings)." in markdown(result).splitlines()[0]  # one instance, no load recorded
    result["machine"] = {"cpus": 2, "load_average": [1.5, 3.25]}
    result["options"] = {"instances": 2}
    first = markdown(result).splitlines()[0]
    assert "on 2 cores, load average 1.5 → 3.2" in first
    assert "2,000 listings, 2 instances per service)." in first
