"""deploy/local scripts: a busy port is a clear error; `up` again reuses what runs."""

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "deploy/local" / script), "up"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kafka_refuses_a_busy_port(busy_port: int, tmp_path: Path) -> None:
    result = _run(
        "kafka.sh", {"REFEX_LOCAL_DIR": str(tmp_path), "REFEX_KAFKA_PORT": str(busy_port)}
    )
    assert result.returncode != 0
    assert f"port {busy_port} is already in use" in result.stderr
    assert not (tmp_path / "kafka" / "broker.pid").exists()


def test_postgres_refuses_a_busy_port(busy_port: int, tmp_path: Path) -> None:
    result = _run(
        "postgres.sh",
        {
            "REFEX_LOCAL_DIR": str(tmp_path),
            "REFEX_PG_DIR": str(tmp_path / "pg"),
            "REFEX_PG_PORT": str(busy_port),
        },
    )
    assert result.returncode != 0
    assert f"port {busy_port} is already in use" in result.stderr


def test_up_again_reuses_the_running_infrastructure() -> None:
    # make test exported REFEX_LOCAL_DIR and the ports of the infrastructure it started
    kafka = _run("kafka.sh", {})
    assert kafka.returncode == 0 and "already running" in kafka.stderr
    postgres = _run("postgres.sh", {})
    assert postgres.returncode == 0 and "already running" in postgres.stderr
