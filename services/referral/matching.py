"""Matching one need to the best listing. Pure ranking over candidates the database prefiltered.

Walking-skeleton ranking (the referral issue completes eligibility, consent and answer rates):
coverage precision first (a district listing beats a regional one beats a national one), then
capacity (has capacity before waitlist), then language overlap, then service id as tie-break.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.contracts import events as ev

_CAPACITY_SCORE = {ev.CapacityStatus.HAS_CAPACITY: 1.0, ev.CapacityStatus.WAITLIST: 0.5}


@dataclass(frozen=True, slots=True)
class Candidate:
    service_id: str
    agency_id: str
    coverage_areas: tuple[str, ...]
    languages: tuple[str, ...]
    capacity: ev.CapacityStatus


@dataclass(frozen=True, slots=True)
class Match:
    candidate: Candidate
    explanation: ev.MatchExplanation


def covering_depth(area: str, coverage: tuple[str, ...]) -> int:
    """Length of the most specific coverage code that contains the area (0: not covered)."""
    return max((len(code) for code in coverage if area.startswith(code)), default=0)


def score(candidate: Candidate, profile: ev.Profile) -> tuple[float, dict[str, float]]:
    depth = covering_depth(profile.return_area, candidate.coverage_areas)
    components = {
        "coverage_precision": round(depth / max(len(profile.return_area), 1), 4),
        "capacity": _CAPACITY_SCORE.get(candidate.capacity, 0.0),
        "language_overlap": float(len(set(profile.languages) & set(candidate.languages)) > 0),
    }
    weights = {"coverage_precision": 0.5, "capacity": 0.3, "language_overlap": 0.2}
    return round(sum(weights[k] * v for k, v in components.items()), 4), components


def best_match(need: ev.Need, profile: ev.Profile, candidates: list[Candidate]) -> Match | None:
    eligible = [
        c
        for c in candidates
        if covering_depth(profile.return_area, c.coverage_areas) > 0
        and c.capacity in _CAPACITY_SCORE
    ]
    if not eligible:
        return None
    ranked = sorted(
        ((score(c, profile), c) for c in eligible),
        key=lambda item: (-item[0][0], item[1].service_id),
    )
    (total, components), chosen = ranked[0]
    covering = [a for a in chosen.coverage_areas if profile.return_area.startswith(a)]
    matched = [
        f"category:{need.category}",
        "status:active",
        f"coverage:{max(covering, key=len)}",
        f"capacity:{chosen.capacity.value}",
    ]
    return Match(chosen, ev.MatchExplanation(matched=matched, score=total, components=components))
