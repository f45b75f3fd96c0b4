"""Runs the three services as real processes against the local Kafka and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from shared.settings import service_environment
from tests.readiness import service_ready

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


# Nearly every e2e test registers agencies of its own and publishes on their new topics at once;
# a service sees a new topic at its next metadata refresh (5 s by default, each test waiting up
# to that long for each hop). Here the services look every second; a module may still set more.
NEW_TOPICS_SEEN_WITHIN = {
    f"{s.upper()}_TOPIC_DISCOVERY_INTERVAL_S": "1" for s in (*SERVICES, "evidence")
}


def start_service(name: str, log_dir: Path, extra_env: dict[str, str]) -> RunningService:
    log_path = log_dir / f"{name}.log"
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **NEW_TOPICS_SEEN_WITHIN, **extra_env}
    process = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        cwd=REPO,
        env=service_environment(name, environ),
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return RunningService(name, process, log_path, int(os.environ[f"{name.upper()}_HTTP_PORT"]))


def wait_ready(running: list[RunningService], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not all(service_ready(s.port) for s in running):
        dead = [s for s in running if s.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            for s in running:
                s.process.kill()
            pytest.fail(
                "services did not become ready:\n"
                + "\n".join(f"--- {s.name}\n{s.log()[-3000:]}" for s in running)
            )
        time.sleep(0.3)


def stop_service(service: RunningService) -> None:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
    try:
        service.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        service.process.kill()


@pytest.fixture(scope="module")
def services(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunningService]]:
    """The three services as processes; a test module may set ``SERVICE_ENV`` (extra
    environment, e.g. short deadlines)."""
    if "INTAKE_DATABASE_URL" not in os.environ:
        pytest.fail("e2e tests need the local infrastructure: run them with `make test`")
    taken = [n for n in SERVICES if service_ready(int(os.environ[f"{n.upper()}_HTTP_PORT"]))]
    if taken:  # another instance (a `make run`?) would answer in place of ours
        pytest.fail(f"HTTP ports of {taken} already answer; stop the other instance first")
    log_dir = tmp_path_factory.mktemp("service-logs")
    extra = getattr(request.module, "SERVICE_ENV", {})
    running = {name: start_service(name, log_dir, extra) for name in SERVICES}
    wait_ready(list(running.values()))
    try:
        yield running
    finally:
        for service in running.values():
            stop_service(service)


def _one_more_service(
    name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """One more service as a process, beside the three; ``SERVICE_ENV`` applies to it too."""
    port = int(os.environ[f"{name.upper()}_HTTP_PORT"])
    if service_ready(port):
        pytest.fail(f"the {name} HTTP port already answers; stop the other instance first")
    extra = getattr(request.module, "SERVICE_ENV", {})
    running = start_service(name, tmp_path_factory.mktemp(f"{name}-log"), extra)
    wait_ready([running])
    try:
        yield running
    finally:
        stop_service(running)


@pytest.fixture(scope="module")
def evidence(
    request: pytest.FixtureRequest,
    services: dict[str, RunningService],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningService]:
    """The evidence service as a process too, only for the modules that ask for it (the others
    need not wait for it)."""
    yield from _one_more_service("evidence", request, tmp_path_factory)


@pytest.fixture(scope="module")
def gateway(
    request: pytest.FixtureRequest,
    services: dict[str, RunningService],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningService]:
    """The agency gateway as a process too (issue 20), only for the modules that ask for it;
    it holds no credential: the tests log in as agency principals."""
    yield from _one_more_service("gateway", request, tmp_path_factory)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """The real-browser tests' chromium: Debian's (deploy/local/browser.sh installs it; no
    browser can be downloaded at run time)."""
    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fuzzing test runs last: it leaves thousands of malformed records on the shared topics
    (intake.cases.v1, referral.events.v1, ...), which the other tests' readers do not expect."""
    chaos = [i for i in items if i.path.name == "test_chaos.py"]  # restarts broker and database
    last = [i for i in items if i.path.name == "test_fuzz_inbound.py"]
    items[:] = [i for i in items if i not in last and i not in chaos] + chaos + last
