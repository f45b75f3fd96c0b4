"""Sampling profiles of the running services with py-spy (``make bench ARGS=--profile``).

py-spy samples a process from outside (no code change, no restart) and writes collapsed stacks
(``frame;frame;frame count`` per line). The summary lists, per service, the frames where the
samples were taken (self time) and the frames they passed through (inclusive time), which is
what docs/performance.md quotes when it explains an optimisation."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


class Profiler:
    def __init__(self, out_dir: Path, rate_hz: int = 97) -> None:
        self.out_dir = out_dir
        self.rate_hz = rate_hz
        self._running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, services: dict[str, int]) -> None:
        py_spy = Path(sys.executable).parent / "py-spy"
        for name, pid in services.items():
            self._running[name] = subprocess.Popen(
                [
                    str(py_spy),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(self.rate_hz),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(self.stacks(name)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def stop(self) -> dict[str, str]:
        """Stop sampling; the summary per service."""
        for process in self._running.values():
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for process in self._running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        summaries = {}
        for name in self._running:
            path = self.stacks(name)
            if path.exists():
                summaries[name] = summarise(path.read_text())
                (self.out_dir / f"{name}.profile.txt").write_text(summaries[name])
        return summaries

    def stacks(self, name: str) -> Path:
        return self.out_dir / f"{name}.stacks.txt"


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def summarise(collapsed: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    through: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            through[frame] += count
    if not total:
        return "no samples\n"

    def table(counter: Counter[str]) -> list[str]:
        return [f"{100 * n / total:5.1f} %  {frame}" for frame, n in counter.most_common(top)]

    return "\n".join(
        [f"{total} samples", "", "self:", *table(own), "", "inclusive:", *table(through), ""]
    )
