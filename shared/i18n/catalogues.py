"""The ``refex`` catalogues, compiled from their .po files in memory once per process, so no
.mo file can be stale and none is committed."""

from __future__ import annotations

import io
from functools import cache
from importlib import resources

from babel.messages import mofile, pofile
from babel.support import NullTranslations, Translations

from .negotiation import DEFAULT_LANGUAGE, Language

DOMAIN = "refex"


def N_(message: str) -> str:
    """Marks a string for extraction (``make messages``); it is translated where it is used."""
    return message


def catalogue_resource(language: str) -> resources.abc.Traversable:
    return resources.files(__package__).joinpath(f"locale/{language}/LC_MESSAGES/{DOMAIN}.po")


def compiled(po_file: resources.abc.Traversable, language: str, domain: str) -> Translations:
    """A .po catalogue compiled in memory (the dashboard's own domain uses this too)."""
    with po_file.open("rb") as po:
        catalogue = pofile.read_po(po, locale=language, domain=domain)
    buffer = io.BytesIO()
    mofile.write_mo(buffer, catalogue)
    buffer.seek(0)
    return Translations(buffer, domain=domain)


@cache
def translations(language: Language) -> NullTranslations:
    """English is the source language: its text is the msgid itself."""
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    return compiled(catalogue_resource(language), language, DOMAIN)
