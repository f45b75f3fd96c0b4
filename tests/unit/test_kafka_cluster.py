"""The replicated cluster of deploy/local (REFEX_KAFKA_BROKERS=3, decision 34) without starting
it: the ports and bootstrap list deploy/local/common.sh derives, the configuration node 2 of 3
is started with, the replication settings the topic creation reads, and that every producer of
the code asks for acks=all (what min.insync.replicas=2 needs to mean anything)."""

from __future__ import annotations

import ast
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from shared.kafka import admin
from tests.chaos import cluster
from tests.chaos.run import Plan, check_cluster_plan, fault_gap, schedule

ROOT = Path(__file__).resolve().parents[2]
COMMON = ROOT / "deploy" / "local" / "common.sh"
BROKER_PROPERTIES = ROOT / "deploy" / "kafka" / "broker-properties.sh"
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"
CLUSTER_VARIABLES = (
    "REFEX_KAFKA_BROKERS",
    "REFEX_KAFKA_PORT",
    "REFEX_KAFKA_CONTROLLER_PORT",
    "REFEX_KAFKA_REPLICATION_FACTOR",
    "REFEX_KAFKA_NODE_ID",
    "REFEX_KAFKA_QUORUM_VOTERS",
)


def _bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in CLUSTER_VARIABLES}
    return subprocess.run(
        ["bash", "-c", script], env={**clean, **env}, capture_output=True, text=True, check=False
    )


def _common(env: dict[str, str], *names: str) -> list[str]:
    echo = " ".join(f'"${n}"' for n in names)
    run = _bash(f'source "{COMMON}"; printf "%s\\n" {echo}', env)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_one_broker_keeps_its_ports_layout_and_replication() -> None:
    bootstrap, controller, rf, data = _common(
        {"REFEX_KAFKA_PORT": "23092", "REFEX_LOCAL_DIR": "/x"},
        "KAFKA_BOOTSTRAP",
        "KAFKA_CONTROLLER_PORT",
        "KAFKA_REPLICATION_FACTOR",
        "KAFKA_DATA",
    )
    assert (bootstrap, controller, rf, data) == ("127.0.0.1:23092", "23093", "1", "/x/kafka/data")


def test_three_brokers_get_consecutive_ports_and_every_client_all_three() -> None:
    bootstrap, controller, rf, data = _common(
        {"REFEX_KAFKA_BROKERS": "3", "REFEX_KAFKA_PORT": "23192", "REFEX_LOCAL_DIR": "/x"},
        "KAFKA_BOOTSTRAP",
        "KAFKA_CONTROLLER_PORT",
        "KAFKA_REPLICATION_FACTOR",
        "KAFKA_DATA",
    )
    assert bootstrap == "127.0.0.1:23192,127.0.0.1:23193,127.0.0.1:23194"
    assert controller == "23195", "the controllers after the client ports"
    assert rf == "3"
    assert data == "/x/kafka/node-1/data", "each node its own data folder"


def test_overlapping_client_and_controller_ports_are_refused() -> None:
    run = _bash(
        f'source "{COMMON}"',
        {
            "REFEX_KAFKA_BROKERS": "3",
            "REFEX_KAFKA_PORT": "23192",
            "REFEX_KAFKA_CONTROLLER_PORT": "23193",
        },
    )
    assert run.returncode != 0 and "overlap" in run.stderr


def test_node_two_of_three_is_configured_for_the_replicated_cluster() -> None:
    """What kafka.sh's write_config gives node 2 (its own ports, data folder, every voter)."""
    script = f"""
        source "{COMMON}"
        source "{BROKER_PROPERTIES}"
        eval "$(sed -n '/^voters()/,/^}}/p; /^write_config()/,/^}}/p' "{KAFKA_SH}")"
        KAFKA_PASSWORD_ADMIN=aaaaaaaaaaaaaaaaaaaa KAFKA_PASSWORD_CONTROLLER=bbbbbbbbbbbbbbbbbbbb
        write_config 2 && cat "$(kafka_node_dir 2)/server.properties"
    """
    with tempfile.TemporaryDirectory() as local:
        run = _bash(
            script,
            {"REFEX_KAFKA_BROKERS": "3", "REFEX_KAFKA_PORT": "23192", "REFEX_LOCAL_DIR": local},
        )
        assert run.returncode == 0, run.stderr
        lines = [ln for ln in run.stdout.splitlines() if ln and not ln.startswith("#")]
        props = dict(line.split("=", 1) for line in lines)
        assert props["node.id"] == "2"
        assert props["controller.quorum.voters"] == (
            "1@127.0.0.1:23195,2@127.0.0.1:23196,3@127.0.0.1:23197"
        )
        assert props["listeners"] == "CLIENT://127.0.0.1:23193,CONTROLLER://127.0.0.1:23196"
        assert props["advertised.listeners"] == "CLIENT://127.0.0.1:23193"
        assert props["log.dirs"] == f"{local}/kafka/node-2/data"
        assert props["default.replication.factor"] == "3"
        assert props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["min.insync.replicas"] == "2"
        assert props["transaction.state.log.min.isr"] == "2"
        # All three on loopback: the controller listener may stay SASL_PLAINTEXT there.
        assert "CONTROLLER:SASL_PLAINTEXT" in props["listener.security.protocol.map"]
        mode = (Path(local) / "kafka" / "node-2" / "server.properties").stat().st_mode
        assert mode & 0o077 == 0, "it holds the admin's and the controller's passwords"


