"""The dashboard's languages: gettext catalogues (``locale/<lang>/LC_MESSAGES/dashboard.po``,
compiled in memory when the app is built, so no ``.mo`` file can be stale), which language a
request gets, and how figures and vocabulary codes are written in it.

English is the source language: the templates' strings are the English text, and an English
page uses them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from typing import Literal

from babel import Locale, dates, numbers
from babel.support import NullTranslations

from shared.contracts.taxonomy import (
    TAXONOMY,
    Dimension,
    LabelLanguage,
    Level,
    ReasonCode,
    Vulnerability,
)
from shared.i18n.catalogues import compiled

Language = Literal["en", "fr"]
LANGUAGES: tuple[Language, ...] = ("en", "fr")
DEFAULT_LANGUAGE: Language = "en"
LANGUAGE_COOKIE = "refex_lang"
DOMAIN = "dashboard"


def catalogue_resource(language: str) -> resources.abc.Traversable:
    return resources.files(__package__).joinpath(f"locale/{language}/LC_MESSAGES/{DOMAIN}.po")


def load_translations(language: Language) -> NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    return compiled(catalogue_resource(language), language, DOMAIN)


def _accepted(header: str) -> list[str]:
    """Accept-Language's languages, most wanted first (``fr-CA;q=0.8`` → ``fr``)."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            weighted.append((-quality, position, tag.split("-")[0].lower()))
    return [tag for _, _, tag in sorted(weighted)]


def choose_language(asked: str | None, cookie: str | None, accept_language: str | None) -> Language:
    """``?lang=`` first (a link the reader clicked), then the cookie it left, then the
    browser's Accept-Language, then English."""
    for choice in (asked, cookie, *_accepted(accept_language or "")):
        if choice in LANGUAGES:
            return choice
    return DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Words:
    """What a page in one language needs to write figures, dates and codes."""

    language: Language
    translations: NullTranslations

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    @property
    def locale(self) -> Locale:
        return Locale.parse(self.language)

    def number(self, value: float, decimals: int = 0) -> str:
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
        return numbers.format_decimal(value, format=pattern, locale=self.locale)

    def signed(self, value: float, decimals: int = 2) -> str:
        text = self.number(abs(value), decimals)
        minus = "\N{MINUS SIGN}"  # the typographic sign: a hyphen reads as a dash in a table
        return ("+" if value > 0 else minus if value < 0 else "") + text

    def percent(self, fraction: float) -> str:
        # The language's own pattern (60.0% in English, 60,0 % in French), one decimal.
        pattern = self.locale.percent_formats[None].pattern.replace("#,##0", "#,##0.0", 1)
        return numbers.format_percent(fraction, format=pattern, locale=self.locale)

    def datetime(self, at: datetime) -> str:
        return dates.format_datetime(at, format="medium", tzinfo=UTC, locale=self.locale) + " UTC"

    def term(self, column: str, code: str) -> str:
        """A key's value as the reader reads it: taxonomy codes by their label in this
        language, the dashboard's own codes (waves, reasons, states) by its catalogue, others
        (areas, providers, periods, age bands) as they are."""
        lang: LabelLanguage = self.language
        if column == "pathway":
            no_pathway = VALUE_LABELS["pathway"].get(code)
            if no_pathway is not None:
                return self.gettext(no_pathway)
            return " + ".join(self.term("category", part) for part in code.split("+"))
        if column == "breakdown":  # by_group: which disaggregation a line is of
            return column_label(self, code)
        if column == "category" and TAXONOMY.is_category(code):
            return TAXONOMY.label(code, lang)
        # a group of by_group is a sex, an age band or a vulnerability
        for vocabulary in _TAXONOMY_COLUMNS.get(column, ()):
            if code in {m.value for m in vocabulary}:
                return TAXONOMY.label(vocabulary(code), lang)
        known = VALUE_LABELS.get("sex" if column == "group" else column, {}).get(code)
        return self.gettext(known) if known else code


def N_(message: str) -> str:
    """Marks a string for the catalogue; translated where it is shown."""
    return message


