"""Failed-login throttling, decided from an account name's recent failures (pure).

Keyed by the name typed, whether or not an account has it: a guesser learns nothing about
which names exist, and cannot try passwords faster on a real one. Not keyed by client address:
behind a proxy every client has the proxy's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int = 5  # failures allowed before any wait
    first_wait_s: float = 30.0  # the wait after the first failure past those; doubles after
    longest_wait_s: float = 900.0
    forget_after_s: float = 24 * 3600.0  # failures older than this no longer count


@dataclass(frozen=True, slots=True)
class Failures:
    count: int
    last_at: datetime


def wait_before_next_attempt(
    failures: Failures | None, now: datetime, policy: ThrottlePolicy
) -> timedelta | None:
    """How long the name must wait before another attempt is checked; None: it may try now."""
    if failures is None or failures.count < policy.free_failures:
        return None
    if now - failures.last_at >= timedelta(seconds=policy.forget_after_s):
        return None
    doublings = min(failures.count - policy.free_failures, 30)  # 2**30: far past the cap
    wait_s = min(policy.first_wait_s * 2**doublings, policy.longest_wait_s)
    remaining = failures.last_at + timedelta(seconds=wait_s) - now
    return remaining if remaining > timedelta(0) else None


def failures_after(failures: Failures | None, now: datetime, policy: ThrottlePolicy) -> Failures:
    """The count after one more failure: old failures are forgotten first."""
    if failures is None or now - failures.last_at >= timedelta(seconds=policy.forget_after_s):
        return Failures(1, now)
    return Failures(failures.count + 1, now)
