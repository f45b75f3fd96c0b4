"""Indicator sets of follow-up assessments (issue 19): versioned data beside the taxonomy.

Each set is a JSON file here named by its id (``rss-v1.json``: modelled on IOM's Reintegration
Sustainability Survey). A set lists its indicators, each in one dimension with an answer scale
(option codes scored between 0 and 1), a weight inside its dimension, the dimensions' weights
in the composite, and the answers that carry no score (does not know, refused, not applicable).
Sets are read once at import and validated; a set whose weights or scores are out of range, or
whose codes repeat, makes the import fail. Other weights are another set with another id: an
assessment names its set, so scores never change meaning under old answers.

:func:`score` is the one scoring rule (pure): intake validates and scores with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..taxonomy import Dimension


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Option(_Frozen):
    code: str = Field(pattern=r"^[a-z0-9_]+$")
    score: float = Field(ge=0, le=1)
    label_en: str
    label_fr: str


class UnscoredAnswer(_Frozen):
    code: str = Field(pattern=r"^[a-z0-9_]+$")
    label_en: str
    label_fr: str


class Indicator(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    dimension: Dimension
    label_en: str
    label_fr: str
    weight: float = Field(gt=0)
    scale: tuple[Option, ...] = Field(min_length=2)

    def option(self, code: str) -> Option | None:
        return next((o for o in self.scale if o.code == code), None)


class IndicatorSet(_Frozen):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    description: str
    unscored_answers: tuple[UnscoredAnswer, ...]
    dimension_weights: dict[Dimension, float]
    indicators: tuple[Indicator, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [i.id for i in self.indicators]
        if len(set(ids)) != len(ids):
            raise ValueError("indicator ids repeat")
        unscored = {u.code for u in self.unscored_answers}
        for indicator in self.indicators:
            codes = [o.code for o in indicator.scale]
            if len(set(codes)) != len(codes) or unscored & set(codes):
                raise ValueError(f"{indicator.id}: option codes repeat")
        if set(self.dimension_weights) != set(Dimension) or not all(
            w > 0 for w in self.dimension_weights.values()
        ):
            raise ValueError("every dimension needs a positive weight")
        return self

    def indicator(self, indicator_id: str) -> Indicator | None:
        return next((i for i in self.indicators if i.id == indicator_id), None)

    def is_unscored(self, code: str) -> bool:
        return any(u.code == code for u in self.unscored_answers)


@dataclass(frozen=True, slots=True)
class Scores:
    """Dimension scores and the composite, each between 0 and 1 (None: nothing to score)."""

    economic: float | None
    social: float | None
    psychosocial: float | None
    composite: float | None
    indicators_answered: int  # answers that carried a score


@dataclass(frozen=True, slots=True)
class AnswerError:
    field: str  # e.g. answers.3.answer (the dotted paths of every field error)
    message: str


def _load(set_id: str) -> IndicatorSet:
    text = resources.files(__name__).joinpath(f"{set_id}.json").read_text(encoding="utf-8")
    return IndicatorSet.model_validate_json(text)


#: The indicator sets intake knows, by id.
INDICATOR_SETS = MappingProxyType({s.id: s for s in (_load("rss-v1"),)})


def check(indicator_set: IndicatorSet, answers: list[tuple[str, str]]) -> list[AnswerError]:
    """Field-level errors of ``(indicator, answer)`` pairs in the order sent: an indicator the
    set does not have, or an answer neither on its scale nor one of the unscored answers."""
    errors: list[AnswerError] = []
    for n, (indicator_id, code) in enumerate(answers):
        indicator = indicator_set.indicator(indicator_id)
        if indicator is None:
            errors.append(
                AnswerError(
                    f"answers.{n}.indicator", f"{indicator_set.id} has no indicator of this id"
                )
            )
        elif indicator.option(code) is None and not indicator_set.is_unscored(code):
            allowed = ", ".join(
                [o.code for o in indicator.scale] + [u.code for u in indicator_set.unscored_answers]
            )
            errors.append(AnswerError(f"answers.{n}.answer", f"not on the scale: one of {allowed}"))
    return errors


def _weighted(pairs: list[tuple[float, float]]) -> float | None:
    total = sum(w for _, w in pairs)
    return round(sum(s * w for s, w in pairs) / total, 4) if total else None


def score(indicator_set: IndicatorSet, answers: list[tuple[str, str]]) -> Scores:
    """The scores of answers :func:`check` found valid. A dimension's score is the weighted mean
    of its scored answers (an unscored answer or a missing indicator leaves its weight out);
    the composite is the weighted mean of the three dimension scores, and needs all three."""
    by_dimension: dict[Dimension, list[tuple[float, float]]] = {d: [] for d in Dimension}
    for indicator_id, code in answers:
        indicator = indicator_set.indicator(indicator_id)
        option = indicator.option(code) if indicator else None
        if indicator is not None and option is not None:
            by_dimension[indicator.dimension].append((option.score, indicator.weight))
    dimension = {d: _weighted(pairs) for d, pairs in by_dimension.items()}
    complete = [
        (s, indicator_set.dimension_weights[d]) for d, s in dimension.items() if s is not None
    ]
    composite = _weighted(complete) if len(complete) == len(Dimension) else None
    return Scores(
        economic=dimension[Dimension.ECONOMIC],
        social=dimension[Dimension.SOCIAL],
        psychosocial=dimension[Dimension.PSYCHOSOCIAL],
        composite=composite,
        indicators_answered=sum(len(p) for p in by_dimension.values()),
    )
