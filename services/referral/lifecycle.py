"""The referral lifecycle (closed loop, after FHIR Task and Primero): which answer is allowed in
which state, and which transitions the service itself makes. Pure: no database, no Kafka.

    requested ─acknowledge→ received ─accept→ accepted ─start→ in_progress ─complete→ completed
        │  └──────accept/reject──────┘  └reject→ rejected      │  ↕ hold/resume       └fail→ failed
        │                                          accepted/in_progress ─hold→ on_hold ─fail→ failed
    any open state ─cancel→ cancelled      requested/received ─(deadline)→ expired
    any open state ─revoke/redirect (the requester)→ cancelled (cancelled_by requester)
    any state ─(operator)→ entered_in_error
"""

from __future__ import annotations

from shared.contracts.events import ReferralState as S
from shared.contracts.events import ResponseAction as A

OPEN_STATES = frozenset({S.REQUESTED, S.RECEIVED, S.ACCEPTED, S.IN_PROGRESS, S.ON_HOLD})
# Waiting for the provider's decision: the deadline runs, expiry re-routes.
AWAITING_DECISION = frozenset({S.REQUESTED, S.RECEIVED})
# Ended without service: the need goes to the next candidate.
REROUTED_FROM = frozenset({S.REJECTED, S.EXPIRED})

ANSWERS: dict[S, dict[A, S]] = {
    S.REQUESTED: {A.ACKNOWLEDGE: S.RECEIVED, A.ACCEPT: S.ACCEPTED, A.REJECT: S.REJECTED},
    S.RECEIVED: {A.ACCEPT: S.ACCEPTED, A.REJECT: S.REJECTED},
    S.ACCEPTED: {
        A.START: S.IN_PROGRESS,
        A.HOLD: S.ON_HOLD,
        A.COMPLETE: S.COMPLETED,
        A.FAIL: S.FAILED,
    },
    S.IN_PROGRESS: {A.HOLD: S.ON_HOLD, A.COMPLETE: S.COMPLETED, A.FAIL: S.FAILED},
    S.ON_HOLD: {A.RESUME: S.IN_PROGRESS, A.FAIL: S.FAILED},
}


def answer(state: S, action: A) -> S | None:
    """The state an agency's answer leads to, or None when it is not allowed in ``state``."""
    return ANSWERS.get(state, {}).get(action)


def can_cancel(state: S) -> bool:
    return state in OPEN_STATES


def requester_can_cancel(state: S) -> bool:
    """The requester's cancel (FHIR Task lets either side cancel): the referring agency may
    revoke or redirect any referral it made that is still open; an ended one stays ended."""
    return state in OPEN_STATES


def can_expire(state: S) -> bool:
    return state in AWAITING_DECISION


def holds_a_slot(state: S) -> bool:
    """An accepted referral occupies one of the provider's slots until it ends."""
    return state in (S.ACCEPTED, S.IN_PROGRESS, S.ON_HOLD)
