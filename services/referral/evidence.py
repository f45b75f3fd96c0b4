"""Evidence on pathways: per return area, dimension and category — referrals made, acceptance
and completion rates, median hours to acknowledge and to decide, and unmet needs by reason.
Pseudonymous aggregates only."""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import DbConnection

# The area level reported: the first `area_digits` digits after the country code
# (2 = first administrative level, as in P-codes "SN01").
_REPORT = """
WITH r AS (
    SELECT r.referral_id, r.category, split_part(r.category, '.', 1) AS dimension,
           left(c.profile->>'return_area', 2 + $1) AS area, r.status, r.created_at,
           (SELECT min(t.at) FROM referral_transitions t WHERE t.referral_id = r.referral_id
             AND t.to_state <> 'cancelled') AS first_answer_at,
           (SELECT min(t.at) FROM referral_transitions t WHERE t.referral_id = r.referral_id
             AND t.to_state IN ('accepted', 'rejected')) AS decided_at,
           EXISTS (SELECT 1 FROM referral_transitions t WHERE t.referral_id = r.referral_id
             AND t.to_state = 'accepted') AS was_accepted
      FROM referrals r JOIN cases c USING (case_id)
), made AS (
    SELECT area, dimension, category,
           count(*) AS referrals,
           avg(CASE WHEN was_accepted THEN 1.0 ELSE 0.0 END) AS acceptance_rate,
           avg(CASE WHEN status = 'completed' THEN 1.0 ELSE 0.0 END)
               FILTER (WHERE was_accepted) AS completion_rate,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY
               extract(epoch FROM first_answer_at - created_at) / 3600) AS median_hours_to_answer,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY
               extract(epoch FROM decided_at - created_at) / 3600) AS median_hours_to_decide
      FROM r GROUP BY 1, 2, 3
), unmet_by_reason AS (
    SELECT left(area, 2 + $1) AS area, split_part(category, '.', 1) AS dimension, category,
           reason, count(*) AS n
      FROM unmet_needs GROUP BY 1, 2, 3, 4
), unmet AS (
    SELECT area, dimension, category, sum(n)::int AS unmet_needs,
           string_agg(reason || ' x' || n, ', ' ORDER BY reason) AS unmet_reasons
      FROM unmet_by_reason GROUP BY 1, 2, 3
)
SELECT coalesce(m.area, u.area) AS area, coalesce(m.dimension, u.dimension) AS dimension,
       coalesce(m.category, u.category) AS category, coalesce(m.referrals, 0) AS referrals,
       m.acceptance_rate, m.completion_rate, m.median_hours_to_answer, m.median_hours_to_decide,
       coalesce(u.unmet_needs, 0) AS unmet_needs, coalesce(u.unmet_reasons, '') AS unmet_reasons
  FROM made m FULL JOIN unmet u USING (area, dimension, category)
 ORDER BY 1, 2, 3
"""

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


async def pathway_report(conn: DbConnection, area_digits: int = 2) -> list[EvidenceRow]:
    rows = await conn.fetch(_REPORT, area_digits)
    return [EvidenceRow(tuple(r[c] for c in COLUMNS)) for r in rows]
