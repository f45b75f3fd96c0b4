"""The console's languages: English (the source), French and Arabic (right to left), from the
exchange's one gettext catalogue, shared with the e-mails (shared.i18n)."""

from __future__ import annotations

from functools import cache

from babel.support import NullTranslations
from fastapi import Request

from shared.contracts.taxonomy import TAXONOMY, LabelLanguage, ReasonCode

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


def _vocabulary_language(language: str) -> LabelLanguage:
    # The taxonomy labels its terms in English and French; Arabic shows the English ones.
    return "fr" if language == "fr" else "en"


def category_label(code: str, language: str) -> str:
    """A need category's label (the code itself when the taxonomy does not know it)."""
    try:
        return TAXONOMY.label(code, _vocabulary_language(language))
    except (KeyError, ValueError):
        return code


def reason_label(code: str, language: str) -> str:
    try:
        return TAXONOMY.label(ReasonCode(code), _vocabulary_language(language))
    except (KeyError, ValueError):
        return code


def N_(message: str) -> str:
    """Marks a string for extraction (``make messages``); it is translated where it is shown."""
    return message
