"""deploy/local scripts: a busy port is a clear error; `up` again reuses what runs."""

import os
import shlex
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


def _env_file(name: str) -> tuple[Path, dict[str, str]]:
    path = Path(os.environ["REFEX_LOCAL_DIR"]) / name
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    # Values are shell-quoted where they need it (env.sh: a database URL's '&').
    pairs = (line.split("=", 1) for line in lines)
    return path, {key: "".join(shlex.split(value)) for key, value in pairs}


def test_the_operator_env_file_holds_no_service_secret() -> None:
    """README tells an operator to source .local/operator.env: it carries the operator's own
    Kafka principal and nothing of the services' (their Kafka and database passwords, keys),
    which stay in the services' file that only run.py and the test drivers read."""
    operator_path, operator = _env_file("operator.env")
    services_path, services = _env_file("env")
    assert set(operator) == {
        "REFEX_KAFKA_BOOTSTRAP_SERVERS",
        "REFEX_KAFKA_CA_FILE",  # the broker speaks TLS only
        "REFEX_KAFKA_USERNAME",
        "REFEX_KAFKA_PASSWORD",
        # Not a secret: the replicas of the topics the CLI creates (decision 34).
        "REFEX_KAFKA_REPLICATION_FACTOR",
    }
    secrets = {
        k: v
        for k, v in services.items()
        if k.endswith(("_PASSWORD", "_DATABASE_URL", "_KEY")) and not k.startswith("REFEX_")
    }
    assert {"INTAKE_DATABASE_URL", "INTAKE_MASTER_KEY", "REFERRAL_KAFKA_PASSWORD"} <= set(secrets)
    text = operator_path.read_text()
    assert [k for k, v in secrets.items() if v in text] == []
    assert "postgresql://" not in text
    for path in (operator_path, services_path):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"

    # Enough for the operator CLI on its own: it reads the ACLs on the broker as admin.
    result = subprocess.run(
        [str(REPO / ".venv/bin/refex"), "platform", "acls", "--user", "intake"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/"),
            # this checkout's code (test.sh sets it), not whatever the venv was installed from
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
            **operator,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "intake.cases.v1" in result.stdout
