"""The benchmark's results: targets met or not, a rich table on the terminal, JSON, a markdown
table (also written into docs/performance.md between markers) and a PNG of the latencies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

DOC_START = "<!-- bench:latest:start -->"
DOC_END = "<!-- bench:latest:end -->"


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: float | None
    unit: str
    met: bool | None  # None: not measured in this run


def targets(result: dict[str, Any]) -> list[Target]:
    """The issue's targets on this 2-core machine, against this run's measurements."""
    throughput = result["throughput"]["submissions_per_s"]
    half = result.get("latency_at_half_rate", {}).get("p99_ms")
    ratio = result.get("topology_baseline", {}).get("ratio")
    ratio_3hop = result.get("baseline", {}).get("ratio")
    # per need as referral's consumer pays it: the candidates of a batch's needs read at once
    matched = result.get("matching", {})
    matching = matched.get("batched_p99_ms", matched.get("p99_ms"))
    listings = result.get("matching", {}).get("listings", 10_000)  # the target's size
    peak = max(
        (v["peak_rss_mb"] for k, v in result["resources"].items() if k in result["services"]),
        default=None,
    )

    def check(value: float | None, ok: bool) -> bool | None:
        return None if value is None else ok

    metrics_cost = result.get("metrics_cost", {}).get("throughput_cost")
    cpu_ms = result["throughput"].get("cpu_ms_per_submission")
    sql = result.get("sql_per_submission", {}).get("total", {}).get("work")
    return [
        Target("throughput", ">= 300 submissions/s", throughput, "/s", throughput >= 300),
        Target(
            "CPU per submission (all processes)",
            "<= 5 ms",
            cpu_ms,
            "ms",
            check(cpu_ms, (cpu_ms or 0) <= 5),
        ),
        Target(
            "SQL statements per submission (3 services)",
            "<= 2",
            sql,
            "",
            check(sql, (sql or 0) <= 2),
        ),
        Target("p99 at half the rate", "<= 500 ms", half, "ms", check(half, (half or 0) <= 500)),
        Target(
            f"matching p99 per need, batched ({listings:,} listings)",
            "<= 2 ms",
            matching,
            "ms",
            check(matching, (matching or 0) <= 2),
        ),
        Target(
            "pipeline / raw baseline (same topology)",
            ">= 0.3",
            ratio,
            "",
            check(ratio, (ratio or 0) >= 0.3),
        ),
        Target("pipeline / raw 3-hop baseline", "(reference)", ratio_3hop, "", None),
        Target(
            "metrics cost (throughput, off vs on)",
            "<= 5 %",
            None if metrics_cost is None else round(100 * metrics_cost, 1),
            "%",
            check(metrics_cost, (metrics_cost or 0) <= 0.05),
        ),
        Target("peak memory per service", "<= 250 MB", peak, "MB", check(peak, (peak or 0) <= 250)),
    ]


def duplicates(result: dict[str, Any]) -> int:
    """Inbox events applied twice in the run (distinct events for one need or one effect)."""
    once = result.get("exactly_once", {})
    return int(once.get("duplicate_need_ends", 0)) + int(once.get("duplicate_inbox_events", 0))


def _exactly_once(result: dict[str, Any]) -> str | None:
    once = result.get("exactly_once")
    if once is None:
        return None
    return (
        f"{once['inbox_events']:,} inbox events: {once['duplicate_need_ends']} needs ended twice, "
        f"{once['duplicate_inbox_events']} duplicate inbox events, "
        f"{once['redelivered']} redelivered (same ce_id)"
    )


def _topology_line(result: dict[str, Any]) -> str | None:
    t = result.get("topology_baseline")
    if t is None:
        return None
    tp = result["throughput"]
    return (
        f"raw baseline, same topology ({t['processes']} processes): "
        f"{t['submissions_per_s']:.1f} submissions/s, {t['messages_per_s']:.0f} messages/s "
        f"({t['messages']:,} messages; the pipeline: {tp.get('messages', 0):,} messages, "
        f"{tp.get('messages_per_s', 0):.0f}/s); pipeline / baseline = {t['ratio']:.3f}"
    )


def _load(result: dict[str, Any]) -> str:
    load = result["machine"].get("load_average")
    return f", load average {' → '.join(f'{v:.1f}' for v in load)}" if load else ""


def _instances(result: dict[str, Any]) -> str:
    n = result.get("options", {}).get("instances", 1)
    return f", {n} instances per service" if n > 1 else ""


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{text} {unit}".strip()


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "-"}[met]


def print_table(result: dict[str, Any], console: Console) -> None:
    table = Table(title="make bench")
    for column in ("target", "goal", "measured", ""):
        table.add_column(column)
    for t in targets(result):
        table.add_row(t.name, t.goal, _fmt(t.measured, t.unit), _verdict(t.met))
    console.print(table)
    usage = Table(title="resources (throughput phase)")
    for column in ("process", "CPU cores (avg)", "CPU ms / submission", "peak RSS MB"):
        usage.add_column(column)
    for name, r in result["resources"].items():
        usage.add_row(
            name,
            f"{r['cpu_cores']:.2f}",
            f"{r.get('cpu_ms_per_submission', float('nan')):.2f}",
            f"{r['peak_rss_mb']:.0f}",
        )
    console.print(usage)
    if "sql_per_submission" in result:
        sql = Table(title="SQL statements per submission (throughput phase)")
        for column in ("database", "all", "without BEGIN/COMMIT/SAVEPOINT"):
            sql.add_column(column)
        for db, c in result["sql_per_submission"].items():
            sql.add_row(db, f"{c['all']:.2f}", f"{c['work']:.2f}")
        console.print(sql)
    tp, half = result["throughput"], result.get("latency_at_half_rate", {})
    console.print(
        f"{tp['submissions']:,} submissions ({tp['needs']:,} needs): "
        f"{tp['submissions_per_s']:.1f} submissions/s, "
        f"{tp['inbox_events_per_s']:.1f} inbox events/s; latency at saturation "
        f"p50 {tp['p50_ms']:.0f} ms, p99 {tp['p99_ms']:.0f} ms"
    )
    if half:
        console.print(
            f"at {half['rate_per_s']:.1f} submissions/s (half): p50 {half['p50_ms']:.0f} ms, "
            f"p95 {half['p95_ms']:.0f} ms, p99 {half['p99_ms']:.0f} ms"
        )
    if "baseline" in result:
        b = result["baseline"]
        console.print(
            f"raw 3-hop aiokafka baseline: {b['messages_per_s']:.0f} messages/s; "
            f"pipeline / baseline = {b['ratio']:.3f}"
        )
    topology_line = _topology_line(result)
    if topology_line:
        console.print(topology_line)
    once = _exactly_once(result)
    if once:
        style = "bold red" if duplicates(result) else "green"
        verdict = "APPLIED TWICE" if duplicates(result) else "exactly once"
        console.print(f"[{style}]{verdict}: {once}[/{style}]")


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Run of {result['when']} on {result['machine']['cpus']} cores{_load(result)} "
        f"({result['throughput']['submissions']:,} submissions, "
        f"{result['directory']['listings']:,} listings{_instances(result)}).",
        "",
        "| target | goal | measured | |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t.name} | {t.goal} | {_fmt(t.measured, t.unit)} | {_verdict(t.met)} |"
        for t in targets(result)
    ]
    tp, half = result["throughput"], result.get("latency_at_half_rate", {})
    lines += [
        "",
        "| measure | value |",
        "|---|---|",
        f"| submissions/s (sustained) | {tp['submissions_per_s']:.1f} |",
        f"| inbox events/s (sustained) | {tp['inbox_events_per_s']:.1f} |",
        f"| needs reaching the inboxes, steady part (submissions/s) | "
        f"{tp['completion_rate_per_s']:.1f} |",
        f"| latency at saturation p50 / p99 | {tp['p50_ms']:.0f} / {tp['p99_ms']:.0f} ms |",
    ]
    if half:
        lines.append(
            f"| latency at {half['rate_per_s']:.1f}/s p50 / p95 / p99 | "
            f"{half['p50_ms']:.0f} / {half['p95_ms']:.0f} / {half['p99_ms']:.0f} ms |"
        )
    if "messages_per_s" in tp:
        lines.append(f"| messages/s, every topic (pipeline) | {tp['messages_per_s']:.0f} |")
    if "topology_baseline" in result:
        t = result["topology_baseline"]
        lines.append(
            f"| raw baseline, same topology: submissions/s, messages/s | "
            f"{t['submissions_per_s']:.1f}, {t['messages_per_s']:.0f} |"
        )
    if "baseline" in result:
        b = result["baseline"]
        lines.append(f"| raw 3-hop baseline messages/s | {b['messages_per_s']:.0f} |")
    if "exactly_once" in result:
        o = result["exactly_once"]
        lines.append(
            f"| inbox events applied twice / redelivered | "
            f"{duplicates(result)} / {o['redelivered']} |"
        )
    if "matching" in result:
        m = result["matching"]
        lines.append(
            f"| matching p50 / p99, one need at a time | {m['p50_ms']:.3f} / {m['p99_ms']:.3f} ms |"
        )
        if "batched_p99_ms" in m:
            lines.append(
                f"| matching p50 / p99 per need, {m['batch_needs']} needs a batch | "
                f"{m['batched_p50_ms']:.3f} / {m['batched_p99_ms']:.3f} ms |"
            )
    lines += [
        "",
        "| process | CPU cores (avg) | CPU ms / submission | peak RSS MB |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['cpu_cores']:.2f} | {r.get('cpu_ms_per_submission', float('nan')):.2f} "
        f"| {r['peak_rss_mb']:.0f} |"
        for name, r in result["resources"].items()
    ]
    if "topology_baseline" in result:
        topo = result["topology_baseline"]["topology"]
        lines += [
            "",
            "| topic (same topology, both runs) | topics | records / submission | mean bytes |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {t['topics']} | {t['per_submission']:.2f} | {t['mean_bytes']} |"
            for name, t in topo["topics"].items()
        ]
    if "sql_per_submission" in result:
        lines += [
            "",
            "| database | SQL statements / submission | without transaction control |",
            "|---|---|---|",
        ]
        lines += [
            f"| {db} | {c['all']:.2f} | {c['work']:.2f} |"
            for db, c in result["sql_per_submission"].items()
        ]
    return "\n".join(lines) + "\n"


def update_doc(doc: Path, table: str, plot: str) -> None:
    """Replace the block between the markers in ``doc`` with the latest run."""
    text = doc.read_text()
    block = f"{DOC_START}\n{table}\n![latency distribution]({plot})\n{DOC_END}"
    pattern = re.compile(re.escape(DOC_START) + ".*?" + re.escape(DOC_END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{doc} has no {DOC_START} … {DOC_END} block")
    doc.write_text(pattern.sub(lambda _: block, text))


def plot_latencies(series: dict[str, list[float]], path: Path) -> None:
    """Histogram (log scale) and cumulative distribution of each phase's latencies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for label, values in series.items():
        if not values:
            continue
        low, high = max(min(values), 1.0), max(max(values), 2.0)
        bins = [low * (high / low) ** (i / 60) for i in range(61)]  # even on the log axis
        hist.hist(values, bins=bins, alpha=0.6, label=label)
        cdf.plot(values, [i / len(values) for i in range(1, len(values) + 1)], label=label)
    hist.set_xscale("log")
    hist.set_xlabel("publish → inbox latency (ms)")
    hist.set_ylabel("events")
    cdf.set_xscale("log")
    cdf.set_xlabel("publish → inbox latency (ms)")
    cdf.set_ylabel("share of events")
    cdf.grid(True, alpha=0.3)
    for ax in (hist, cdf):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
