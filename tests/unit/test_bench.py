"""The benchmark's own arithmetic: when a submission counts as complete, how rates and
percentiles are taken, how targets are judged, and what the docs block and profiles contain."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.pipeline import Traffic, percentile, sustained_rate
from tests.bench.profiling import summarise
from tests.bench.report import DOC_END, DOC_START, markdown, targets, update_doc

RECEIVED = "org.referralexchange.notification.referral-received.v1"
UNMATCHED = "org.referralexchange.notification.need-unmatched.v1"


def test_a_submission_completes_when_every_need_has_arrived() -> None:
    traffic = Traffic(sent_at={"s1": 100.0}, needs={"s1": 2})
    traffic.record("s1", "n1", RECEIVED, 100.5)
    assert traffic.pending == 1
    traffic.record("s1", "n1", RECEIVED, 103.0)  # a redelivery keeps the first arrival
    assert traffic.pending == 1
    traffic.record("s1", "n2", UNMATCHED, 101.0)
    assert traffic.pending == 0
    assert traffic.completed_at == {"s1": 101.0}
    assert traffic.latencies_ms() == pytest.approx([500.0, 1000.0])
    assert traffic.ends == {RECEIVED: 2, UNMATCHED: 1}


def test_records_of_other_runs_are_not_expected() -> None:
    assert not Traffic(needs={"s1": 1}).expects("someone-else")


def test_sustained_rate_leaves_out_ramp_up_and_tail() -> None:
    # 100 events one per second, then a straggler an hour later: the steady rate is 1/s.
    times = [float(t) for t in range(100)] + [3600.0]
    assert sustained_rate(times) == pytest.approx(1.0, rel=0.02)
    assert sustained_rate([1.0, 2.0]) == 0.0  # too few to say


def test_percentiles_are_taken_from_the_sorted_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 51.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) != percentile([], 0.5)  # NaN: nothing measured


def _result(
    throughput: float, p99: float, ratio: float, rss: float, cpu_ms: float = 4.0, sql: float = 1.5
) -> dict[str, object]:
    return {
        "when": "2026-11-23T00:00:00+00:00",
        "machine": {"cpus": 2},
        "services": ["intake"],
        "directory": {"listings": 2000},
        "throughput": {
            "submissions": 100,
            "submissions_per_s": throughput,
            "inbox_events_per_s": 2 * throughput,
            "completion_rate_per_s": throughput,
            "p50_ms": 10.0,
            "p99_ms": 20.0,
            "cpu_ms_per_submission": cpu_ms,
        },
        "sql_per_submission": {
            "intake": {"all": sql * 2, "work": sql},
            "total": {"all": sql * 2, "work": sql},
        },
        "latency_at_half_rate": {
            "rate_per_s": throughput / 2,
            "p50_ms": 1.0,
            "p95_ms": 2.0,
            "p99_ms": p99,
        },
        "baseline": {"messages_per_s": 1000.0, "ratio": ratio / 10},
        "topology_baseline": {
            "processes": 3,
            "submissions_per_s": throughput / ratio,
            "messages": 1000,
            "messages_per_s": 10 * throughput / ratio,
            "ratio": ratio,
            "topology": {"topics": {}},
        },
        "resources": {
            "intake": {"cpu_cores": 0.5, "peak_rss_mb": rss},
            "postgresql": {"cpu_cores": 0.5, "peak_rss_mb": 5000.0},  # not a service
        },
    }


def test_targets_are_judged_against_the_measurements() -> None:
    verdicts = {t.name: t.met for t in targets(_result(1200, 400, 0.5, 100))}
    assert verdicts == {
        "throughput": True,
        "CPU per submission (all processes)": True,
        "SQL statements per submission (3 services)": True,  # BEGIN/COMMIT not counted
        "p99 at half the rate": True,
        "matching p99 per need, batched (10,000 listings)": None,  # not measured in this run
        "pipeline / raw baseline (same topology)": True,
        "pipeline / raw 3-hop baseline": None,  # a reference, no target
        "metrics cost (throughput, off vs on)": None,  # --no-metrics-baseline
        "peak memory per service": True,  # PostgreSQL's memory is not a service's
    }
    missed = {t.name: t.met for t in targets(_result(40, 900, 0.01, 300, cpu_ms=26, sql=45))}
    assert missed["throughput"] is False
    assert missed["CPU per submission (all processes)"] is False
    assert missed["SQL statements per submission (3 services)"] is False
    assert missed["p99 at half the rate"] is False
    assert missed["pipeline / raw baseline (same topology)"] is False
    assert missed["peak memory per service"] is False


def test_the_docs_block_is_replaced_and_nothing_else(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Title\n\nkept\n\n{DOC_START}\nold run\n{DOC_END}\n\nalso kept\n")
    update_doc(doc, markdown(_result(40, 900, 0.01, 300)), "performance/latency.png")
    text = doc.read_text()
    assert "old run" not in text
    assert "kept" in text and "also kept" in text
    assert "| throughput | >= 300 submissions/s | 40.0 /s | NOT met |" in text
    assert "| intake | 3.00 | 1.50 |" in text  # SQL statements per submission
    assert "![latency distribution](performance/latency.png)" in text


def test_a_doc_without_the_block_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# no markers\n")
    with pytest.raises(ValueError, match="bench:latest"):
        update_doc(doc, "table", "plot.png")


def test_profile_summary_counts_self_and_inclusive_time() -> None:
    collapsed = "main;handler;execute 6\nmain;handler;parse 3\nmain;idle 1\n"
    summary = summarise(collapsed)
    assert summary.startswith("10 samples")
    self_part, inclusive_part = summary.split("inclusive:")
    assert " 60.0 %  execute" in self_part and " 30.0 %  parse" in self_part
    assert " 90.0 %  handler" in inclusive_part and "100.0 %  main" in inclusive_part


def test_metrics_cost_is_judged_against_five_percent_of_throughput() -> None:
    def cost(value: float) -> bool | None:
        result = _result(1200, 400, 0.5, 100)
        result["metrics_cost"] = {"throughput_cost": value}
        [target] = [t for t in targets(result) if t.name.startswith("metrics cost")]
        assert target.measured == round(100 * value, 1)
        return target.met

    assert cost(0.049) is True
    assert cost(-0.02) is True  # on was faster: noise, within the target
    assert cost(0.051) is False
