"""Evidence on pathways: per return area, dimension and category — referrals made, acceptance
and completion rates, median hours to acknowledge and to decide, and unmet needs by reason.
Pseudonymous aggregates only. The store computes them (``ReferralStore.pathway_report``); this
module names and formats them."""

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
