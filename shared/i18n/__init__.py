"""The languages shared by the e-mails and the console: one gettext domain ``refex``
(``locale/<lang>/LC_MESSAGES/refex.po``, English the source language), which language a reader
gets, its writing direction, and how dates and numbers are written in it (decision 0026)."""

from .catalogues import DOMAIN, N_, translations
from .formatting import format_datetime, format_number
from .negotiation import (
    DEFAULT_LANGUAGE,
    LANGUAGE_COOKIE,
    LANGUAGES,
    Language,
    direction,
    is_language,
    negotiate,
)

__all__ = [
    "DEFAULT_LANGUAGE",
    "DOMAIN",
    "LANGUAGES",
    "LANGUAGE_COOKIE",
    "N_",
    "Language",
    "direction",
    "format_datetime",
    "format_number",
    "is_language",
    "negotiate",
    "translations",
]
