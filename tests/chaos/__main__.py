"""``python -m tests.chaos [options]`` (``make chaos``): one run against the infrastructure of
the environment (REFEX_*, <SERVICE>_* variables as written by deploy/local/env.sh)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from .run import Plan, as_json, print_report, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    for f in fields(Plan):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default
        )
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args()
    plan = Plan(**{f.name: getattr(args, f.name) for f in fields(Plan)})
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="refex-chaos-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(run(plan, log_dir))
    print_report(report)
    (log_dir / "chaos-report.json").write_text(json.dumps(as_json(report), indent=2))
    print(f"report: {log_dir / 'chaos-report.json'}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
