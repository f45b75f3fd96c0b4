"""The console's words that come from code or contracts rather than from a template: error
messages and vocabulary codes shown as they are (actions, capacity, reasons of ending and
closing, consent purposes, follow-up stages, profile values). Marked here so ``make messages``
extracts them into the shared catalogue; the templates translate them where they show them."""

from __future__ import annotations

from .languages import N_

ERRORS = (
    N_("No follow-up of your cases has this id."),
    N_("No referral of your agency has this id."),
    N_("The form has expired; try again."),
    N_("Unknown action."),
    N_("Your agency has no case with this reference."),
    N_("Your agency has no listing with this id."),
    N_("Your listings cannot be read right now."),
    N_("Unknown user or wrong password."),
    N_("Too many failed logins: wait a few minutes and try again."),
    N_("The exchange cannot be reached; try again shortly."),
    N_("No handover waits on your agency's answer under this id."),
)
ACTIONS = (
    N_("acknowledge"),
    N_("accept"),
    N_("reject"),
    N_("start"),
    N_("hold"),
    N_("resume"),
    N_("complete"),
    N_("fail"),
)
STATES = (
    N_("requested"),
    N_("received"),
    N_("accepted"),
    N_("rejected"),
    N_("in_progress"),
    N_("on_hold"),
    N_("completed"),
    N_("failed"),
    N_("expired"),
    N_("cancelled"),
    N_("entered_in_error"),
)
OUTCOMES = (N_("achieved"), N_("partially_achieved"), N_("not_achieved"))
CAPACITY = (N_("has_capacity"), N_("waitlist"), N_("no_capacity"))
ASSISTANCE_END = (
    N_("completed"),
    N_("budget_ended"),
    N_("programme_ended"),
    N_("returnee_moved"),
    N_("contact_lost"),
)
CLOSURE = (
    N_("completed"),
    N_("returnee_declined"),
    N_("relocated"),
    N_("lost_contact"),
    N_("deceased"),
    N_("other"),
)
RETURN_TYPES = (
    N_("voluntary_assisted"),
    N_("voluntary_spontaneous"),
    N_("deportation"),
    N_("other"),
)
PURPOSES = (N_("referral"), N_("follow_up"), N_("statistics"))
STAGES = (N_("reminder"), N_("due"), N_("missed"))
PROFILE = (
    N_("female"),
    N_("male"),
    N_("other"),
    N_("unknown"),
    N_("written"),
    N_("verbal"),
    N_("digital"),
)
CASE_OUTCOMES = (
    N_("registered"),
    N_("updated"),
    N_("consent_withdrawn"),
    N_("closed"),
    N_("erased"),
    N_("handed_over"),
    N_("handed_over_to_you"),
)
URGENCIES = (N_("emergency"), N_("urgent"), N_("normal"))
HANDOVER_STATES = (N_("proposed"), N_("completed"), N_("rejected"), N_("expired"), N_("failed"))
HANDOVER_REASONS = (
    N_("programme_ended"),
    N_("long_term_support"),
    N_("government_service"),
    N_("returnee_moved"),
    N_("other"),
)
HANDOVER_DECLINES = (
    N_("no_capacity"),
    N_("not_in_mandate"),
    N_("area_not_covered"),
    N_("owner_continues"),
    N_("other"),
)
HANDOVER_FAILURES = (
    N_("no_consent"),
    N_("purpose_not_covered"),
    N_("consent_expired"),
    N_("agency_not_covered"),
    N_("agency_type_not_covered"),
    N_("unknown_agency"),
    N_("no_public_key"),
    N_("case_not_open"),
    N_("owner_changed"),
    N_("reference_taken"),
    N_("unknown_case"),
)
