"""`refex platform status`'s judgement and drawing, from gathered figures (the gathering itself
runs against the real broker and services in tests/e2e/test_platform_status.py)."""

from __future__ import annotations

import pytest
from rich.console import Console

from ops import platform_status as ps


def _healthy(name: str, **figures: object) -> ps.ServiceStatus:
    status = ps.ServiceStatus(
        name,
        lag={"intake.cases.v1": 3},
        reachable=True,
        ready=True,
        checks={"kafka": True, "database": True, "outbox_relay": True},
        outbox_unsent=2,
        outbox_oldest_age_s=0.4,
    )
    for key, value in figures.items():
        setattr(status, key, value)
    return status


def _platform(*changed: ps.ServiceStatus) -> ps.PlatformStatus:
    by_name = {s.name: s for s in changed}
    return ps.PlatformStatus([by_name.get(n) or _healthy(n) for n in ps.SERVICES])


def _drawn(status: ps.PlatformStatus) -> str:
    console = Console(record=True, width=200, color_system=None)
    ps.render(status, console)
    return console.export_text()


def test_a_healthy_platform_is_all_clear() -> None:
    status = _platform()
    assert ps.problems(status) == []
    drawn = _drawn(status)
    assert "All clear." in drawn and "Needs attention" not in drawn
    assert drawn.count("ready") >= len(ps.SERVICES)


def test_a_service_that_does_not_answer_comes_first_and_keeps_its_broker_figures() -> None:
    down = ps.ServiceStatus(
        "referral",
        lag={"intake.cases.v1": 5000},
        dead_letters=ps.DeadLetters(held=4, recent=1),
        error="http://referral:8000: ConnectError",
    )
    status = _platform(down, _healthy("intake", dead_letters=ps.DeadLetters(9, 2)))
    found = ps.problems(status)
    assert found[0] == "referral: /status does not answer (http://referral:8000: ConnectError)"
    assert "referral: 5000 records behind (most on intake.cases.v1)" in found
    assert any(p.startswith("intake: 2 dead letters in the last 24 h") for p in found)
    drawn = _drawn(status)
    row = next(line for line in drawn.splitlines() if line.startswith("│ referral"))
    assert "unreachable" in row and "5000" in row and "1 / 4" in row and "?" in row


def test_not_ready_names_the_failing_checks() -> None:
    sick = _healthy("notification", ready=False)
    sick.checks = {"kafka": True, "database": False, "outbox_relay": True}
    assert ps.problems(_platform(sick)) == ["notification: not ready (database)"]


@pytest.mark.parametrize(
    ("lag", "age", "expected"),
    [
        (ps.LAG_ATTENTION_RECORDS - 1, ps.OUTBOX_ATTENTION_AGE_S - 1, 0),  # busy, not stuck
        (ps.LAG_ATTENTION_RECORDS, 0.0, 1),
        (0, ps.OUTBOX_ATTENTION_AGE_S, 1),
    ],
)
def test_lag_and_outbox_age_need_attention_from_their_thresholds(
    lag: int, age: float, expected: int
) -> None:
    busy = _healthy("intake", lag={"agency.*.submissions.v1": lag}, outbox_oldest_age_s=age)
    assert len(ps.problems(_platform(busy))) == expected


def test_agency_figures_from_two_services_make_one_row() -> None:
    referral = _healthy(
        "referral",
        agencies={"ngo-a": {"awaiting_answer": 2, "past_deadline": 1, "deadlines_missed": 3}},
    )
    notification = _healthy(
        "notification",
        agencies={
            "ngo-a": {
                "webhook_disabled_at": "2026-12-07T01:02:03+00:00",
                "webhook_disabled_reason": "HTTP 410 Gone [x]",
                "deliveries_pending": 0,
                "deliveries_given_up": 5,
            },
            "ngo-b": {"deliveries_pending": 7, "unknown_figure": 1},
        },
    )
    status = _platform(referral, notification)
    a, b = status.agencies()
    assert (a.agency_id, a.awaiting_answer, a.past_deadline, a.deliveries_given_up) == (
        "ngo-a",
        2,
        1,
        5,
    )
    assert (b.agency_id, b.deliveries_pending, b.webhook_disabled_at) == ("ngo-b", 7, None)
    found = ps.problems(status)
    assert found == [
        "ngo-a: webhook endpoint disabled since 2026-12-07T01:02 (HTTP 410 Gone [x]); after the "
        "agency fixes it: refex notification add-webhook ngo-a URL, then replay",
        "ngo-a: 1 referrals past their deadline and not yet expired: referral's deadline job "
        "is behind or failing",
    ]
    drawn = _drawn(status)
    assert "disabled 2026-12-07: HTTP 410 Gone [x]" in drawn  # markup in a reason is escaped
    assert status.as_json()["agencies"][1]["deliveries_pending"] == 7


def test_service_urls_come_from_make_run_then_the_environment_then_the_options() -> None:
    assert ps.service_urls(environ={}) == ps.LOCAL_URLS
    urls = ps.service_urls(
        ["referral=http://r:9/"],
        environ={ps.URLS_VARIABLE: "intake=http://intake:8000, referral=http://x:1"},
    )
    assert urls["intake"] == "http://intake:8000"
    assert urls["referral"] == "http://r:9"
    assert urls["evidence"] == ps.LOCAL_URLS["evidence"]


@pytest.mark.parametrize("bad", ["intake", "gateway=http://g:1", "intake="])
def test_a_malformed_service_url_is_refused_with_the_expected_form(bad: str) -> None:
    with pytest.raises(ValueError, match="expected SERVICE=URL"):
        ps.service_urls([bad], environ={})
