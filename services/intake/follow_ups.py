"""Follow-up plans and assessments, apart from I/O (issue 19, decision 21).

A plan is the waves an owner follows its cases at, each so many days after the case's
registration (``baseline:0,month_3:90,...``). Its rows live in intake's ``follow_ups`` table;
the periodic job asks :func:`next_stage` what each row is due for. An assessment is checked by
:func:`assessment_refusal` (who may assess what) and scored by ``shared.contracts.outcomes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from shared.contracts import events as ev
from shared.contracts.events import FollowUpStage

_WAVE = re.compile(r"^[a-z0-9_]{1,40}$")


@dataclass(frozen=True, slots=True)
class Wave:
    name: str
    days: int  # after the case's registration


Plan = tuple[Wave, ...]


def parse_plan(text: str) -> Plan:
    """``baseline:0,month_3:90`` → waves, in order of their days; a malformed plan raises
    ValueError (the settings refuse to start on it)."""
    waves: list[Wave] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, days = part.partition(":")
        if not sep or not _WAVE.match(name) or not days.strip().isdigit():
            raise ValueError(f"a wave is name:days (e.g. month_6:180), not {part!r}")
        waves.append(Wave(name, int(days)))
    if not waves or len({w.name for w in waves}) != len(waves):
        raise ValueError("a plan has at least one wave and no wave twice")
    return tuple(sorted(waves, key=lambda w: (w.days, w.name)))


@dataclass(frozen=True, slots=True)
class Programme:
    """Every owner's follow-up plan: the default, or the owner's own."""

    default: Plan
    by_agency: dict[str, Plan]
    reminder_days: int  # the reminder this many days before a wave is due
    grace_days: int  # a wave due and not assessed this many days after is missed

    def plan_of(self, agency_id: str) -> Plan:
        return self.by_agency.get(agency_id, self.default)


#: The settings' defaults (IntakeSettings.programme()): baseline, 3, 6 and 12 months.
DEFAULT_PROGRAMME = Programme(
    default=parse_plan("baseline:0,month_3:90,month_6:180,month_12:365"),
    by_agency={},
    reminder_days=7,
    grace_days=30,
)


def follows_up(consent: ev.Consent, today: date) -> bool:
    """Whether the consent lets the owner follow the returnee up (purpose ``follow_up``, not
    expired)."""
    scope = consent.scope
    return (
        consent.given
        and scope is not None
        and ev.ConsentPurpose.FOLLOW_UP in scope.purposes
        and (scope.expires_on is None or scope.expires_on >= today)
    )


@dataclass(frozen=True, slots=True)
class PlannedWave:
    wave: str
    due_on: date
    remind_on: date


def planned(plan: Plan, registered_on: date, reminder_days: int) -> list[PlannedWave]:
    """The plan's waves for a case registered on ``registered_on``."""
    return [
        PlannedWave(
            w.name,
            registered_on + timedelta(days=w.days),
            registered_on + timedelta(days=max(w.days - reminder_days, 0)),
        )
        for w in plan
    ]


def next_stage(
    status: str, due_on: date, remind_on: date, today: date, grace_days: int
) -> FollowUpStage | None:
    """What a follow-up row is due for today, if anything: its reminder (before the date),
    the date itself, or missed once the grace period after it passed with no assessment.
    One stage per run: a row late for all three goes through each in order."""
    if status == "scheduled" and remind_on <= today < due_on:
        return FollowUpStage.REMINDER
    if status in ("scheduled", "reminded") and today >= due_on:
        return FollowUpStage.DUE
    if status == "due" and today > due_on + timedelta(days=grace_days):
        return FollowUpStage.MISSED
    return None


#: The status a row takes once its stage was told.
STATUS_AFTER = {
    FollowUpStage.REMINDER: "reminded",
    FollowUpStage.DUE: "due",
    FollowUpStage.MISSED: "missed",
}


@dataclass(frozen=True, slots=True)
class AssessmentRefusal:
    field: str
    reason: str


def assessment_refusal(
    status: str | None,
    owner: str | None,
    consent: ev.Consent | None,
    assessment: ev.AssessmentSubmission,
    plan: Plan,
    today: date,
) -> AssessmentRefusal | None:
    """Why intake refuses the assessment of a case (``status`` None: no such case), if it
    does: the case must exist, not be erased, be the sender's, have ``follow_up`` consent, and
    the wave be one of its owner's plan."""
    if status is None or status == "erased" or consent is None:
        return AssessmentRefusal("case_id", "no case with this case_id")
    if owner != assessment.agency_id:
        return AssessmentRefusal("case_id", "the case is not this agency's: its owner assesses it")
    if not follows_up(consent, today):
        return AssessmentRefusal(
            "case_id", "the case's consent does not include follow_up: no assessment is kept"
        )
    waves = [w.name for w in plan]
    if assessment.wave not in waves:
        listed = ", ".join(waves)
        return AssessmentRefusal("wave", f"not a wave of the owner's plan: one of {listed}")
    return None
