"""Validated field types of shared/contracts/types.py: good values, bad values, boundaries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.contracts import types as t
from shared.contracts.types import (
    AgencyId,
    AreaCode,
    BirthYear,
    CountryCode,
    Email,
    Identifier,
    LanguageCode,
    LongText,
    Name,
    PastDate,
    PastDatetime,
    Phone,
    ShortText,
    area_contains,
    canonical_language,
    country_of,
)


def ok(tp: Any, value: object) -> Any:
    return TypeAdapter(tp).validate_python(value)


def error(tp: Any, value: object) -> dict[str, Any]:
    """The single error a value of that type raises, seen as a model field."""

    class Model(BaseModel):
        field: tp

    with pytest.raises(ValidationError) as caught:
        Model(field=value)
    (err,) = caught.value.errors()
    assert err["loc"] == ("field",)
    assert err["msg"]
    return dict(err)


def today() -> date:
    return datetime.now(UTC).date()


# ---------- CountryCode ----------


@pytest.mark.parametrize("value", ["SN", "AF", "FR", "GM", "NG", "XK"])  # XK: Kosovo
def test_country_code_accepts(value: str) -> None:
    assert ok(CountryCode, value) == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("sn", "uppercase"),
        ("SEN", "two uppercase letters"),
        ("S", "two uppercase letters"),
        ("", "two uppercase letters"),
        (" SN", "two uppercase letters"),
        ("QZ", "not an assigned"),
        ("XX", "not an assigned"),
    ],
)
def test_country_code_refuses(value: str, fragment: str) -> None:
    err = error(CountryCode, value)
    assert err["type"] == "country_code"
    assert fragment in err["msg"]


def test_country_code_refuses_non_strings() -> None:
    assert error(CountryCode, 686)["type"] == "string_type"


# ---------- LanguageCode ----------


@pytest.mark.parametrize("value", ["fr", "en", "wo", "ar", "fra", "wol", "snk", "ful"])
def test_language_code_accepts(value: str) -> None:
    assert ok(LanguageCode, value) == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("FR", "lowercase"),
        ("f", "lowercase"),
        ("fren", "lowercase"),
        ("", "lowercase"),
        ("f1", "lowercase"),
        ("qq", "not a known"),
        ("qqq", "not a known"),
        ("und", "not a known"),  # ISO 639-3 special code: says nothing useful
        ("zxx", "not a known"),
    ],
)
def test_language_code_refuses(value: str, fragment: str) -> None:
    err = error(LanguageCode, value)
    assert err["type"] == "language_code"
    assert fragment in err["msg"]


def test_canonical_language_prefers_two_letters() -> None:
    assert canonical_language("fra") == canonical_language("fr") == "fr"
    assert canonical_language("wol") == "wo"
    assert canonical_language("snk") == "snk"


# ---------- AreaCode and its helpers ----------


@pytest.mark.parametrize(
    "value", ["SN", "SN01", "SN0101", "AF0101001", "SN" + "9" * t.AREA_MAX_DIGITS]
)
def test_area_code_accepts(value: str) -> None:
    assert ok(AreaCode, value) == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("SN" + "9" * (t.AREA_MAX_DIGITS + 1), "followed by 0 to 12 digits"),
        ("sn01", "followed by"),
        ("SN01A", "followed by"),
        ("S01", "followed by"),
        ("SEN01", "followed by"),
        ("", "followed by"),
        ("QZ01", "not an assigned"),
    ],
)
def test_area_code_refuses(value: str, fragment: str) -> None:
    err = error(AreaCode, value)
    assert err["type"] == "area_code"
    assert fragment in err["msg"]


@pytest.mark.parametrize(
    ("parent", "child", "expected"),
    [
        ("SN", "SN", True),
        ("SN", "SN01", True),
        ("SN", "SN0101", True),
        ("SN01", "SN0101", True),
        ("SN01", "SN01", True),
        ("SN01", "SN02", False),
        ("SN0101", "SN01", False),
        ("SN", "GM01", False),
        ("AF01", "AF0101001", True),
        ("AF0102", "AF0101001", False),
    ],
)
def test_area_contains(parent: str, child: str, expected: bool) -> None:
    assert area_contains(parent, child) is expected


@pytest.mark.parametrize(("parent", "child"), [("S", "SN01"), ("SN", "sn01"), ("", "SN")])
def test_area_contains_refuses_malformed_codes(parent: str, child: str) -> None:
    with pytest.raises(ValueError):
        area_contains(parent, child)


def test_country_of() -> None:
    assert country_of("AF0101001") == "AF"
    assert country_of("SN") == "SN"
    with pytest.raises(ValueError):
        country_of("x1")


# ---------- dates ----------


def test_past_date_accepts_today_and_before() -> None:
    assert ok(PastDate, today()) == today()
    assert ok(PastDate, today() - timedelta(days=1)) == today() - timedelta(days=1)
    assert ok(PastDate, "1990-05-17") == date(1990, 5, 17)


def test_past_date_refuses_tomorrow() -> None:
    err = error(PastDate, today() + timedelta(days=1))
    assert err["type"] == "date_in_future"
    assert "future" in err["msg"]


def test_past_date_refuses_garbage() -> None:
    assert error(PastDate, "yesterday")["type"] == "date_from_datetime_parsing"


def test_past_datetime_accepts_now_and_other_zones() -> None:
    now = datetime.now(UTC)
    assert ok(PastDatetime, now) == now
    dakar_morning = datetime(2024, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=0)))
    assert ok(PastDatetime, dakar_morning) == dakar_morning
    kabul = datetime(2024, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=4, minutes=30)))
    assert ok(PastDatetime, kabul.isoformat()) == kabul


def test_past_datetime_tolerates_small_clock_skew_only() -> None:
    now = datetime.now(UTC)
    assert ok(PastDatetime, now + timedelta(minutes=1))
    err = error(PastDatetime, now + t.MAX_CLOCK_SKEW + timedelta(minutes=1))
    assert err["type"] == "datetime_in_future"


def test_past_datetime_refuses_naive() -> None:
    assert error(PastDatetime, datetime(2024, 3, 1, 8, 0))["type"] == "timezone_aware"


def test_birth_year_bounds() -> None:
    year = today().year
    assert ok(BirthYear, t.MIN_BIRTH_YEAR) == 1900
    assert ok(BirthYear, year) == year
    assert error(BirthYear, 1899)["type"] == "greater_than_equal"
    err = error(BirthYear, year + 1)
    assert err["type"] == "birth_year"
    assert "current year" in err["msg"]


# ---------- text ----------


def test_short_text_strips_and_bounds() -> None:
    assert ok(ShortText, "  case ref 12  ") == "case ref 12"
    assert ok(ShortText, "x" * 200) == "x" * 200
    assert ok(ShortText, "  " + "x" * 200 + "  ") == "x" * 200
    assert error(ShortText, "x" * 201)["type"] == "string_too_long"
    assert error(ShortText, "")["type"] == "string_too_short"
    assert error(ShortText, "   ")["type"] == "string_too_short"


@pytest.mark.parametrize("value", ["two\nlines", "tab\there", "nul\x00", "bell\x07", "c1\x85c1"])
def test_short_text_and_name_refuse_control_characters(value: str) -> None:
    assert error(ShortText, value)["type"] == "control_character"
    assert error(Name, value)["type"] == "control_character"


def test_name_bounds() -> None:
    assert ok(Name, "Aminata Diallo") == "Aminata Diallo"
    assert ok(Name, "Ndèye Fatou N'Diaye-Sène") == "Ndèye Fatou N'Diaye-Sène"
    assert ok(Name, "x" * 100) == "x" * 100
    assert error(Name, "x" * 101)["type"] == "string_too_long"
    assert error(Name, " ")["type"] == "string_too_short"


def test_long_text_bounds_and_lines() -> None:
    assert ok(LongText, "") == ""
    assert ok(LongText, "first line\nsecond\r\n\tindented") == "first line\nsecond\r\n\tindented"
    assert ok(LongText, "x" * 2000) == "x" * 2000
    assert error(LongText, "x" * 2001)["type"] == "string_too_long"
    assert error(LongText, "bell\x07")["type"] == "control_character"


@pytest.mark.parametrize("value", ["case-123", "a", "A.b_c:d-9", "urn:iom:sn:2024.17", "x" * 100])
def test_identifier_accepts(value: str) -> None:
    assert ok(Identifier, value) == value


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("", "string_too_short"),
        ("x" * 101, "string_too_long"),
        ("case 123", "identifier"),
        ("dossier-é", "identifier"),
        ("a/b", "identifier"),
        (" case-1", "identifier"),
    ],
)
def test_identifier_refuses(value: str, kind: str) -> None:
    assert error(Identifier, value)["type"] == kind


@pytest.mark.parametrize("value", ["iom-sn", "ab", "0a", "caritas-dakar-2", "a" * 63])
def test_agency_id_accepts(value: str) -> None:
    assert ok(AgencyId, value) == value


@pytest.mark.parametrize("value", ["a", "a" * 64, "IOM-SN", "-iom", "iom_sn", "iom.sn", ""])
def test_agency_id_refuses(value: str) -> None:
    err = error(AgencyId, value)
    assert err["type"] == "agency_id"
    assert "lowercase" in err["msg"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("+221 77 123 45 67", "+221 77 123 45 67"),
        ("0033-6-12-34-56-78", "0033-6-12-34-56-78"),
        ("123456", "123456"),
        ("+" + "1" * 20, "+" + "1" * 20),
        ("  +221771234567 ", "+221771234567"),
    ],
)
def test_phone_accepts(value: str, expected: str) -> None:
    assert ok(Phone, value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("12345", "6 to 20 digits"),
        ("1" * 21, "6 to 20 digits"),
        ("+221 77x123", "digits with an optional"),
        ("++221771234567", "digits with an optional"),
        ("221  771234567", "digits with an optional"),
        ("(221) 771234567", "digits with an optional"),
        ("221771234567-", "digits with an optional"),
        ("", "digits with an optional"),
    ],
)
def test_phone_refuses(value: str, fragment: str) -> None:
    err = error(Phone, value)
    assert err["type"] == "phone"
    assert fragment in err["msg"]


def test_email_accepts_and_bounds() -> None:
    assert ok(Email, "a.diallo@example.org") == "a.diallo@example.org"
    assert ok(Email, " case+sn@mail.iom.int ") == "case+sn@mail.iom.int"
    longest = "a" * 64 + "@" + "b" * 185 + ".org"
    assert len(longest) == t.EMAIL_MAX_LENGTH
    assert ok(Email, longest) == longest
    assert error(Email, "a" + longest)["type"] == "string_too_long"


@pytest.mark.parametrize(
    "value", ["no-at.example.org", "a@b", "a b@example.org", "a@@example.org", "a@.org", "@x.org"]
)
def test_email_refuses(value: str) -> None:
    assert error(Email, value)["type"] == "email"


# ---------- limits ----------


def test_limits() -> None:
    assert t.MAX_NEEDS == 20
    assert 0 < t.MAX_NEEDS <= t.MAX_LIST_ITEMS
    assert 0 < t.MAX_LANGUAGES <= t.MAX_LIST_ITEMS
    assert 0 < t.MAX_VULNERABILITIES <= t.MAX_LIST_ITEMS
    assert 0 < t.MAX_CATEGORIES_PER_SERVICE <= t.MAX_LIST_ITEMS


# ---------- messages never repeat the input ----------

SECRET = "Aminata"


@pytest.mark.parametrize(
    ("tp", "value", "shown"),
    [
        (CountryCode, f"{SECRET}", SECRET),
        (CountryCode, "QZ", "QZ"),
        (LanguageCode, "qqq", "qqq"),
        (AreaCode, f"SN01{SECRET}", SECRET),
        (AreaCode, "QZ0107", "QZ0107"),
        (Identifier, f"{SECRET} Diallo", SECRET),
        (AgencyId, f"{SECRET}-agency", SECRET),
        (Phone, f"+221 {SECRET}", SECRET),
        (Phone, "+221 77", "221"),
        (Email, f"{SECRET}.diallo@", SECRET),
        (ShortText, f"{SECRET}\nDiallo", SECRET),
        (LongText, f"{SECRET}\x00", SECRET),
        (PastDate, "2999-12-31", "2999"),
        (PastDatetime, "2999-12-31T10:00:00+00:00", "2999"),
        (BirthYear, 2999, "2999"),
    ],
)
def test_messages_name_the_problem_without_the_input(tp: Any, value: object, shown: str) -> None:
    err = error(tp, value)
    assert shown not in err["msg"]
    assert len(err["msg"]) > 15  # says what is expected, not just "invalid"
