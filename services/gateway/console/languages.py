"""The console's languages: English (the source), French and Arabic (right to left), from the
exchange's one gettext catalogue, shared with the e-mails (shared.i18n)."""

from __future__ import annotations

from functools import cache

from babel.support import NullTranslations
from fastapi import Request

LANGUAGES = ("en", "fr", "ar")
LANGUAGE_COOKIE = "refex_lang"


def of(request: Request) -> str:
    chosen = request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return "en"


def direction(language: str) -> str:
    return "rtl" if language == "ar" else "ltr"


@cache
def translations(language: str) -> NullTranslations:
    return NullTranslations()
