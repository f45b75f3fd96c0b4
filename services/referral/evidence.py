"""Evidence on pathways: per return area, dimension and category — referrals made, acceptance
and completion rates, median hours to acknowledge and to decide, and unmet needs by reason; and
on continuity, per return area and programme (the owner agency) — handovers and how they ended,
ends of assistance, and needs whose support continued after the owner's assistance ended; and
the structural gaps reported to government agencies, with their commitments beside them.
Pseudonymous aggregates only. The store computes them (``ReferralStore.pathway_report``,
``continuity_report``, ``structural_report``); this module names and formats them."""

from __future__ import annotations

from dataclasses import dataclass

COLUMNS = (
    "area",
    "dimension",
    "category",
    "referrals",
    "acceptance_rate",
    "completion_rate",
    "median_hours_to_answer",
    "median_hours_to_decide",
    "unmet_needs",
    "unmet_reasons",
)


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    values: tuple[object, ...]

    def formatted(self) -> list[str]:
        out = []
        for column, value in zip(COLUMNS, self.values, strict=True):
            if value is None:
                out.append("")
            elif column.endswith("_rate"):
                out.append(f"{float(value):.0%}")  # type: ignore[arg-type]
            elif column.startswith("median"):
                out.append(f"{float(value):.1f}")  # type: ignore[arg-type]
            else:
                out.append(str(value))
        return out


CONTINUITY_COLUMNS = (
    "area",
    "programme",
    "handovers_proposed",
    "handovers_requested",
    "handovers_completed",
    "handovers_rejected",
    "handovers_expired",
    "handovers_failed",
    "assistance_ended",
    "needs_continued",
)


@dataclass(frozen=True, slots=True)
class ContinuityRow:
    values: tuple[object, ...]

    def formatted(self) -> list[str]:
        return ["" if value is None else str(value) for value in self.values]


# ----- issue 18: by level and beneficiary type -----

LEVEL_COLUMNS = (
    "level",
    "beneficiary_type",
    "needs",
    "needs_referred",
    "needs_accepted",
    "needs_completed",
    "needs_unmet",
    "people_affected",
    "returnees_affected",
)


@dataclass(frozen=True, slots=True)
class LevelRow:
    """Per level (individual, community, structural) and beneficiary type (returnee for a
    returnee's case, community_member for a community need): the needs, how many were
    referred, accepted, completed and are left unmet; the people concerned (one per returnee
    case; a community need's people affected) and the returnees among them (a community need's
    people affected times its returnee share, rounded)."""

    values: tuple[object, ...]

    def formatted(self) -> list[str]:
        return ["" if value is None else str(value) for value in self.values]


STRUCTURAL_COLUMNS = (
    "area",
    "dimension",
    "category",
    "period_start",
    "period_end",
    "unmet_needs",
    "previous_period",
    "trend",
    "unmet_reasons",
    "report_id",
    "addressed_agency",
    "commitment",
    "service_id",
    "planned_by",
    "not_planned_reason",
    "committed_at",
)


# Formatted as the continuity rows: every value as text, nothing for none.
StructuralRow = ContinuityRow