_TAXONOMY_COLUMNS: dict[str, tuple[type[StrEnum], ...]] = {
    "dimension": (Dimension,),
    "level": (Level,),
    "vulnerability": (Vulnerability,),
    "group": (Vulnerability,),
    "reason_code": (ReasonCode,),
}

# Values of the report's keys that are not taxonomy terms, by the key they are of.
VALUE_LABELS: dict[str, dict[str, str]] = {
    "wave": {
        "baseline": N_("Baseline"),
        "month_3": N_("Month 3"),
        "month_6": N_("Month 6"),
        "month_12": N_("Month 12"),
    },
    # why a need was left unmet (shared.contracts.events.UnmatchedReason)
    "reason": {
        "no_listing": N_("No service listed"),
        "no_capacity": N_("No capacity"),
        "not_eligible": N_("Not eligible"),
        "consent_scope": N_("Outside the consent"),
        "attempts_exhausted": N_("Attempts exhausted"),
    },
    # a handover's state (shared.contracts.events.HandoverState)
    "state": {
        "proposed": N_("Proposed"),
        "accepted": N_("Accepted by the new owner"),
        "rejected": N_("Rejected"),
        "expired": N_("Expired unanswered"),
        "completed": N_("Case moved"),
        "failed": N_("Failed to move"),
    },
    "sex": {
        "female": N_("Female"),
        "male": N_("Male"),
        "other": N_("Other"),
        "unknown": N_("Unknown"),
    },
    # services.evidence.aggregation.NO_PATHWAY: no accepted referral
    "pathway": {"none": N_("No accepted referral")},
}

# Column headings: the keys and figures of the report's tables.
COLUMN_LABELS: dict[str, str] = {
    "area": N_("Area"),
    "country": N_("Country"),
    "region": N_("Region"),
    "district": N_("District"),
    "period": N_("Period"),
    "reason": N_("Reason"),
    "reason_code": N_("Reason"),
    "provider": N_("Provider"),
    "category": N_("Category"),
    "dimension": N_("Dimension"),
    "level": N_("Level"),
    "pathway": N_("Pathway"),
    "wave": N_("Follow-up"),
    "sex": N_("Sex"),
    "age_band": N_("Age band"),
    "vulnerability": N_("Vulnerability"),
    "group": N_("Group"),
    "value": N_("Value"),
    "breakdown": N_("Breakdown"),
    "state": N_("State"),
    "done": N_("Done"),
    "missed": N_("Missed"),
    "cases": N_("Cases"),
    "unmet_needs": N_("Unmet needs"),
    "referrals_made": N_("Referrals made"),
    "answered": N_("Answered"),
    "accepted": N_("Accepted"),
    "completed": N_("Completed"),
    "failed": N_("Failed"),
    "acceptance_rate": N_("Acceptance rate"),
    "answer_hours_p50": N_("Hours to answer (median)"),
    "answer_hours_p90": N_("Hours to answer (90th percentile)"),
    "economic_change": N_("Economic score change"),
    "social_change": N_("Social score change"),
    "psychosocial_change": N_("Psychosocial score change"),
    "composite_change": N_("Composite score change"),
    "handovers": N_("Handovers"),
    "follow_ups_done": N_("Follow-ups done"),
    "follow_ups_missed": N_("Follow-ups missed"),
}

# Table titles, by the report's table names.
TABLE_TITLES: dict[str, str] = {
    "unmet_by_area": N_("Unmet needs by area"),
    "answers_by_provider": N_("Acceptance and time to answer by provider and category"),
    "scores_by_pathway": N_("Score changes by pathway"),
    "referrals_by_level": N_("Referrals by level and dimension"),
    "by_group": N_("By sex, age band and vulnerability"),
    "handovers_by_area": N_("Handovers by area"),
    "follow_ups_by_area": N_("Follow-ups done and missed by area"),
}


def column_label(words: Words, column: str) -> str:
    known = COLUMN_LABELS.get(column)
    return words.gettext(known) if known else column.replace("_", " ").capitalize()


def table_title(words: Words, table: str) -> str:
    known = TABLE_TITLES.get(table)
    return words.gettext(known) if known else table.replace("_", " ").capitalize()
