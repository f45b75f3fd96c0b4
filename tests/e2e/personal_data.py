"""Marked personal data for the e2e tests, and the scan that looks for it anywhere in clear.

Every personal field carries a marker, so a leak of any one of them is found. The scan ignores
case (intake upper-cases document numbers when it normalises them, and tests submit names in
capitals) and knows the shapes a phone number or a date can be rendered in.

Not marked: ``preferred_language`` ("wo", Wolof) and the documents' ``issuing_country`` ("SN").
Neither identifies anyone by itself — millions share them — and both appear legitimately in
clear (the pseudonymous profile lists the languages spoken, every case has its countries), so a
marker there could only be a two-letter code found everywhere.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

MARK = "Zqmark"

# Day and month both above 12: day-first and month-first renderings differ and need no padding.
# 1987: no legitimate date in the tests (birth years are given as age bands, return and consent
# dates and every timestamp are of 2026) has this year, so no date field can trip the scan.
DATE_OF_BIRTH = date(1987, 11, 23)
DOCUMENT_EXPIRES = date(2031, 10, 27)  # same reasoning: no other date in the tests is of 2031

PERSONAL: dict[str, Any] = {
    "given_name": f"{MARK}Given",
    "family_name": f"{MARK}Family",
    "other_names": [f"{MARK}Other"],
    "date_of_birth": DATE_OF_BIRTH.isoformat(),
    "contacts": [
        {"kind": "email", "value": f"{MARK.lower()}.mail@example.org"},
        {"kind": "phone", "value": "+221 77 123 98 76"},
        {"kind": "address", "value": f"12 Rue {MARK}Street, Dakar"},
        {"kind": "other", "value": f"whatsapp:{MARK}Handle"},
    ],
    "documents": [
        {
            "kind": "passport",
            "number": f"{MARK}P123",  # normalised by intake to ZQMARKP123
            "issuing_country": "SN",
            "expires_on": DOCUMENT_EXPIRES.isoformat(),
        },
        {"kind": "national_id", "number": f"{MARK.lower()}-n.77", "issuing_country": "SN"},
    ],
    "preferred_language": "wo",
}


def _date_patterns(day: date) -> list[str]:
    d, m, y = f"{day.day:02d}", f"{day.month:02d}", f"{day.year}"
    month = day.strftime("%B").lower()
    mon = month[:3]
    # Not inside a longer run of hex digits or dashes: a UUID or a hex id can hold any 8 digits.
    compact = r"(?<![0-9a-f-]){}(?![0-9a-f-])"
    return [
        rf"{y}\W{m}\W{d}",  # ISO 1987-11-23, 1987/11/23, 1987.11.23
        rf"{d}\W{m}\W(?:{y}|{y[2:]}\b)",  # 23/11/1987, 23.11.1987, 23-11-87
        rf"{m}\W{d}\W(?:{y}|{y[2:]}\b)",  # 11/23/1987 (US)
        compact.format(f"{y}{m}{d}"),  # 19871123
        compact.format(f"{d}{m}{y}"),  # 23111987
        compact.format(f"{m}{d}{y}"),  # 11231987
        rf"\b{d}(?:st|nd|rd|th)?\s*(?:{month}|{mon})\.?,?\s*{y}",  # 23 Nov 1987
        rf"\b(?:{month}|{mon})\.?\s*{d}(?:st|nd|rd|th)?,?\s*{y}",  # Nov 23, 1987 (PostgreSQL)
    ]


MARKERS: dict[str, re.Pattern[bytes]] = {
    name: re.compile(pattern.encode(), re.IGNORECASE)
    for name, pattern in {
        "marker": MARK,  # in every name, e-mail, address, other contact and document number
        "given name": PERSONAL["given_name"],
        "family name": PERSONAL["family_name"],
        "other name": PERSONAL["other_names"][0],
        "phone": r"77[ .-]?123[ .-]?98[ .-]?76",  # any grouping, with or without +221
        **{f"date of birth {i}": p for i, p in enumerate(_date_patterns(DATE_OF_BIRTH))},
        **{f"document expiry {i}": p for i, p in enumerate(_date_patterns(DOCUMENT_EXPIRES))},
    }.items()
}


def leaks_in(blob: bytes) -> list[str]:
    """The names of the markers found in the bytes (any case)."""
    return [name for name, pattern in MARKERS.items() if pattern.search(blob)]
