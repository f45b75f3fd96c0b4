"""CPU and memory of the processes under test, from the operating system (psutil, /proc).

A *process group* is one service instance, the broker, or PostgreSQL (its postmaster and every
backend). CPU is counted in CPU-seconds between two snapshots, including children that have
already exited (PostgreSQL backends come and go); peak memory is the largest resident set seen by
a sampler that runs every half second, and for single processes the kernel's own high-water mark
(VmHWM), which no sampler can miss."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import psutil


def _own_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def _high_water_mark_mb(pid: int) -> float | None:
    """The kernel's peak resident set of ``pid`` in MB (Linux), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class ProcessGroup:
    """``root`` and, when ``with_children``, its live children."""

    name: str
    root: psutil.Process
    with_children: bool = False
    peak_rss_mb: float = 0.0
    _cpu_at_start: float = 0.0

    def processes(self) -> list[psutil.Process]:
        if not self.with_children:
            return [self.root]
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return [self.root]

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += _own_cpu(p) if p is self.root else _child_cpu(p)
        return total

    def rss_mb(self) -> float:
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20

    def peak_mb(self) -> float:
        """The largest resident set seen; for one process, the kernel's high-water mark."""
        if not self.with_children:
            mark = _high_water_mark_mb(self.root.pid)
            if mark is not None:
                return max(mark, self.peak_rss_mb)
        return self.peak_rss_mb


def _child_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass
class PhaseUsage:
    cpu_seconds: dict[str, float]
    wall_seconds: float

    def cores(self) -> dict[str, float]:
        """Average cores busy per group over the phase (1.0 = one core all the time)."""
        return {k: round(v / self.wall_seconds, 3) for k, v in self.cpu_seconds.items()}


@dataclass
class ResourceMeter:
    groups: list[ProcessGroup] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def add(self, name: str, pid: int, *, with_children: bool = False) -> None:
        self.groups.append(ProcessGroup(name, psutil.Process(pid), with_children))

    def start_sampling(self, every_s: float = 0.5) -> None:
        self._task = asyncio.create_task(self._sample(every_s))

    async def stop_sampling(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self, every_s: float) -> None:
        while True:
            for g in self.groups:
                g.peak_rss_mb = max(g.peak_rss_mb, g.rss_mb())
            await asyncio.sleep(every_s)

    def cpu_snapshot(self) -> dict[str, float]:
        return {g.name: g.cpu_seconds() for g in self.groups}

    @staticmethod
    def usage(before: dict[str, float], after: dict[str, float], wall_s: float) -> PhaseUsage:
        return PhaseUsage(
            {k: round(after[k] - before.get(k, 0.0), 2) for k in after}, max(wall_s, 1e-9)
        )

    def peaks_mb(self) -> dict[str, float]:
        return {g.name: round(g.peak_mb(), 1) for g in self.groups}


def pid_from_file(path: Path) -> int | None:
    """First line of a pid file (Kafka's broker.pid, PostgreSQL's postmaster.pid)."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def find_service_pids(service: str) -> list[int]:
    """Running instances of ``python -m services.<service>`` (a system started by make run)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = p.info.get("cmdline") or []
        if f"services.{service}" in cmdline and "-m" in cmdline:
            found.append(p.pid)
    return found
