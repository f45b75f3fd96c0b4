"""Referral's own metrics, on the process registry (shared.metrics): what is open and waiting,
what could not be matched and why, deadlines missed and needs re-routed. Labels are contract
vocabularies (states, unmet reasons), never ids."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from prometheus_client import Counter, Gauge

from shared.metrics import REGISTRY

REFERRALS_OPEN = Gauge(
    "refex_referrals_open",
    "Referrals waiting on or being served by a provider, by state.",
    ["state"],
    registry=REGISTRY,
)
UNMET_NEEDS = Gauge(
    "refex_unmet_needs",
    "Needs no listed service could take, by reason.",
    ["reason"],
    registry=REGISTRY,
)
DEADLINES_MISSED = Counter(
    "refex_referral_deadlines_missed_total",
    "Referrals expired because the provider did not answer by respond_by.",
    registry=REGISTRY,
)
REROUTES = Counter(
    "refex_referral_reroutes_total",
    "Needs referred again to the next candidate after a rejection or an expiry.",
    registry=REGISTRY,
)


async def measure(units: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
    """Read the gauges from the database (the runtime calls it every metrics interval)."""
    async with units() as unit:
        by_state = await unit.stores.count_open_by_state()
        by_reason = await unit.stores.count_unmet_by_reason()
    REFERRALS_OPEN.clear()
    for state, n in by_state.items():
        REFERRALS_OPEN.labels(state=state).set(n)
    UNMET_NEEDS.clear()
    for reason, n in by_reason.items():
        UNMET_NEEDS.labels(reason=reason).set(n)
