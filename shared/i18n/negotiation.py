"""Which of our languages a reader gets, and which way it is written."""

from __future__ import annotations

from typing import Literal, TypeGuard

Language = Literal["en", "fr", "ar"]
# Every language but English has a complete catalogue (tests/unit/test_i18n.py).
LANGUAGES: tuple[Language, ...] = ("en", "fr", "ar")
DEFAULT_LANGUAGE: Language = "en"
LANGUAGE_COOKIE = "refex_lang"


def is_language(code: object) -> TypeGuard[Language]:
    return code in LANGUAGES


def _accepted(header: str) -> list[str]:
    """Accept-Language's primary tags, most wanted first (``fr-CA;q=0.8`` → ``fr``); ties keep
    the header's order, ``q=0`` means "not this one"."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                continue
        if tag.strip() and quality > 0:
            weighted.append((-quality, position, tag.strip().split("-")[0].lower()))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(accept_language: str | None, cookie: str | None) -> Language:
    """The cookie the reader's own choice left first (it outranks the browser's settings,
    which are often the device's and not the person's), then Accept-Language, then English."""
    for choice in (cookie, *_accepted(accept_language or "")):
        if is_language(choice):
            return choice
    return DEFAULT_LANGUAGE


def direction(language: Language) -> Literal["ltr", "rtl"]:
    """The value of ``<html dir>``: Arabic is written right to left."""
    return "rtl" if language == "ar" else "ltr"
