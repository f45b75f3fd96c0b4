"""Runs the three services as real processes against the local Kafka and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "referral", "notification")


@dataclass
class RunningService:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningService]]:
    if "INTAKE_DATABASE_URL" not in os.environ:
        pytest.fail("e2e tests need the local infrastructure: run them with `make test`")
    taken = [n for n in SERVICES if _ready(int(os.environ[f"{n.upper()}_HTTP_PORT"]))]
    if taken:  # another instance (a `make run`?) would answer in place of ours
        pytest.fail(f"HTTP ports of {taken} already answer; stop the other instance first")
    logs = tmp_path_factory.mktemp("service-logs")
    running: dict[str, RunningService] = {}
    for name in SERVICES:
        log_path = logs / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        port = int(os.environ[f"{name.upper()}_HTTP_PORT"])
        running[name] = RunningService(name, process, log_path, port)
    deadline = time.monotonic() + 90
    while not all(_ready(s.port) for s in running.values()):
        dead = [s for s in running.values() if s.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            for s in running.values():
                s.process.kill()
            pytest.fail(
                "services did not become ready:\n"
                + "\n".join(f"--- {s.name}\n{s.log()[-3000:]}" for s in running.values())
            )
        time.sleep(0.5)
    try:
        yield running
    finally:
        for s in running.values():
            if s.process.poll() is None:
                s.process.send_signal(signal.SIGTERM)
        for s in running.values():
            try:
                s.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                s.process.kill()
