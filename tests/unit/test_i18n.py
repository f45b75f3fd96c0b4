"""The shared refex catalogues: complete, never fuzzy, placeholders kept; language negotiation,
direction and formatting."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages import pofile
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir

import shared.i18n
from shared.i18n import LANGUAGES, direction, format_datetime, format_number, negotiate
from shared.i18n import translations as translations_of

ROOT = Path(__file__).resolve().parents[2]
LOCALE = Path(shared.i18n.__file__).parent / "locale"
SOURCES = [ROOT / "services" / "notification", ROOT / "services" / "gateway"]
TRANSLATED = [lang for lang in LANGUAGES if lang != "en"]


def _extracted() -> set[str]:
    found: set[str] = set()
    for source in (s for s in SOURCES if s.is_dir()):
        for _, _, message, *_ in extract_from_dir(
            str(source),
            method_map=[("**.py", "python"), ("**/templates/**.html", "jinja2")],
            options_map={"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
            keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
        ):
            found.add(message if isinstance(message, str) else message[0])
    return found


def _read(path: Path) -> Catalog:
    with path.open("rb") as f:
        return pofile.read_po(f)


def test_the_template_holds_every_message_of_the_emails_and_the_console() -> None:
    template = {m.id for m in _read(LOCALE / "refex.pot") if m.id}
    assert len(template) > 70  # the e-mails at least: an empty extraction is no success
    assert _extracted() - template == set(), "run `make messages`, then translate"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_catalogue_translates_every_message_and_none_is_fuzzy(language: str) -> None:
    template = {m.id for m in _read(LOCALE / "refex.pot") if m.id}
    catalogue = _read(LOCALE / language / "LC_MESSAGES" / "refex.po")
    translated = {m.id for m in catalogue if m.id and m.string and not m.fuzzy}
    assert template - translated == set(), f"translate these in {language}/refex.po"
    assert [m.id for m in catalogue if m.id and m.fuzzy] == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_exactly_their_placeholders(language: str) -> None:
    catalogue = _read(LOCALE / language / "LC_MESSAGES" / "refex.po")
    placeholder = re.compile(r"\$\w+")
    changed = {
        m.id: set(placeholder.findall(m.string)) ^ set(placeholder.findall(m.id))
        for m in catalogue
        if m.id and isinstance(m.id, str) and isinstance(m.string, str)
    }
    assert {k: v for k, v in changed.items() if v} == {}


def test_the_catalogue_is_compiled_in_memory() -> None:
    french = translations_of("fr")
    assert french.gettext("Referral $referral_id cancelled") == "Orientation $referral_id annulée"
    assert translations_of("en").gettext("Referral $referral_id cancelled") == (
        "Referral $referral_id cancelled"
    )


@pytest.mark.parametrize(
    ("accept_language", "cookie", "expected"),
    [
        (None, None, "en"),
        ("fr-FR,fr;q=0.9,en;q=0.8", None, "fr"),
        ("de-DE,en;q=0.3,fr;q=0.5", None, "fr"),  # by weight, not by position
        ("fr;q=0,en", None, "en"),  # q=0: not this one
        ("fr", "en", "en"),  # the reader's own choice outranks the browser's
        ("en", "xx", "en"),  # an unknown cookie is ignored
        ("wo,de", None, "en"),
    ],
)
def test_negotiation(accept_language: str | None, cookie: str | None, expected: str) -> None:
    assert negotiate(accept_language, cookie) == expected


def test_arabic_is_written_right_to_left() -> None:
    assert direction("ar") == "rtl"
    assert direction("fr") == direction("en") == "ltr"


def test_dates_and_numbers_in_each_language() -> None:
    assert format_number(1234567.5, "en", 1) == "1,234,567.5"
    assert (
        format_number(1234567.5, "fr", 1)
        == "1\N{NARROW NO-BREAK SPACE}234\N{NARROW NO-BREAK SPACE}567,5"
    )
    at = datetime(2026, 12, 9, 17, 5, tzinfo=UTC)
    assert format_datetime(at, "en") == "Dec 9, 2026, 5:05:00\N{NARROW NO-BREAK SPACE}PM UTC"
    assert format_datetime(at, "fr") == "9 déc. 2026, 17:05:00 UTC"
    assert format_datetime(at, "ar").endswith(" UTC") and "2026" in format_datetime(at, "ar")
