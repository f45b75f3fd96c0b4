"""Every state by every answer: allowed ones lead where the table says, the rest are refused."""

import itertools

import pytest

from services.referral.lifecycle import (
    OPEN_STATES,
    answer,
    can_cancel,
    can_expire,
    holds_a_slot,
)
from shared.contracts.events import ACTION_TARGET, ReferralState, ResponseAction

S, A = ReferralState, ResponseAction
ALLOWED = {
    (S.REQUESTED, A.ACKNOWLEDGE): S.RECEIVED,
    (S.REQUESTED, A.ACCEPT): S.ACCEPTED,
    (S.REQUESTED, A.REJECT): S.REJECTED,
    (S.RECEIVED, A.ACCEPT): S.ACCEPTED,
    (S.RECEIVED, A.REJECT): S.REJECTED,
    (S.ACCEPTED, A.START): S.IN_PROGRESS,
    (S.ACCEPTED, A.HOLD): S.ON_HOLD,
    (S.ACCEPTED, A.COMPLETE): S.COMPLETED,
    (S.ACCEPTED, A.FAIL): S.FAILED,
    (S.IN_PROGRESS, A.HOLD): S.ON_HOLD,
    (S.IN_PROGRESS, A.COMPLETE): S.COMPLETED,
    (S.IN_PROGRESS, A.FAIL): S.FAILED,
    (S.ON_HOLD, A.RESUME): S.IN_PROGRESS,
    (S.ON_HOLD, A.FAIL): S.FAILED,
}


@pytest.mark.parametrize(("state", "action"), list(itertools.product(S, A)))
def test_every_state_and_answer(state: ReferralState, action: ResponseAction) -> None:
    assert answer(state, action) == ALLOWED.get((state, action))


def test_an_allowed_answer_leads_where_the_contract_says() -> None:
    for (_, action), target in ALLOWED.items():
        assert ACTION_TARGET[action] == target


def test_terminal_states_accept_nothing() -> None:
    for state in set(S) - OPEN_STATES:
        assert all(answer(state, a) is None for a in A)
        assert not can_cancel(state) and not can_expire(state)


@pytest.mark.parametrize("state", list(S))
def test_cancel_expire_and_slots(state: ReferralState) -> None:
    assert can_cancel(state) == (state in OPEN_STATES)
    assert can_expire(state) == (state in (S.REQUESTED, S.RECEIVED))
    assert holds_a_slot(state) == (state in (S.ACCEPTED, S.IN_PROGRESS, S.ON_HOLD))
