"""The dashboard's pure decisions: language, filters and scope, login throttling, how figures
are written and drawn, and the French catalogue against the pages' messages."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages import pofile
from babel.messages.extract import extract_from_dir
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.evidence.report import SCORES_BY_PATHWAY, UNMET_BY_AREA, Filters, Row, Table
from services.evidence.web import charts, i18n
from services.evidence.web.filters import query_of, read_filters
from services.evidence.web.i18n import Words, choose_language, load_translations
from services.evidence.web.tables import format_figure, table_view
from shared.contracts.taxonomy import TAXONOMY, Dimension, Level, Vulnerability
from shared.web.throttle import (
    Failures,
    ThrottlePolicy,
    failures_after,
    wait_before_next_attempt,
)
from tests.dashboard_fakes import sample_report

WEB = Path(i18n.__file__).parent
EN, FR = Words("en", load_translations("en")), Words("fr", load_translations("fr"))
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("asked", "cookie", "accept", "expected"),
    [
        ("fr", "en", "en", "fr"),
        (None, "fr", "en", "fr"),
        (None, None, "de-DE, fr-CA;q=0.8, en;q=0.5", "fr"),
        (None, None, "fr;q=0.2, en;q=0.9", "en"),
        (None, None, "fr;q=0, de", "en"),
        ("xx", "yy", "zz;q=nonsense", "en"),
        (None, None, None, "en"),
    ],
)
def test_language_is_the_link_then_the_cookie_then_the_browser(
    asked: str | None, cookie: str | None, accept: str | None, expected: str
) -> None:
    assert choose_language(asked, cookie, accept) == expected


def test_filters_are_read_and_checked() -> None:
    read = read_filters(
        {
            "country": "sn",
            "region": "SN01",
            "period": "2026-12",
            "dimension": "economic",
            "level": "community",
        },
        None,
    )
    assert read.filters == Filters("SN", "SN01", "2026-12", Dimension.ECONOMIC, Level.COMMUNITY)
    assert read.problems == {}
    assert query_of(read.filters) == {
        "country": "SN",
        "region": "SN01",
        "period": "2026-12",
        "dimension": "economic",
        "level": "community",
    }


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ({"country": "Senegal"}, "country"),
        ({"region": "SN-DK"}, "region"),
        ({"period": "2026-13"}, "period"),
        ({"dimension": "spiritual"}, "dimension"),
        ({"level": "global"}, "level"),
        ({"country": "SN", "region": "ML01"}, "region"),
    ],
)
def test_a_bad_filter_is_left_out_with_its_reason(query: dict[str, str], problem: str) -> None:
    read = read_filters(query, None)
    assert problem in read.problems
    assert getattr(read.filters, problem) is None


@given(st.dictionaries(st.sampled_from(["country", "region", "period"]), st.text(max_size=8)))
def test_a_scoped_viewer_is_held_to_its_country_whatever_it_asks(query: dict[str, str]) -> None:
    read = read_filters(query, "SN")
    assert read.filters.country == "SN"
    assert read.filters.region is None or read.filters.region.startswith("SN")
    assert read.scoped


def test_throttling_waits_longer_after_each_failure_up_to_a_cap_and_forgets() -> None:
    policy = ThrottlePolicy(free_failures=3, first_wait_s=30, longest_wait_s=300)
    assert wait_before_next_attempt(None, NOW, policy) is None
    assert wait_before_next_attempt(Failures(2, NOW), NOW, policy) is None
    assert wait_before_next_attempt(Failures(3, NOW), NOW, policy) == timedelta(seconds=30)
    assert wait_before_next_attempt(Failures(4, NOW), NOW, policy) == timedelta(seconds=60)
    assert wait_before_next_attempt(Failures(40, NOW), NOW, policy) == timedelta(seconds=300)
    later = NOW + timedelta(seconds=31)
    assert wait_before_next_attempt(Failures(3, NOW), later, policy) is None
    day_later = NOW + timedelta(days=1)
    assert wait_before_next_attempt(Failures(40, NOW), day_later, policy) is None
    assert failures_after(Failures(40, NOW), day_later, policy) == Failures(1, day_later)
    assert failures_after(Failures(4, NOW), later, policy) == Failures(5, later)


@pytest.mark.parametrize(
    ("figure", "value", "english", "french"),
    [
        ("acceptance_rate", 0.8, "80.0%", "80,0\u00a0%"),
        ("answer_hours_p50", 30.25, "30.2", "30,2"),
        ("composite_change", 0.114, "+0.11", "+0,11"),
        ("composite_change", -0.05, "\N{MINUS SIGN}0.05", "\N{MINUS SIGN}0,05"),
        ("referrals_made", 1250.0, "1,250", "1\u202f250"),
    ],
)
def test_figures_are_written_in_the_readers_language(
    figure: str, value: float, english: str, french: str
) -> None:
    assert format_figure(EN, figure, value) == english
    assert format_figure(FR, figure, value) == french


def test_a_suppressed_figure_is_a_word_in_the_table_and_a_gap_in_the_chart() -> None:
    table = sample_report(Filters()).table(UNMET_BY_AREA)
    view = table_view(EN, table)
    suppressed = [cell for line in view.lines for cell in line if cell.suppressed]
    assert suppressed and all(c.text == "suppressed" and c.value is None for c in suppressed)
    assert view.suppressed_rows == 2
    (chart,) = charts.unmet_charts(EN, table)
    by_reason = {d["label"]: d["data"] for d in chart.config["data"]["datasets"]}
    assert by_reason == {"No service listed": [12.0, 7.0, 9.0], "Outside the consent": [None] * 3}


def test_pathway_charts_draw_each_score_change_along_the_waves() -> None:
    table = sample_report(Filters()).table(SCORES_BY_PATHWAY)
    drawn = charts.pathway_charts(FR, table)
    assert [c.chart_id for c in drawn] == [
        "chart-economic-change",
        "chart-social-change",
        "chart-psychosocial-change",
        "chart-composite-change",
    ]
    composite = drawn[-1].config
    assert composite["data"]["labels"] == ["Situation de référence", "Mois 6"]
    # From 0 at the baseline; the suppressed pathway has no line at all.
    assert [d["data"] for d in composite["data"]["datasets"]] == [
        [0.0, 0.11],
        [0.0, 0.08],
        [None, None],
    ]


def test_a_chart_of_only_suppressed_figures_is_not_drawn() -> None:
    table = sample_report(Filters()).table(UNMET_BY_AREA)
    hidden = replace(table, rows=tuple(replace(r, values=(None,), cases=None) for r in table.rows))
    assert charts.drawable(charts.unmet_charts(EN, hidden)) == []
    assert len(charts.drawable(charts.unmet_charts(EN, table))) == 1


# ----- the catalogues -----


def _extracted() -> set[str]:
    found = extract_from_dir(
        str(WEB),
        method_map=[("**.py", "python"), ("templates/**.html", "jinja2")],
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
    )
    return {m[2] if isinstance(m[2], str) else m[2][0] for m in found}


def _catalogue(path: Path) -> dict[str, object]:
    with path.open("rb") as f:
        return {
            (m.id if isinstance(m.id, str) else m.id[0]): m.string
            for m in pofile.read_po(f)
            if m.id
        }


def test_every_message_of_the_pages_is_in_the_template_and_translated_in_french() -> None:
    extracted = _extracted()
    template = _catalogue(WEB / "locale" / "dashboard.pot")
    french = _catalogue(WEB / "locale" / "fr" / "LC_MESSAGES" / "dashboard.po")
    assert extracted - set(template) == set(), "run `make messages` and translate"
    untranslated = {m for m in extracted if not french.get(m) or french[m] in ("", ("", ""))}
    assert untranslated == set(), "translate these in locale/fr/LC_MESSAGES/dashboard.po"


def test_the_french_catalogue_compiles_and_keeps_its_placeholders() -> None:
    translations = load_translations("fr")
    assert translations.gettext("Log in") == "Se connecter"
    assert (
        translations.ngettext("%(num)d row suppressed.", "%(num)d rows suppressed.", 2) % {"num": 2}
        == "2 lignes masquées."
    )
    with (WEB / "locale" / "fr" / "LC_MESSAGES" / "dashboard.po").open("rb") as f:
        catalogue = pofile.read_po(io.BytesIO(f.read()))
    assert [str(e) for m in catalogue for e in m.check(catalogue)] == []


@pytest.mark.parametrize(
    ("column", "code", "english", "french"),
    [
        ("dimension", "psychosocial", "Psychosocial", "Psychosociale"),
        ("category", "economic.job_placement", "Job placement", "Placement en emploi"),
        ("pathway", "none", "No accepted referral", "Aucune orientation acceptée"),
        ("breakdown", "age_band", "Age band", "Tranche d'âge"),
        ("group", "female", "Female", "Femme"),
        ("group", "25-34", "25-34", "25-34"),
        ("state", "completed", "Case moved", "Dossier transféré"),
        ("reason", "no_capacity", "No capacity", "Pas de capacité"),
        ("wave", "month_12", "Month 12", "Mois 12"),
        ("area", "SN01", "SN01", "SN01"),
    ],
)
def test_key_values_are_written_as_labels_in_the_readers_language(
    column: str, code: str, english: str, french: str
) -> None:
    assert (EN.term(column, code), FR.term(column, code)) == (english, french)


def test_a_vulnerability_group_takes_its_taxonomy_label() -> None:
    assert FR.term("group", "single_parent") == TAXONOMY.label(Vulnerability.SINGLE_PARENT, "fr")


def test_a_table_whose_figures_count_the_cases_has_no_second_cases_column() -> None:
    table = Table(
        "by_group",
        ("breakdown", "group"),
        ("cases", "accepted"),
        (Row(("sex", "female"), (21.0, 6.0), 21),),
    )
    view = table_view(EN, table)
    assert view.headings == ("Breakdown", "Group", "Cases", "Accepted")
    assert [c.text for c in view.lines[0]] == ["Sex", "Female", "21", "6"]


def _evidence_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    from services.evidence.settings import EvidenceSettings

    for name in (
        "EVIDENCE_DASHBOARD_SESSION_KEY",
        "EVIDENCE_ENVIRONMENT",
        "EVIDENCE_KAFKA_CA_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EVIDENCE_DATABASE_URL", "postgresql://evidence:x@h:1/d")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return EvidenceSettings()  # type: ignore[call-arg]


def test_the_session_key_is_required_and_checked_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="dashboard_session_key"):
        _evidence_settings(monkeypatch)
    production = {
        "EVIDENCE_ENVIRONMENT": "production",
        "EVIDENCE_KAFKA_USERNAME": "evidence",
        "EVIDENCE_KAFKA_PASSWORD": "a-long-kafka-password-for-evidence",
        "EVIDENCE_DATABASE_URL": "postgresql://evidence:a-long-database-password-1@h:1/d"
        "?sslmode=verify-full",
        "EVIDENCE_KAFKA_CA_FILE": "/etc/refex/tls/ca.crt",
    }
    with pytest.raises(ValidationError, match="dashboard_session_key is a placeholder"):
        _evidence_settings(
            monkeypatch,
            **production,
            EVIDENCE_DASHBOARD_SESSION_KEY="change-me-dashboard-session-key",
        )
    strong = _evidence_settings(
        monkeypatch, **production, EVIDENCE_DASHBOARD_SESSION_KEY="Zm9vYmFyYmF6cXV4" * 3
    )
    assert strong.dashboard_config().secure_cookies  # type: ignore[attr-defined]
    development = _evidence_settings(monkeypatch, EVIDENCE_DASHBOARD_SESSION_KEY="k" * 44)
    assert not development.dashboard_config().secure_cookies  # type: ignore[attr-defined]
