"""What a caseworker sees, derived from the agency's inbox alone: the referrals it received and
their states, deadlines and sealed disclosures; the referrals it sent; its unmet needs; its
follow-ups due; the answers to what it sent. Pure: messages in, a view out (the console
re-derives it as the inbox grows; an inbox is small enough per agency)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.contracts import events as ev

from ..inbox import InboxMessage

# States a provider may still act on (answering, starting, holding, completing).
OPEN_STATES = frozenset({"requested", "received", "accepted", "in_progress", "on_hold"})


@dataclass
class ReceivedReferral:
    referral_id: str
    case_id: str
    category: str
    urgency: str
    service_id: str
    referring_agency_id: str
    respond_by: str | None
    received_at: str
    state: str = "requested"
    disclosures: list[dict[str, Any]] = field(default_factory=list)
    cancelled: dict[str, Any] | None = None
    history: list[tuple[str, str]] = field(default_factory=list)  # (time, state)

    @property
    def open(self) -> bool:
        return self.cancelled is None and self.state in OPEN_STATES


@dataclass
class SentReferral:
    referral_id: str
    case_id: str
    need_id: str
    recipient_agency_id: str
    state: str
    changed_at: str
    reason_code: str | None = None


@dataclass
class AgencyView:
    # Whose inbox this is: a handover's messages go to both parties, and each sees its side.
    agency_id: str = ""
    received: dict[str, ReceivedReferral] = field(default_factory=dict)
    sent: dict[str, SentReferral] = field(default_factory=dict)
    unmet: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    follow_ups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # The agency's own cases, by its agency_case_ref: what intake accepted from it.
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    answers: list[tuple[str, str, dict[str, Any]]] = field(
        default_factory=list
    )  # (time, type, data)
    # Handovers of the agency's cases or offered to it, by handover_id: the proposal's fields
    # and its ``state`` (proposed, then rejected, expired, completed or failed).
    handovers: dict[str, dict[str, Any]] = field(default_factory=dict)
    count: int = 0

    def apply(self, message: InboxMessage) -> None:
        self.count += 1
        data = message.data if isinstance(message.data, dict) else {}
        apply = _APPLY.get(message.ce_type)
        if apply is not None:
            apply(self, message, data)

    def received_in_order(self) -> list[ReceivedReferral]:
        """Open referrals first, soonest deadline first; then the others, latest first."""
        opened = sorted(
            (r for r in self.received.values() if r.open),
            key=lambda r: (r.respond_by or "9999", r.received_at),
        )
        closed = sorted(
            (r for r in self.received.values() if not r.open),
            key=lambda r: r.received_at,
            reverse=True,
        )
        return opened + closed

    def handovers_to_answer(self) -> list[dict[str, Any]]:
        """The handovers waiting on this agency's answer, soonest deadline first."""
        waiting = (
            h
            for h in self.handovers.values()
            if h["state"] == "proposed" and h.get("answering_agency_id") == self.agency_id
        )
        return sorted(waiting, key=lambda h: str(h.get("respond_by", "")))

    def handovers_of_case(self, case_id: str) -> list[dict[str, Any]]:
        return sorted(
            (h for h in self.handovers.values() if h.get("case_id") == case_id),
            key=lambda h: str(h.get("time", "")),
            reverse=True,
        )


