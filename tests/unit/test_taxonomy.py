"""The taxonomy data file, its agreement with the enums, and the look-up API."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import timedelta
from enum import StrEnum
from importlib import resources
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.contracts.taxonomy import (
    TAXONOMY,
    BeneficiaryType,
    CategoryCode,
    Dimension,
    Level,
    ReasonCode,
    ReasonedTransition,
    ReturnType,
    Taxonomy,
    Urgency,
    Vulnerability,
)

SECTIONS: list[tuple[str, type[StrEnum]]] = [
    ("dimensions", Dimension),
    ("levels", Level),
    ("urgencies", Urgency),
    ("reason_codes", ReasonCode),
    ("vulnerabilities", Vulnerability),
    ("return_types", ReturnType),
    ("beneficiary_types", BeneficiaryType),
]
ALL_SECTIONS = [name for name, _ in SECTIONS] + ["categories"]


def raw() -> dict[str, Any]:
    """The data file as shipped, read independently of the loader."""
    text = (
        resources.files("shared.contracts.taxonomy").joinpath("v1.json").read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


def load(data: dict[str, Any]) -> Taxonomy:
    return Taxonomy.from_json(json.dumps(data))


# ---------- the data file ----------


def test_data_file_ships_in_the_package() -> None:
    assert resources.files("shared.contracts.taxonomy").joinpath("v1.json").is_file()


def test_version_is_1() -> None:
    assert raw()["version"] == "1"
    assert TAXONOMY.version == "1"


@pytest.mark.parametrize(("section", "enum"), SECTIONS)
def test_file_lists_exactly_the_enum_members(section: str, enum: type[StrEnum]) -> None:
    codes = [entry["code"] for entry in raw()[section]]
    assert len(codes) == len(set(codes)), f"{section} repeats a code"
    assert set(codes) == {m.value for m in enum}


@pytest.mark.parametrize("section", ALL_SECTIONS)
def test_every_term_has_english_and_french_labels(section: str) -> None:
    for entry in raw()[section]:
        for key in ("label_en", "label_fr"):
            label = entry[key]
            assert isinstance(label, str), (section, entry["code"], key)
            assert label and label == label.strip(), (section, entry["code"], key)


def test_category_codes_are_unique() -> None:
    codes = [c["code"] for c in raw()["categories"]]
    assert len(codes) == len(set(codes))


def test_every_category_code_is_prefixed_by_its_dimension() -> None:
    for entry in raw()["categories"]:
        prefix, _, name = entry["code"].partition(".")
        assert prefix == entry["dimension"], entry["code"]
        assert name and name.replace("_", "").isalnum() and name == name.lower(), entry["code"]
    for code, info in TAXONOMY.categories.items():
        assert code.split(".", 1)[0] == info.dimension.value


def test_hsds_hint_is_null_or_a_term_name() -> None:
    for entry in raw()["categories"]:
        assert "hsds" in entry, entry["code"]
        hint = entry["hsds"]
        assert hint is None or (isinstance(hint, str) and hint.strip() == hint != ""), hint


REQUIRED_CATEGORIES = {
    Dimension.ECONOMIC: [
        "job_placement",
        "vocational_training",
        "business_startup_grant",
        "microfinance",
        "financial_literacy",
        "cash_assistance",
    ],
    Dimension.SOCIAL: [
        "housing",
        "health_care",
        "education",
        "civil_documentation",
        "legal_aid",
        "family_tracing",
        "social_protection",
        "transport",
    ],
    Dimension.PSYCHOSOCIAL: [
        "counselling",
        "specialised_mental_health",
        "peer_support",
        "community_activities",
        "family_mediation",
    ],
}


@pytest.mark.parametrize("dimension", list(Dimension))
def test_required_categories_exist_in_their_dimension(dimension: Dimension) -> None:
    in_dimension = TAXONOMY.categories_in(dimension)
    for name in REQUIRED_CATEGORIES[dimension]:
        assert f"{dimension}.{name}" in in_dimension
        assert TAXONOMY.dimension_of(f"{dimension}.{name}") is dimension


def test_categories_in_partitions_the_categories() -> None:
    parts = [set(TAXONOMY.categories_in(d)) for d in Dimension]
    assert all(parts)
    assert set().union(*parts) == set(TAXONOMY.categories)
    assert sum(len(p) for p in parts) == len(TAXONOMY.categories)


# ---------- the loader refuses a bad file ----------


def test_loader_accepts_the_shipped_file() -> None:
    assert set(load(raw()).categories) == set(TAXONOMY.categories)


def test_loader_refuses_a_missing_enum_member() -> None:
    data = raw()
    data["vulnerabilities"] = [
        v for v in data["vulnerabilities"] if v["code"] != "mental_health_condition"
    ]
    with pytest.raises(ValueError, match=r"mental_health_condition in enum Vulnerability but not"):
        load(data)


def test_loader_refuses_a_code_the_enum_lacks() -> None:
    data = raw()
    data["levels"].append({"code": "global", "label_en": "Global", "label_fr": "Mondial"})
    with pytest.raises(ValidationError, match="levels"):
        load(data)


def test_loader_refuses_a_repeated_code() -> None:
    data = raw()
    data["categories"].append(copy.deepcopy(data["categories"][0]))
    with pytest.raises(ValueError, match="listed twice"):
        load(data)


def test_loader_refuses_a_category_outside_its_dimension_prefix() -> None:
    data = raw()
    data["categories"][0]["dimension"] = "social"
    assert data["categories"][0]["code"].startswith("economic.")
    with pytest.raises(ValueError, match="prefix must be its dimension"):
        load(data)


def test_loader_refuses_unknown_fields_and_missing_labels() -> None:
    data = raw()
    data["categories"][0]["colour"] = "red"
    with pytest.raises(ValidationError):
        load(data)
    data = raw()
    del data["reason_codes"][0]["label_fr"]
    with pytest.raises(ValidationError):
        load(data)


def test_loader_refuses_an_unknown_transition_and_an_empty_applies_to() -> None:
    data = raw()
    data["reason_codes"][0]["applies_to"] = ["accepted"]
    with pytest.raises(ValidationError):
        load(data)
    data["reason_codes"][0]["applies_to"] = []
    with pytest.raises(ValidationError):
        load(data)


def test_loader_refuses_urgencies_out_of_order() -> None:
    data = raw()
    for u in data["urgencies"]:
        if u["code"] == "emergency":
            u["answer_within_hours"] = 500
    with pytest.raises(ValueError, match="grow from emergency to normal"):
        load(data)


def test_loader_refuses_a_dimension_without_categories() -> None:
    data = raw()
    data["categories"] = [c for c in data["categories"] if c["dimension"] != "psychosocial"]
    with pytest.raises(ValueError, match="none in dimension psychosocial"):
        load(data)


# ---------- urgencies and reasons ----------


@pytest.mark.parametrize(
    ("urgency", "hours"),
    [(Urgency.EMERGENCY, 24), (Urgency.URGENT, 72), (Urgency.NORMAL, 14 * 24)],
)
def test_answer_within(urgency: Urgency, hours: int) -> None:
    assert TAXONOMY.answer_within(urgency) == timedelta(hours=hours)
    assert TAXONOMY.answer_within(urgency.value) == timedelta(hours=hours)


def test_answer_within_refuses_an_unknown_urgency() -> None:
    with pytest.raises(ValueError):
        TAXONOMY.answer_within("whenever")


@pytest.mark.parametrize(
    ("reason", "transitions"),
    [
        (ReasonCode.AT_CAPACITY, {"rejected", "on_hold"}),
        (ReasonCode.CONSENT_WITHDRAWN, {"cancelled"}),
        (ReasonCode.NO_RESPONSE, {"expired"}),
        (ReasonCode.OUT_OF_AREA, {"rejected"}),
        (ReasonCode.OTHER, {t.value for t in ReasonedTransition}),
    ],
)
def test_reason_applies(reason: ReasonCode, transitions: set[str]) -> None:
    for transition in ReasonedTransition:
        expected = transition.value in transitions
        assert TAXONOMY.reason_applies(reason, transition) is expected, (reason, transition)
        assert TAXONOMY.reason_applies(reason.value, transition.value) is expected


def test_every_reason_applies_to_some_transition() -> None:
    for reason in ReasonCode:
        assert any(TAXONOMY.reason_applies(reason, t) for t in ReasonedTransition), reason


def test_reason_applies_fails_closed() -> None:
    assert TAXONOMY.reason_applies("not_a_reason", "rejected") is False
    assert TAXONOMY.reason_applies(ReasonCode.OTHER, "accepted") is False
    assert TAXONOMY.reason_applies(ReasonCode.OTHER, "Rejected") is False


def test_reasons_for_expired() -> None:
    assert TAXONOMY.reasons_for(ReasonedTransition.EXPIRED) == (
        ReasonCode.NO_RESPONSE,
        ReasonCode.OTHER,
    )
    assert TAXONOMY.reasons_for("accepted") == ()


# ---------- look-ups and labels ----------


def test_dimension_of() -> None:
    assert TAXONOMY.dimension_of("psychosocial.peer_support") is Dimension.PSYCHOSOCIAL
    assert TAXONOMY.dimension_of("economic.microfinance") is Dimension.ECONOMIC
    with pytest.raises(KeyError, match=r"v1\.json"):
        TAXONOMY.dimension_of("social.unknown")


def test_is_category() -> None:
    assert TAXONOMY.is_category("social.housing")
    assert not TAXONOMY.is_category("housing")
    assert not TAXONOMY.is_category("social")
    assert not TAXONOMY.is_category("SOCIAL.HOUSING")


def test_labels_pick_the_vocabulary_of_the_enum() -> None:
    assert TAXONOMY.label(Dimension.SOCIAL) == "Social"
    assert TAXONOMY.label(Dimension.SOCIAL, "fr") == "Sociale"
    assert TAXONOMY.label(Level.COMMUNITY, "fr") == "Communautaire"
    assert TAXONOMY.label(ReturnType.DEPORTATION, "fr") == "Expulsion"
    assert TAXONOMY.label(ReasonCode.OTHER, "fr") == "Autre"
    assert TAXONOMY.label(Vulnerability.SURVIVOR_OF_GBV) == "Survivor of gender-based violence"
    assert TAXONOMY.label(BeneficiaryType.RETURNEE, "fr") == "Personne de retour"
    assert TAXONOMY.label(Urgency.URGENT) == "Urgent"
    assert TAXONOMY.label("social.housing") == "Housing"
    assert TAXONOMY.label("social.housing", "fr") == "Logement"
    with pytest.raises(KeyError):
        TAXONOMY.label("social")  # a dimension code as a plain str is not a category


def test_taxonomy_is_read_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TAXONOMY.version = "2"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TAXONOMY.categories["social.pets"] = TAXONOMY.categories["social.housing"]  # type: ignore[index]
    with pytest.raises(ValidationError):
        TAXONOMY.categories["social.housing"].label_en = "Homes"  # type: ignore[misc]


# ---------- CategoryCode ----------


class Need(BaseModel):
    category: CategoryCode


def category_error(value: object) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        Need(category=value)
    (error,) = caught.value.errors()
    assert error["loc"] == ("category",)
    return dict(error)


def test_category_code_accepts_every_known_category() -> None:
    adapter = TypeAdapter(CategoryCode)
    for code in TAXONOMY.categories:
        assert adapter.validate_python(code) == code
    assert Need(category="social.housing").category == "social.housing"


def test_category_code_names_the_unknown_code_and_the_taxonomy_file() -> None:
    error = category_error("social.pets")
    assert error["type"] == "unknown_category"
    assert "'social.pets'" in error["msg"]
    assert "shared/contracts/taxonomy/v1.json" in error["msg"]


def test_category_code_suggests_the_prefixed_code() -> None:
    error = category_error("housing")
    assert "did you mean 'social.housing'" in error["msg"]


def test_category_code_does_not_repeat_input_that_is_not_code_shaped() -> None:
    error = category_error("Aminata Diallo, born 1990")
    assert error["type"] == "unknown_category"
    assert "Aminata" not in error["msg"]
    assert "v1.json" in error["msg"]


@pytest.mark.parametrize("value", ["", "Social.Housing", "social.housing ", "x" * 300])
def test_category_code_refuses_near_misses(value: str) -> None:
    assert category_error(value)["type"] == "unknown_category"


def test_category_code_refuses_non_strings() -> None:
    assert category_error(42)["type"] == "string_type"
