"""The page's filters from its query string (pure): each value checked, a viewer with a country
scope held to its country whatever the query says."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from services.evidence.report import Filters
from shared.contracts.taxonomy import Dimension, Level

from .i18n import N_

FILTER_NAMES = ("country", "region", "period", "dimension", "level")

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_REGION = re.compile(r"^[A-Z]{2}[0-9]{1,12}$")  # an area code below its country (P-code)
_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, slots=True)
class ReadFilters:
    filters: Filters
    # filter name → why its value was left out (a message id of the catalogue)
    problems: dict[str, str] = field(default_factory=dict)
    scoped: bool = False  # the country is the reader's scope, not a choice


def read_filters(query: Mapping[str, str], scope_country: str | None) -> ReadFilters:
    problems: dict[str, str] = {}

    def value(name: str, pattern: re.Pattern[str], message: str) -> str | None:
        raw = (query.get(name) or "").strip()
        if not raw:
            return None
        if name in ("country", "region"):
            raw = raw.upper()
        if not pattern.match(raw):
            problems[name] = message
            return None
        return raw

    country = value("country", _COUNTRY, N_("a country is two letters, e.g. SN"))
    region = value("region", _REGION, N_("a region is an area code, e.g. SN01"))
    period = value("period", _PERIOD, N_("a period is a month, e.g. 2026-12"))
    dimension = _member(query, "dimension", Dimension, problems)
    level = _member(query, "level", Level, problems)

    if scope_country is not None:
        if country not in (None, scope_country):
            problems["country"] = N_("your account sees one country only")
        country = scope_country
    if region is not None and country is not None and not region.startswith(country):
        problems["region"] = N_("this region is not in the chosen country")
        region = None
    return ReadFilters(
        Filters(country=country, region=region, period=period, dimension=dimension, level=level),
        problems,
        scoped=scope_country is not None,
    )


E = TypeVar("E", Dimension, Level)


def _member(
    query: Mapping[str, str], name: str, enum: type[E], problems: dict[str, str]
) -> E | None:
    raw = (query.get(name) or "").strip()
    if not raw:
        return None
    try:
        return enum(raw)
    except ValueError:
        problems[name] = N_("not one of the choices")
        return None


def query_of(filters: Filters) -> dict[str, str]:
    """The query string that gives these filters back (links between pages keep them)."""
    values = {
        "country": filters.country,
        "region": filters.region,
        "period": filters.period,
        "dimension": filters.dimension.value if filters.dimension else None,
        "level": filters.level.value if filters.level else None,
    }
    return {k: v for k, v in values.items() if v}
