"""The console's languages: English (the source), French and Arabic (right to left), from the
exchange's one gettext catalogue, shared with the e-mails (shared.i18n)."""

from __future__ import annotations

from fastapi import Request

from shared.contracts.taxonomy import TAXONOMY, LabelLanguage, ReasonCode
from shared.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    N_,
    Language,
    direction,
    is_language,
    negotiate,
    translations,
)

__all__ = ["LANGUAGES", "LANGUAGE_COOKIE", "N_", "direction", "of", "translations"]


def of(request: Request) -> Language:
    """The reader's language: the one just chosen (``?lang=``), else its cookie, else its
    browser's Accept-Language, else English."""
    chosen = request.query_params.get("lang")
    if is_language(chosen):
        return chosen
    return negotiate(request.headers.get("accept-language"), request.cookies.get(LANGUAGE_COOKIE))


def chosen_now(request: Request) -> Language | None:
    """A language picked with the page's language links, to keep in the cookie."""
    chosen = request.query_params.get("lang")
    return chosen if is_language(chosen) else None


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
