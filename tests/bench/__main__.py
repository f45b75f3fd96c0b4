"""``python -m tests.bench [options]`` (``make bench``): one benchmark run against the
infrastructure of the environment (REFEX_*, <SERVICE>_* variables as written by
deploy/local/env.sh). Writes bench.json and latency.png into --out; with --update-docs also
docs/performance/ and the latest-run block of docs/performance.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from .report import duplicates, markdown, plot_latencies, print_table, update_doc
from .run import Options, console, run

REPO = Path(__file__).resolve().parents[2]


def _options(args: argparse.Namespace) -> Options:
    return Options(**{f.name: getattr(args, f.name) for f in fields(Options)})


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    for f in fields(Options):
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            parser.add_argument(flag, type=type(f.default), default=f.default)
    parser.add_argument("--out", type=Path, default=REPO / ".local" / "bench-results")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(_options(args), args.out))
    latencies = result.pop("latencies_ms")
    print_table(result, console)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_latencies(latencies, args.out / "latency.png")
    (args.out / "bench.md").write_text(markdown(result))
    console.print(f"results: {args.out / 'bench.json'}, {args.out / 'latency.png'}")
    if args.update_docs:
        docs = REPO / "docs" / "performance"
        docs.mkdir(exist_ok=True)
        for name in ("bench.json", "latency.png"):
            shutil.copy(args.out / name, docs / name)
        update_doc(REPO / "docs" / "performance.md", markdown(result), "performance/latency.png")
    if duplicates(result):
        console.print(f"[bold red]FAILED: {duplicates(result)} inbox events applied twice")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
