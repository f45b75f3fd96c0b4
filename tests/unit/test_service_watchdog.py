"""shared.service's watchdog: a service whose outbox relay, consume loop or periodic job has died
stops itself and exits non-zero, so that a restart policy acts (compose restarts a container
that exits; it never restarts one that is merely unhealthy)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import shared.service
from shared.service import EXIT_TASK_DIED, ServiceRuntime, serve
from shared.settings import ServiceSettings


class FakeRelay:
    def __init__(self, running: bool) -> None:
        self.running = running


class FakeServer:
    """uvicorn.Server as serve() uses it; ``during_run`` plays what happens while it serves."""

    during_run: Any = None

    def __init__(self, config: Any) -> None:
        self.should_exit = False

    def run(self) -> None:
        if FakeServer.during_run is not None:
            FakeServer.during_run()


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> ServiceRuntime:
    monkeypatch.setattr(shared.service, "WATCHDOG_INTERVAL_S", 0.01)
    monkeypatch.setattr(shared.service, "_exit_code", 0)
    server = FakeServer(None)
    monkeypatch.setattr(shared.service, "_server", server)
    settings = ServiceSettings(database_url="postgresql://svc:pw@127.0.0.1:5432/svc")  # type: ignore[arg-type]
    rt = ServiceRuntime("intake", settings, Path("/nonexistent"))  # a service of the catalogue
    rt.broker = SimpleNamespace(subscribers=[])  # type: ignore[assignment]
    return rt


def subscriber(*loops: asyncio.Task[None]) -> SimpleNamespace:
    """A started FastStream subscriber with these consume-loop tasks."""
    return SimpleNamespace(running=True, tasks=list(loops))


async def finished_task() -> asyncio.Task[None]:
    async def nothing() -> None:
        return None

    task = asyncio.create_task(nothing())
    await task
    return task


async def test_a_dead_outbox_relay_stops_the_process_with_a_non_zero_code(
    runtime: ServiceRuntime,
) -> None:
    runtime._relay = FakeRelay(running=False)  # type: ignore[assignment]
    await asyncio.wait_for(runtime._watch(), timeout=2)  # returns once it has acted
    assert shared.service._exit_code == EXIT_TASK_DIED
    assert shared.service._server is not None and shared.service._server.should_exit


async def test_a_consumer_whose_loops_all_ended_stops_the_process(runtime: ServiceRuntime) -> None:
    runtime._relay = FakeRelay(running=True)  # type: ignore[assignment]
    runtime.broker.subscribers.append(subscriber(await finished_task()))
    assert runtime.dead_tasks() == ["consumer_1"]
    await asyncio.wait_for(runtime._watch(), timeout=2)
    assert shared.service._exit_code == EXIT_TASK_DIED


async def test_a_healthy_service_keeps_running(runtime: ServiceRuntime) -> None:
    runtime._relay = FakeRelay(running=True)  # type: ignore[assignment]
    alive = asyncio.create_task(asyncio.sleep(60))
    # FastStream's restart of a failed loop: the old task is done, its successor runs.
    runtime.broker.subscribers.append(subscriber(await finished_task(), alive))
    watchdog = asyncio.create_task(runtime._watch())
    await asyncio.sleep(0.2)  # twenty looks
    assert not watchdog.done() and shared.service._exit_code == 0
    watchdog.cancel()
    alive.cancel()


async def test_one_look_at_a_task_between_restarts_is_not_enough(
    runtime: ServiceRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = iter([["consumer_1"], [], ["consumer_1"], []])
    monkeypatch.setattr(runtime, "dead_tasks", lambda: next(looks, []))
    watchdog = asyncio.create_task(runtime._watch())
    await asyncio.sleep(0.2)
    assert not watchdog.done() and shared.service._exit_code == 0
    watchdog.cancel()


def test_serve_exits_with_the_code_the_watchdog_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.service, "_exit_code", 0)
    monkeypatch.setattr(shared.service.uvicorn, "Server", FakeServer)
    monkeypatch.setattr(
        FakeServer, "during_run", lambda: shared.service.stop_process(EXIT_TASK_DIED)
    )
    settings = SimpleNamespace(http_host="127.0.0.1", http_port=8000)
    with pytest.raises(SystemExit) as exited:
        serve(object(), settings)
    assert exited.value.code == EXIT_TASK_DIED


def test_serve_returns_normally_after_an_ordinary_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.service, "_exit_code", 0)
    monkeypatch.setattr(shared.service.uvicorn, "Server", FakeServer)
    monkeypatch.setattr(FakeServer, "during_run", None)
    serve(object(), SimpleNamespace(http_host="127.0.0.1", http_port=8000))