def test_a_node_outside_the_voters_is_refused() -> None:
    run = _bash(
        f'source "{BROKER_PROPERTIES}"; broker_properties CLIENT://127.0.0.1:1 '
        f"CLIENT://127.0.0.1:1 127.0.0.1:2 /d {'a' * 20} {'b' * 20} /k.pem /ca.crt",
        {"REFEX_KAFKA_NODE_ID": "4", "REFEX_KAFKA_QUORUM_VOTERS": "1@h:1,2@h:2,3@h:3"},
    )
    assert run.returncode != 0 and "not among the quorum voters" in run.stderr


def test_topic_creation_reads_the_replication_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(admin.REPLICATION_FACTOR_VARIABLE, raising=False)
    assert admin.replication_factor_from_env() == 1
    assert admin.replication_config(1) == {"min.insync.replicas": "1"}
    monkeypatch.setenv(admin.REPLICATION_FACTOR_VARIABLE, "3")
    assert admin.replication_factor_from_env() == 3
    assert admin.replication_config(3) == {"min.insync.replicas": "2"}
    monkeypatch.setenv(admin.REPLICATION_FACTOR_VARIABLE, "three")
    with pytest.raises(ValueError, match="positive number"):
        admin.replication_factor_from_env()


def test_the_broker_and_the_topic_creation_agree_on_min_insync() -> None:
    for rf in (1, 2, 3, 5):
        run = _bash(f'source "{BROKER_PROPERTIES}"; broker_min_insync {rf}', {})
        assert run.stdout.strip() == str(admin.min_insync_replicas(rf)), rf


def _producer_calls() -> list[tuple[Path, ast.Call]]:
    calls = []
    for folder in ("shared", "services", "ops"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                    if name in ("AIOKafkaProducer", "KafkaBroker"):
                        calls.append((path, node))
    return calls


def test_every_producer_of_the_code_waits_for_all_in_sync_replicas() -> None:
    calls = _producer_calls()
    assert len(calls) >= 5, "the services' broker, dead letters, CLI, replay, gateway"
    for path, call in calls:
        acks = {k.arg: k.value for k in call.keywords}.get("acks")
        assert isinstance(acks, ast.Constant) and acks.value == "all", (
            f"{path.relative_to(ROOT)}:{call.lineno}: acks='all'"
        )


def test_the_cluster_chaos_run_injects_every_cluster_fault_among_the_others() -> None:
    plan = Plan(
        kills=8, leader_bounces=3, broker_stops=1, controller_restarts=1, network_partitions=1
    )
    order = schedule(plan)
    counts = {kind: sum(1 for k, _ in order if k == kind) for kind, _ in order}
    assert counts == {"kill": 8, "freeze": 1, "restart": 3, "bounce": 3, "stop": 1, "partition": 1}
    assert ("restart", "kafka controller") in order and ("partition", "kafka node") in order
    # One broker: no cluster fault unless asked (make chaos, make test stay as they were).
    assert not [t for _, t in schedule(Plan()) if t.startswith("kafka ")]


def test_a_cluster_fault_without_a_cluster_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "BROKERS", 1)
    with pytest.raises(SystemExit, match="REFEX_KAFKA_BROKERS=3"):
        check_cluster_plan(Plan(leader_bounces=1))
    monkeypatch.setattr(cluster, "BROKERS", 3)
    monkeypatch.setattr(cluster, "NETNS", False)
    check_cluster_plan(Plan(leader_bounces=1))
    with pytest.raises(SystemExit, match="REFEX_KAFKA_NETNS=1"):
        check_cluster_plan(Plan(network_partitions=1))


def test_the_cluster_faults_fit_in_the_stream_and_the_others_keep_their_spacing() -> None:
    one = Plan()
    assert fault_gap(one, schedule(one), 100.0) == 100.0 / (len(schedule(one)) + 1)
    three = Plan(
        submissions=3000,
        leader_bounces=3,
        broker_stops=1,
        controller_restarts=1,
        network_partitions=1,
    )
    order = schedule(three)
    gap = fault_gap(three, order, 300.0)
    assert 2.0 <= gap < 300.0 / (len(order) + 1)
    assert gap * (len(order) + 1) + 60 + 30 + 6 * 20 <= 300.0 + 1e-6