def _received(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    if "referral_id" not in d:
        return
    view.received[d["referral_id"]] = ReceivedReferral(
        referral_id=d["referral_id"],
        case_id=d.get("case_id", ""),
        category=d.get("category", ""),
        urgency=d.get("urgency", ""),
        service_id=d.get("service_id", ""),
        referring_agency_id=d.get("referring_agency_id", ""),
        respond_by=d.get("respond_by"),
        received_at=m.time,
        history=[(m.time, "requested")],
    )


def _response_applied(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    referral = view.received.get(d.get("referral_id", ""))
    if referral is not None and "to_state" in d:
        referral.state = d["to_state"]
        referral.history.append((m.time, d["to_state"]))


def _disclosure(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    referral = view.received.get(d.get("referral_id", ""))
    if referral is not None:
        referral.disclosures.append(d)


def _cancelled(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    referral = view.received.get(d.get("referral_id", ""))
    if referral is not None:
        referral.cancelled = d
        referral.history.append((m.time, "cancelled"))
        if d.get("erase_received_data"):
            referral.disclosures.clear()  # erased: the page no longer offers to open it


def _status_changed(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    if "referral_id" not in d:
        return
    view.sent[d["referral_id"]] = SentReferral(
        referral_id=d["referral_id"],
        case_id=d.get("case_id", ""),
        need_id=d.get("need_id", ""),
        recipient_agency_id=d.get("recipient_agency_id", ""),
        state=d.get("to_state", ""),
        changed_at=m.time,
        reason_code=d.get("reason_code"),
    )
    view.unmet.pop((d.get("case_id", ""), d.get("need_id", "")), None)


def _unmatched(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    view.unmet[(d.get("case_id", ""), d.get("need_id", ""))] = {**d, "time": m.time}


def _follow_up(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    view.follow_ups[(d.get("case_id", ""), d.get("wave", ""))] = {**d, "time": m.time}


def _assessed(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    view.follow_ups.pop((d.get("case_id", ""), d.get("wave", "")), None)
    _answer(view, m, d)


def _answer(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    view.answers.append((m.time, m.ce_type, d))


def _accepted(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    ref = d.get("agency_case_ref")
    if isinstance(ref, str) and d.get("case_id"):
        case = view.cases.setdefault(ref, {"agency_case_ref": ref, "since": m.time})
        case.update(case_id=d["case_id"], outcome=d.get("outcome"), time=m.time)
    _answer(view, m, d)


def _handover_proposed(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    if "handover_id" in d:
        view.handovers[d["handover_id"]] = {**d, "state": "proposed", "time": m.time}


def _handover_moved(view: AgencyView, m: InboxMessage, d: dict[str, Any], state: str) -> None:
    handover = view.handovers.get(d.get("handover_id", ""))
    if handover is not None:
        handover.update(state=state, reason=d.get("reason"), time=m.time)


def _handover_ended(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    _handover_moved(view, m, d, str(d.get("state", "rejected")))
    _answer(view, m, d)


def _handover_failed(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    _handover_moved(view, m, d, "failed")
    _answer(view, m, d)


def _handed_over(view: AgencyView, m: InboxMessage, d: dict[str, Any]) -> None:
    """The case moved: the new owner has it under its own reference; the old one sees it gone."""
    _handover_moved(view, m, d, "completed")
    _answer(view, m, d)
    ref = d.get("to_agency_case_ref")
    if d.get("to_agency_id") == view.agency_id and isinstance(ref, str) and d.get("case_id"):
        case = view.cases.setdefault(ref, {"agency_case_ref": ref, "since": m.time})
        case.update(case_id=d["case_id"], outcome="handed_over_to_you", time=m.time)
    elif d.get("from_agency_id") == view.agency_id:
        for case in view.cases.values():
            if case.get("case_id") == d.get("case_id"):
                case.update(
                    outcome="handed_over", handed_over_to=d.get("to_agency_id"), time=m.time
                )


_APPLY = {
    ev.INBOX_REFERRAL_RECEIVED: _received,
    ev.INBOX_RESPONSE_APPLIED: _response_applied,
    ev.INBOX_DISCLOSURE_RECEIVED: _disclosure,
    ev.INBOX_REFERRAL_CANCELLED: _cancelled,
    ev.INBOX_STATUS_CHANGED: _status_changed,
    ev.INBOX_NEED_UNMATCHED: _unmatched,
    ev.INBOX_FOLLOW_UP_REMINDER: _follow_up,
    ev.INBOX_FOLLOW_UP_DUE: _follow_up,
    ev.INBOX_FOLLOW_UP_MISSED: _follow_up,
    ev.INBOX_ASSESSMENT_RECORDED: _assessed,
    ev.INBOX_SUBMISSION_ACCEPTED: _accepted,
    ev.INBOX_SUBMISSION_REJECTED: _answer,
    ev.INBOX_RESPONSE_REFUSED: _answer,
    ev.INBOX_LISTING_PUBLISHED: _answer,
    ev.INBOX_LISTING_REJECTED: _answer,
    ev.INBOX_HANDOVER_PROPOSED: _handover_proposed,
    ev.INBOX_HANDOVER_ENDED: _handover_ended,
    ev.INBOX_HANDOVER_FAILED: _handover_failed,
    ev.INBOX_HANDOVER_REFUSED: _answer,
    ev.INBOX_CASE_HANDED_OVER: _handed_over,
}


def view_of(messages: Iterable[InboxMessage], agency_id: str = "") -> AgencyView:
    view = AgencyView(agency_id)
    for message in messages:
        view.apply(message)
    return view
