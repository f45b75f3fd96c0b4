"""The shared taxonomy: service categories, urgencies, reason codes and other closed vocabularies.

The data lives in ``v1.json`` next to this module (the single source of truth; no category string
appears anywhere else in the code). It follows the IOM Integrated Approach to Reintegration:
three dimensions (economic, social, psychosocial) at three levels (individual, community,
structural). The file is read once at import with :mod:`importlib.resources` and validated with
the frozen pydantic models below; a malformed file, or one whose small closed sets differ from the
``StrEnum``\\ s here, makes the import fail rather than the services run on a half-known vocabulary.

Use :data:`TAXONOMY` for look-ups and :data:`CategoryCode` as the field type of a category.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from importlib import resources
from types import MappingProxyType
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..json_schema import JsonSchemaExtra

__all__ = [
    "TAXONOMY",
    "TAXONOMY_RESOURCE",
    "BeneficiaryType",
    "BeneficiaryTypeInfo",
    "CategoryCode",
    "CategoryInfo",
    "Dimension",
    "DimensionInfo",
    "LabelLanguage",
    "Level",
    "LevelInfo",
    "ReasonCode",
    "ReasonInfo",
    "ReasonedTransition",
    "ReturnType",
    "ReturnTypeInfo",
    "Taxonomy",
    "TaxonomyFile",
    "Term",
    "Urgency",
    "UrgencyInfo",
    "Vulnerability",
    "VulnerabilityInfo",
]

TAXONOMY_FILE = "v1.json"
# Where the data lives, as told in error messages ("shared/contracts/taxonomy/v1.json").
TAXONOMY_RESOURCE = f"{__name__.replace('.', '/')}/{TAXONOMY_FILE}"

LabelLanguage = Literal["en", "fr"]


# ---------- the small closed sets (must equal the JSON lists exactly) ----------


class Dimension(StrEnum):
    """Reintegration dimension (IOM integrated approach)."""

    ECONOMIC = "economic"
    SOCIAL = "social"
    PSYCHOSOCIAL = "psychosocial"


class Level(StrEnum):
    """Level at which an intervention works (IOM integrated approach)."""

    INDIVIDUAL = "individual"
    COMMUNITY = "community"
    STRUCTURAL = "structural"


class Urgency(StrEnum):
    """How fast a recipient agency must answer a referral (see :meth:`Taxonomy.answer_within`)."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    NORMAL = "normal"


class ReasonCode(StrEnum):
    """Why a referral was rejected, cancelled, put on hold, failed or expired."""

    AT_CAPACITY = "at_capacity"
    NOT_ELIGIBLE = "not_eligible"
    DUPLICATE = "duplicate"
    CONSENT_WITHDRAWN = "consent_withdrawn"
    UNREACHABLE = "unreachable"
    OUT_OF_AREA = "out_of_area"
    RETURNEE_DECLINED = "returnee_declined"
    NO_RESPONSE = "no_response"
    OTHER = "other"


class ReasonedTransition(StrEnum):
    """The referral transitions that carry a :class:`ReasonCode`."""

    REJECTED = "rejected"
    CANCELLED = "cancelled"
    ON_HOLD = "on_hold"
    FAILED = "failed"
    EXPIRED = "expired"


class Vulnerability(StrEnum):
    UNACCOMPANIED_MINOR = "unaccompanied_minor"
    SEPARATED_CHILD = "separated_child"
    MEDICAL_CONDITION = "medical_condition"
    DISABILITY = "disability"
    SURVIVOR_OF_TRAFFICKING = "survivor_of_trafficking"
    SURVIVOR_OF_GBV = "survivor_of_gbv"
    SINGLE_PARENT = "single_parent"
    ELDERLY = "elderly"
    PREGNANT_OR_LACTATING = "pregnant_or_lactating"
    MENTAL_HEALTH_CONDITION = "mental_health_condition"


class ReturnType(StrEnum):
    VOLUNTARY_ASSISTED = "voluntary_assisted"
    VOLUNTARY_SPONTANEOUS = "voluntary_spontaneous"
    DEPORTATION = "deportation"
    OTHER = "other"


class BeneficiaryType(StrEnum):
    RETURNEE = "returnee"
    COMMUNITY_MEMBER = "community_member"


# ---------- structure of the data file ----------

_NAME = r"[a-z][a-z0-9_]*"
_CATEGORY_SHAPE = re.compile(rf"({_NAME})\.({_NAME})")
_MAX_CODE_LENGTH = 64
# Non-empty, no surrounding whitespace.
_Label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Term(_Frozen):
    """One entry of a vocabulary: its code and its labels."""

    code: str
    label_en: _Label
    label_fr: _Label

    def label(self, lang: LabelLanguage = "en") -> str:
        return self.label_fr if lang == "fr" else self.label_en


class DimensionInfo(Term):
    code: Dimension


class LevelInfo(Term):
    code: Level


