"""Chart.js configurations from report tables (pure). A suppressed figure is a gap (null) in
its chart, never a number; the table beside the chart says "suppressed" in its place.

The page embeds each configuration as JSON (``<script type="application/json">``); the vendored
Chart.js draws it (static/dashboard.js). Nothing here is executed by the browser.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.evidence.report import Table

from .i18n import Words, column_label

WAVE_ORDER = ("baseline", "month_3", "month_6", "month_12")


@dataclass(frozen=True, slots=True)
class Chart:
    chart_id: str
    title: str
    config: dict[str, Any]  # Chart.js: type, data, options


def _ordered(values: Sequence[str], order: Sequence[str] = ()) -> list[str]:
    """Distinct values, those of ``order`` first in that order, then as they came."""
    seen = list(dict.fromkeys(values))
    return [v for v in order if v in seen] + [v for v in seen if v not in order]


def _chart_value(figure: str, value: float | None) -> float | None:
    # Rates are drawn as percentages; the table writes them the same way.
    if value is None:
        return None
    return round(value * 100, 1) if figure.endswith("_rate") else value


def series_chart(
    words: Words,
    table: Table,
    *,
    chart_id: str,
    title: str,
    kind: str,
    along: str,
    series: str,
    figure: str,
    along_order: Sequence[str] = (),
    stacked: bool = False,
) -> Chart:
    """One figure of ``table``: ``along`` (a key) on the x axis, one dataset per value of the
    ``series`` key."""
    a, s, f = table.keys.index(along), table.keys.index(series), table.figures.index(figure)
    labels = _ordered([row.key[a] for row in table.rows], along_order)
    names = _ordered([row.key[s] for row in table.rows])
    values = {(row.key[a], row.key[s]): row.values[f] for row in table.rows}
    datasets = [
        {
            "label": words.term(series, name),
            "data": [_chart_value(figure, values.get((label, name))) for label in labels],
        }
        for name in names
    ]
    return Chart(
        chart_id,
        title,
        {
            "type": kind,
            "data": {"labels": [words.term(along, v) for v in labels], "datasets": datasets},
            "options": {"stacked": stacked, "yTitle": column_label(words, figure)},
        },
    )


def figures_chart(
    words: Words,
    table: Table,
    *,
    chart_id: str,
    title: str,
    figures: Sequence[str],
    label: Callable[[tuple[str, ...]], str],
) -> Chart:
    """Some figures of ``table`` side by side, one bar group per row."""
    indexes = [table.figures.index(f) for f in figures]
    return Chart(
        chart_id,
        title,
        {
            "type": "bar",
            "data": {
                "labels": [label(row.key) for row in table.rows],
                "datasets": [
                    {
                        "label": column_label(words, figure),
                        "data": [_chart_value(figure, row.values[i]) for row in table.rows],
                    }
                    for figure, i in zip(figures, indexes, strict=True)
                ],
            },
            "options": {"stacked": False, "horizontal": True},
        },
    )


def unmet_charts(words: Words, table: Table) -> list[Chart]:
    return [
        series_chart(
            words,
            table,
            chart_id="chart-unmet",
            title=words.gettext("Unmet needs by area and reason"),
            kind="bar",
            along="area",
            series="reason",
            figure="unmet_needs",
            stacked=True,
        )
    ]


def provider_charts(words: Words, table: Table) -> list[Chart]:
    p, c = table.keys.index("provider"), table.keys.index("category")

    def label(key: tuple[str, ...]) -> str:
        return f"{key[p]} · {words.term('category', key[c])}"

    return [
        figures_chart(
            words,
            table,
            chart_id="chart-acceptance",
            title=words.gettext("Acceptance rate (%)"),
            figures=("acceptance_rate",),
            label=label,
        ),
        figures_chart(
            words,
            table,
            chart_id="chart-answer-hours",
            title=words.gettext("Hours to answer"),
            figures=("answer_hours_p50", "answer_hours_p90"),
            label=label,
        ),
    ]


def drawable(charts: list[Chart]) -> list[Chart]:
    """The charts with at least one published figure (one of only gaps would look empty,
    not suppressed; the table says it)."""
    return [
        c
        for c in charts
        if any(v is not None for d in c.config["data"]["datasets"] for v in d["data"])
    ]


def _from_baseline(words: Words, chart: Chart) -> Chart:
    """A change from the baseline is 0 at the baseline by definition: each line starts there
    (a pathway with no published figure gets no start either)."""
    data = chart.config["data"]
    baseline = words.term("wave", WAVE_ORDER[0])
    if baseline in data["labels"]:
        return chart
    datasets = [
        {**d, "data": [0.0 if any(v is not None for v in d["data"]) else None, *d["data"]]}
        for d in data["datasets"]
    ]
    config = {**chart.config, "data": {"labels": [baseline, *data["labels"]], "datasets": datasets}}
    return Chart(chart.chart_id, chart.title, config)


def pathway_charts(words: Words, table: Table) -> list[Chart]:
    return [
        _from_baseline(
            words,
            series_chart(
                words,
                table,
                chart_id=f"chart-{figure.replace('_', '-')}",
                title=column_label(words, figure),
                kind="line",
                along="wave",
                series="pathway",
                figure=figure,
                along_order=WAVE_ORDER,
            ),
        )
        for figure in table.figures
        if figure.endswith("_change")
    ]
