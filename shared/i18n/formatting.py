"""Dates and numbers as a reader of each language writes them (Babel's CLDR data): Arabic
gets its own separators and digits, French its spaces before units."""

from __future__ import annotations

from datetime import UTC, datetime

from babel import Locale, dates, numbers

from .negotiation import Language


def format_number(value: float, language: Language, decimals: int = 0) -> str:
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return numbers.format_decimal(value, format=pattern, locale=Locale.parse(language))


def format_datetime(at: datetime, language: Language) -> str:
    """In UTC, said so: readers of one exchange sit in several time zones."""
    written = dates.format_datetime(at, format="medium", tzinfo=UTC, locale=Locale.parse(language))
    return f"{written} UTC"