class CategoryInfo(Term):
    """A service category: ``<dimension>.<name>``."""

    code: Annotated[
        str,
        StringConstraints(max_length=_MAX_CODE_LENGTH, pattern=rf"^{_NAME}\.{_NAME}$"),
    ]
    dimension: Dimension
    # Closest Open Referral HSDS / 211-style taxonomy term name (a hint, not a code).
    hsds: _Label | None

    @model_validator(mode="after")
    def _prefix_is_dimension(self) -> CategoryInfo:
        prefix = self.code.split(".", 1)[0]
        if prefix != self.dimension.value:
            raise ValueError(
                f"category {self.code}: the code prefix must be its dimension {self.dimension}"
            )
        return self


class UrgencyInfo(Term):
    code: Urgency
    answer_within_hours: Annotated[int, Field(gt=0, le=24 * 366)]

    @property
    def answer_within(self) -> timedelta:
        return timedelta(hours=self.answer_within_hours)


class ReasonInfo(Term):
    code: ReasonCode
    applies_to: Annotated[tuple[ReasonedTransition, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _no_repeats(self) -> ReasonInfo:
        if len(set(self.applies_to)) != len(self.applies_to):
            raise ValueError(f"reason {self.code}: applies_to lists a transition twice")
        return self


class VulnerabilityInfo(Term):
    code: Vulnerability


class ReturnTypeInfo(Term):
    code: ReturnType


class BeneficiaryTypeInfo(Term):
    code: BeneficiaryType


def _check_codes(
    section: str, codes: Iterable[str], expected: type[StrEnum] | None = None
) -> list[str]:
    """Problems of one section: repeated codes, and (for a closed set) differences to its enum."""
    problems: list[str] = []
    seen: set[str] = set()
    for code in codes:
        if code in seen:
            problems.append(f"{section}: {code} is listed twice")
        seen.add(code)
    if expected is not None:
        wanted = {m.value for m in expected}
        if missing := sorted(wanted - seen):
            problems.append(
                f"{section}: {', '.join(missing)} in enum {expected.__name__} but not in the file"
            )
        if extra := sorted(seen - wanted):
            problems.append(
                f"{section}: {', '.join(extra)} in the file but not in enum {expected.__name__}"
            )
    return problems


class TaxonomyFile(_Frozen):
    """The structure of ``v<N>.json``."""

    version: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]*$")]
    description: str
    dimensions: tuple[DimensionInfo, ...]
    levels: tuple[LevelInfo, ...]
    categories: Annotated[tuple[CategoryInfo, ...], Field(min_length=1)]
    urgencies: tuple[UrgencyInfo, ...]
    reason_codes: tuple[ReasonInfo, ...]
    vulnerabilities: tuple[VulnerabilityInfo, ...]
    return_types: tuple[ReturnTypeInfo, ...]
    beneficiary_types: tuple[BeneficiaryTypeInfo, ...]

    @model_validator(mode="after")
    def _consistent(self) -> TaxonomyFile:
        problems = [
            *_check_codes("dimensions", (t.code for t in self.dimensions), Dimension),
            *_check_codes("levels", (t.code for t in self.levels), Level),
            *_check_codes("categories", (t.code for t in self.categories)),
            *_check_codes("urgencies", (t.code for t in self.urgencies), Urgency),
            *_check_codes("reason_codes", (t.code for t in self.reason_codes), ReasonCode),
            *_check_codes("vulnerabilities", (t.code for t in self.vulnerabilities), Vulnerability),
            *_check_codes("return_types", (t.code for t in self.return_types), ReturnType),
            *_check_codes(
                "beneficiary_types", (t.code for t in self.beneficiary_types), BeneficiaryType
            ),
        ]
        covered = {c.dimension for c in self.categories}
        problems += [f"categories: none in dimension {d}" for d in Dimension if d not in covered]
        hours = {u.code: u.answer_within_hours for u in self.urgencies}
        order = [Urgency.EMERGENCY, Urgency.URGENT, Urgency.NORMAL]
        if all(u in hours for u in order) and not (
            hours[order[0]] < hours[order[1]] < hours[order[2]]
        ):
            problems.append("urgencies: answer_within_hours must grow from emergency to normal")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ---------- the API ----------

_K = TypeVar("_K", bound=str)
_T = TypeVar("_T")


def _frozen(items: dict[_K, _T]) -> Mapping[_K, _T]:
    return MappingProxyType(items)


@dataclass(frozen=True, eq=False)
class Taxonomy:
    """Read-only view of one taxonomy version; build it with :meth:`from_json`."""

    version: str
    source: str
    dimensions: Mapping[Dimension, DimensionInfo]
    levels: Mapping[Level, LevelInfo]
    categories: Mapping[str, CategoryInfo]
    urgencies: Mapping[Urgency, UrgencyInfo]
    reason_codes: Mapping[ReasonCode, ReasonInfo]
    vulnerabilities: Mapping[Vulnerability, VulnerabilityInfo]
    return_types: Mapping[ReturnType, ReturnTypeInfo]
    beneficiary_types: Mapping[BeneficiaryType, BeneficiaryTypeInfo]

    @classmethod
    def from_json(cls, data: str | bytes, source: str = "<string>") -> Taxonomy:
        """Validate a taxonomy file; raises :class:`pydantic.ValidationError` (a ``ValueError``)."""
        parsed = TaxonomyFile.model_validate_json(data)
        return cls(
            version=parsed.version,
            source=source,
            dimensions=_frozen({t.code: t for t in parsed.dimensions}),
            levels=_frozen({t.code: t for t in parsed.levels}),
            categories=_frozen({t.code: t for t in parsed.categories}),
            urgencies=_frozen({t.code: t for t in parsed.urgencies}),
            reason_codes=_frozen({t.code: t for t in parsed.reason_codes}),
            vulnerabilities=_frozen({t.code: t for t in parsed.vulnerabilities}),
            return_types=_frozen({t.code: t for t in parsed.return_types}),
            beneficiary_types=_frozen({t.code: t for t in parsed.beneficiary_types}),
        )

    # --- categories ---

    def is_category(self, code: str) -> bool:
        return code in self.categories

    def category(self, code: str) -> CategoryInfo:
        try:
            return self.categories[code]
        except KeyError:
            raise KeyError(f"unknown service category {code!r} (see {self.source})") from None

    def dimension_of(self, category_code: str) -> Dimension:
        """Dimension of a category; ``KeyError`` for an unknown one."""
        return self.category(category_code).dimension

    def categories_in(self, dimension: Dimension | str) -> tuple[str, ...]:
        """Codes of the categories of one dimension, in file order."""
        dim = Dimension(dimension)
        return tuple(c.code for c in self.categories.values() if c.dimension is dim)

    # --- urgencies and reasons ---

    def answer_within(self, urgency: Urgency | str) -> timedelta:
        """How long a recipient has to answer a referral of that urgency."""
        return self.urgencies[Urgency(urgency)].answer_within

    def reason_applies(self, reason_code: ReasonCode | str, transition: str) -> bool:
        """Whether the reason code may justify that referral transition.

        Fails closed: False for an unknown reason code and for any transition that takes no
        reason (e.g. ``accepted``), so a caller refusing on False never lets a bad pair through.
        """
        try:
            info = self.reason_codes[ReasonCode(reason_code)]
        except (ValueError, KeyError):
            return False
        return transition in info.applies_to

    def reasons_for(self, transition: ReasonedTransition | str) -> tuple[ReasonCode, ...]:
        """The reason codes that may justify a transition, in file order."""
        return tuple(r.code for r in self.reason_codes.values() if transition in r.applies_to)

    # --- labels ---

    def label(self, code: str, lang: LabelLanguage = "en") -> str:
        """Label of a term: an enum member picks its own vocabulary, a plain str is a category.

        ``TAXONOMY.label(Dimension.SOCIAL, "fr")``, ``TAXONOMY.label("social.housing")``.
        Raises ``KeyError`` for an unknown category.
        """
        term: Term
        if isinstance(code, Dimension):
            term = self.dimensions[code]
        elif isinstance(code, Level):
            term = self.levels[code]
        elif isinstance(code, Urgency):
            term = self.urgencies[code]
        elif isinstance(code, ReasonCode):
            term = self.reason_codes[code]
        elif isinstance(code, Vulnerability):
            term = self.vulnerabilities[code]
        elif isinstance(code, ReturnType):
            term = self.return_types[code]
        elif isinstance(code, BeneficiaryType):
            term = self.beneficiary_types[code]
        else:
            term = self.category(code)
        return term.label(lang)


def _load() -> Taxonomy:
    data = resources.files(__name__).joinpath(TAXONOMY_FILE).read_text(encoding="utf-8")
    taxonomy = Taxonomy.from_json(data, source=TAXONOMY_RESOURCE)
    if taxonomy.version != TAXONOMY_FILE.removeprefix("v").removesuffix(".json"):
        raise ValueError(f"{TAXONOMY_RESOURCE}: version {taxonomy.version} differs from its name")
    return taxonomy


TAXONOMY: Taxonomy = _load()


# ---------- pydantic field types ----------


def _known_category(code: str) -> str:
    if TAXONOMY.is_category(code):
        return code
    context = {"source": TAXONOMY.source}
    if len(code) > _MAX_CODE_LENGTH or not (
        _CATEGORY_SHAPE.fullmatch(code) or re.fullmatch(_NAME, code)
    ):
        # Not code-shaped: could be anything (even personal data), so it is not repeated.
        raise PydanticCustomError(
            "unknown_category",
            "not a service category code: expected '<dimension>.<name>' as listed in {source}",
            context,
        )
    suggestions = [c for c in TAXONOMY.categories if c.split(".", 1)[1] == code]
    hint = f"; did you mean {suggestions[0]!r}?" if len(suggestions) == 1 else ""
    raise PydanticCustomError(
        "unknown_category",
        "unknown service category '{code}': the known categories are listed in {source}" + hint,
        {**context, "code": code},
    )


CategoryCode = Annotated[
    str, AfterValidator(_known_category), JsonSchemaExtra({"enum": list(TAXONOMY.categories)})
]
"""A service category code that exists in :data:`TAXONOMY` (e.g. ``"social.housing"``)."""
