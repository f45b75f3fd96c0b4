"""Reusable validated field types (pydantic v2 ``Annotated``) for the payload models.

Each type refuses bad input with a field-level error of its own ``type`` (``country_code``,
``phone``, ...) and a message that says what is expected. Messages never repeat the input: it may
be personal data, and rejection events travel back to agencies and into logs. (pydantic itself
still keeps the input in ``ValidationError.errors()[i]["input"]``; drop it before publishing.)

Limits are module constants so models and documentation quote the same numbers.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import pycountry
from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints
from pydantic_core import PydanticCustomError

from .json_schema import JsonSchemaExtra
from .topics import AGENCY_ID_PATTERN

__all__ = [
    "AREA_MAX_DIGITS",
    "EMAIL_MAX_LENGTH",
    "EMAIL_PATTERN",
    "IDENTIFIER_MAX_LENGTH",
    "LONG_TEXT_MAX_LENGTH",
    "MAX_CATEGORIES_PER_SERVICE",
    "MAX_CLOCK_SKEW",
    "MAX_COVERAGE_AREAS",
    "MAX_LANGUAGES",
    "MAX_LIST_ITEMS",
    "MAX_NEEDS",
    "MAX_VULNERABILITIES",
    "MIN_BIRTH_YEAR",
    "NAME_MAX_LENGTH",
    "PHONE_MAX_DIGITS",
    "PHONE_MIN_DIGITS",
    "PHONE_PATTERN",
    "SHORT_TEXT_MAX_LENGTH",
    "AgencyId",
    "AreaCode",
    "BirthYear",
    "CountryCode",
    "Email",
    "Identifier",
    "LanguageCode",
    "LongText",
    "Name",
    "PastDate",
    "PastDatetime",
    "Phone",
    "ShortText",
    "area_contains",
    "canonical_language",
    "country_of",
]

# ---------- limits ----------

#: Upper bound of any list in a payload that has no tighter limit of its own.
MAX_LIST_ITEMS = 100
#: Needs in one case submission.
MAX_NEEDS = 20
#: Languages spoken by a returnee or offered by a service.
MAX_LANGUAGES = 10
#: Vulnerabilities recorded on one profile.
MAX_VULNERABILITIES = 20
#: Categories one service listing may claim.
MAX_CATEGORIES_PER_SERVICE = 20
#: Areas one service listing may cover (a country code covers all its areas: list few, broad ones).
MAX_COVERAGE_AREAS = 200

#: Single-line text: references, titles, short answers.
SHORT_TEXT_MAX_LENGTH = 200
#: A given or family name.
NAME_MAX_LENGTH = 100
#: Free text (notes, descriptions); may span lines.
LONG_TEXT_MAX_LENGTH = 2000
#: Opaque identifiers chosen by agencies or services.
IDENTIFIER_MAX_LENGTH = 100
#: RFC 5321 limit of a forward path.
EMAIL_MAX_LENGTH = 254
#: Digits in a phone number (E.164 allows 15; some national formats with prefixes run longer).
PHONE_MIN_DIGITS = 6
PHONE_MAX_DIGITS = 20
#: Digits after the country prefix of an area code (P-codes stay well below).
AREA_MAX_DIGITS = 12
#: Earliest accepted birth year.
MIN_BIRTH_YEAR = 1900
#: How far ahead of this host's clock a timestamp from another system may be (clocks drift).
MAX_CLOCK_SKEW = timedelta(minutes=5)


def _fail(kind: str, message: str) -> PydanticCustomError:
    # No context is passed, so nothing of the input can end up in the message.
    return PydanticCustomError(kind, message)


# ---------- countries, languages, areas ----------

# ISO 3166-1 plus Kosovo's "XK", a user-assigned code that the UN system, IOM and the EU use:
# returns to Kosovo are common and must be expressible.
_COUNTRIES: frozenset[str] = frozenset(c.alpha_2 for c in pycountry.countries) | {"XK"}
# ISO 639-1 codes, and the ISO 639-3 code of every language proper ("S"pecial codes such as
# und/mul/zxx say nothing a matcher could use and are refused).
_TWO_TO_THREE: dict[str, str] = {
    lang.alpha_2: lang.alpha_3 for lang in pycountry.languages if hasattr(lang, "alpha_2")
}
_THREE_TO_TWO = {three: two for two, three in _TWO_TO_THREE.items()}
_LANGUAGES_3: frozenset[str] = frozenset(
    lang.alpha_3 for lang in pycountry.languages if lang.scope != "S"
)

_COUNTRY_SHAPE = re.compile(r"[A-Z]{2}")
_LANGUAGE_SHAPE = re.compile(r"[a-z]{2,3}")
_AREA_SHAPE = re.compile(rf"([A-Z]{{2}})([0-9]{{0,{AREA_MAX_DIGITS}}})")


def _country(value: str) -> str:
    if not _COUNTRY_SHAPE.fullmatch(value):
        raise _fail("country_code", "must be two uppercase letters (ISO 3166-1 alpha-2)")
    if value not in _COUNTRIES:
        raise _fail("country_code", "not an assigned ISO 3166-1 alpha-2 country code")
    return value


def _language(value: str) -> str:
    if not _LANGUAGE_SHAPE.fullmatch(value):
        raise _fail(
            "language_code",
            "must be a lowercase ISO 639-1 (two-letter) or ISO 639-3 (three-letter) code",
        )
    if value not in _TWO_TO_THREE and value not in _LANGUAGES_3:
        raise _fail("language_code", "not a known ISO 639-1 or ISO 639-3 language code")
    return value


def canonical_language(code: str) -> str:
    """One spelling per language, for comparisons: ISO 639-1 where it exists, else ISO 639-3.

    ``canonical_language("fra") == canonical_language("fr") == "fr"``; ``"wol"`` gives ``"wo"``,
    ``"snk"`` (Soninke, no two-letter code) stays ``"snk"``. Expects a valid :data:`LanguageCode`.
    """
    return _THREE_TO_TWO.get(code, code)


def _area(value: str) -> str:
    match = _AREA_SHAPE.fullmatch(value)
    if match is None:
        raise _fail(
            "area_code",
            f"must be an ISO 3166-1 alpha-2 country code followed by 0 to {AREA_MAX_DIGITS} "
            "digits (P-code style, e.g. SN0101)",
        )
    if match.group(1) not in _COUNTRIES:
        raise _fail(
            "area_code", "the first two letters are not an assigned ISO 3166-1 country code"
        )
    return value


def _valid_area(code: str) -> str:
    if not isinstance(code, str) or _AREA_SHAPE.fullmatch(code) is None:
        raise ValueError("not an area code (country ISO 3166-1 alpha-2 followed by digits)")
    return code


def area_contains(parent: str, child: str) -> bool:
    """Whether area ``child`` lies within ``parent`` (or is it): P-codes extend their parent's.

    ``area_contains("SN", "SN0101")`` and ``area_contains("SN01", "SN01")`` are true,
    ``area_contains("SN01", "SN02")`` is not. Raises ``ValueError`` for a malformed code.
    """
    return _valid_area(child).startswith(_valid_area(parent))


def country_of(area: str) -> str:
    """The ISO 3166-1 alpha-2 country of an area code; ``ValueError`` for a malformed code."""
    return _valid_area(area)[:2]


_COUNTRY_LIST = sorted(_COUNTRIES)

# As patterns, not enums: one line each in the published schemas instead of 250.
_COUNTRY_ALTERNATIVES = "|".join(_COUNTRY_LIST)

CountryCode = Annotated[
    str, AfterValidator(_country), JsonSchemaExtra({"pattern": f"^({_COUNTRY_ALTERNATIVES})$"})
]
"""ISO 3166-1 alpha-2, uppercase (``"SN"``)."""

LanguageCode = Annotated[
    str,
    AfterValidator(_language),
    # The shape only: the ~7,900 ISO 639-3 codes would make every schema that names a language
    # ten times larger. The description says which codes are accepted.
    JsonSchemaExtra(
        {
            "pattern": "^[a-z]{2,3}$",
            "description": "ISO 639-1 or ISO 639-3 code of a language (not a special code "
            "such as und, mul or zxx)",
        }
    ),
]
"""ISO 639-1 (``"fr"``) or ISO 639-3 (``"wol"``), lowercase; see :func:`canonical_language`."""

AreaCode = Annotated[
    str,
    AfterValidator(_area),
    JsonSchemaExtra({"pattern": f"^({_COUNTRY_ALTERNATIVES})[0-9]{{0,{AREA_MAX_DIGITS}}}$"}),
]
"""Hierarchical administrative area, P-code style: country + digits (``"SN"``, ``"SN0101"``)."""


# ---------- dates ----------


def _today_utc() -> date:
    return datetime.now(UTC).date()


def _past_date(value: date) -> date:
    if value > _today_utc():
        raise _fail("date_in_future", "must not be in the future (UTC)")
    return value


def _past_datetime(value: datetime) -> datetime:
    if value > datetime.now(UTC) + MAX_CLOCK_SKEW:
        raise _fail("datetime_in_future", "must not be in the future")
    return value


def _birth_year(value: int) -> int:
    if value > _today_utc().year:
        raise _fail("birth_year", "must not be after the current year")
    return value


PastDate = Annotated[
    date, AfterValidator(_past_date), JsonSchemaExtra({"description": "not in the future (UTC)"})
]
"""A date up to today (UTC) included."""

PastDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_past_datetime),
    JsonSchemaExtra({"description": "with a time zone; not in the future"}),
]
"""A timezone-aware instant not in the future (up to :data:`MAX_CLOCK_SKEW` ahead tolerated)."""

BirthYear = Annotated[
    int,
    Field(ge=MIN_BIRTH_YEAR),
    AfterValidator(_birth_year),
    JsonSchemaExtra({"description": "not after the current year"}),
]
"""A year from :data:`MIN_BIRTH_YEAR` to the current year (UTC)."""


# ---------- text ----------

# Control characters (C0, DEL, C1); free text may still hold tabs and line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise _fail("control_character", "must be a single line without control characters")
    return value


def _free_text(value: str) -> str:
    if _CONTROL_BUT_LINES.search(value):
        raise _fail("control_character", "must not contain control characters")
    return value


# The same rules as JSON Schema patterns (ECMA 262; Python's re reads them alike). Text is
# stripped before it is checked: surrounding white space is allowed around what counts.
_C0_C1 = "\\u0000-\\u001f\\u007f-\\u009f"
_C0_C1_BUT_LINES = "\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f"
_SINGLE_LINE_PATTERN = f"^\\s*[^\\s{_C0_C1}](?:[^{_C0_C1}]*[^\\s{_C0_C1}])?\\s*$"
_FREE_TEXT_PATTERN = f"^[^{_C0_C1_BUT_LINES}]*$"
_SINGLE_LINE = JsonSchemaExtra({"pattern": _SINGLE_LINE_PATTERN})


def _pattern_check(kind: str, pattern: str, message: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise _fail(kind, message)
        return value

    return AfterValidator(check)


ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=SHORT_TEXT_MAX_LENGTH),
    AfterValidator(_single_line),
    _SINGLE_LINE,
]
"""One line of 1 to 200 characters, surrounding whitespace stripped."""

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH),
    AfterValidator(_single_line),
    _SINGLE_LINE,
]
"""A given or family name: one line of 1 to 100 characters, stripped."""

LongText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=LONG_TEXT_MAX_LENGTH),
    AfterValidator(_free_text),
    JsonSchemaExtra({"pattern": _FREE_TEXT_PATTERN}),
]
"""Free text up to 2000 characters (may be empty, may span lines), stripped."""

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=IDENTIFIER_MAX_LENGTH),
    _pattern_check(
        "identifier",
        r"[A-Za-z0-9._:-]+",
        "may only contain letters A-Z a-z, digits and . _ : -",
    ),
    JsonSchemaExtra({"pattern": "^[A-Za-z0-9._:-]+$"}),
]
"""An opaque identifier: 1 to 100 of ``A-Z a-z 0-9 . _ : -``."""

AgencyId = Annotated[
    str,
    _pattern_check(
        "agency_id",
        AGENCY_ID_PATTERN,
        "must be 2 to 63 lowercase letters, digits or dashes, starting with a letter or digit",
    ),
    JsonSchemaExtra({"pattern": f"^{AGENCY_ID_PATTERN}$"}),
]
"""An agency id, as used in topic names (``agency.<id>.inbox.v1``)."""

_PHONE_SHAPE = re.compile(r"\+?[0-9]+(?:[ -][0-9]+)*")
# The shape and the digit count, with the white space stripping allows around it.
PHONE_PATTERN = (
    f"^\\s*(?=(?:[^0-9]*[0-9]){{{PHONE_MIN_DIGITS},{PHONE_MAX_DIGITS}}}[^0-9]*$)"
    "\\+?[0-9]+(?:[ -][0-9]+)*\\s*$"
)


def _phone(value: str) -> str:
    if _PHONE_SHAPE.fullmatch(value) is None:
        raise _fail(
            "phone",
            "must be digits with an optional leading + and single spaces or dashes between groups",
        )
    digits = sum(ch.isdigit() for ch in value)
    if not PHONE_MIN_DIGITS <= digits <= PHONE_MAX_DIGITS:
        raise _fail("phone", f"must have {PHONE_MIN_DIGITS} to {PHONE_MAX_DIGITS} digits")
    return value


Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    AfterValidator(_phone),
    JsonSchemaExtra({"pattern": PHONE_PATTERN}),
]
"""A phone number, E.164-ish: ``+221 77 123 45 67``, ``0033-6-12-34-56-78``."""

_EMAIL_SHAPE = r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f.]+(?:\.[^@\s\x00-\x1f\x7f.]+)+"
EMAIL_PATTERN = (
    "^\\s*[^@\\s\\u0000-\\u001f\\u007f]+@[^@\\s\\u0000-\\u001f\\u007f.]+"
    "(?:\\.[^@\\s\\u0000-\\u001f\\u007f.]+)+\\s*$"
)

Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=EMAIL_MAX_LENGTH),
    _pattern_check("email", _EMAIL_SHAPE, "must be an e-mail address such as name@example.org"),
    JsonSchemaExtra({"pattern": EMAIL_PATTERN}),
]
"""An e-mail address (a plausibility check, not RFC 5322), up to 254 characters."""
