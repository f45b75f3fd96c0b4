"""docker-compose.yml and deploy/Dockerfile checked against the code they deploy.

Docker is not needed: the files are parsed and compared with the settings classes, the topic
catalogue, the readiness path and the Kafka version of the local broker, so a renamed setting or
a drifted image tag fails here rather than in a container.
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

import ops.cli
import ops.platform
from ops.access_policy import SERVICES, service_rules, service_user
from services.evidence.settings import EvidenceSettings
from services.intake.settings import IntakeSettings
from services.notification.settings import NotificationSettings
from services.referral.settings import ReferralSettings
from shared.contracts.topics import CATALOGUE, TopicSpec
from shared.kafka.admin import TopicResult
from shared.kafka.connection import KafkaConnection
from shared.service import READINESS_PATH

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
POSTGRES_INIT = ROOT / "deploy" / "compose" / "postgres-init.sh"
KAFKA_START = ROOT / "deploy" / "compose" / "kafka-start.sh"
BROKER_PROPERTIES = ROOT / "deploy" / "kafka" / "broker-properties.sh"
GENERATE_ENV = ROOT / "deploy" / "compose" / "generate-env.sh"
KAFKA_POM = ROOT / "deploy" / "local" / "kafka" / "pom.xml"
PYPROJECT = ROOT / "pyproject.toml"

SETTINGS: dict[str, type[BaseSettings]] = {
    "intake": IntakeSettings,
    "referral": ReferralSettings,
    "notification": NotificationSettings,
    "evidence": EvidenceSettings,
}
APP_SERVICES = tuple(SETTINGS)
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# ${VAR}, ${VAR:?message}, ${VAR?message}, ${VAR:-default}, ${VAR-default}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}")
URL_WITH_PASSWORD_VARIABLE = re.compile(
    r"postgresql://[a-z_]+:\$\{[A-Z_]+:\?[^}]*\}@[a-z0-9-]+:\d+/[a-z_]+"
)
VERSION_TAG = re.compile(r"^\d+\.\d+(\.\d+)?(-[a-z0-9][a-z0-9.-]*)?$")


# ----- helpers -----


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def generated_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The .env that deploy/compose/generate-env.sh writes (what an operator should use)."""
    target = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run(["bash", str(GENERATE_ENV), str(target)], check=True, capture_output=True)
    assert target.stat().st_mode & 0o077 == 0, "the generated .env must be private (0600)"
    return read_env_file(target)


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> str:
    """Compose-style variable substitution (enough of it for this file)."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if op in (":?", "?"):
            assert name in env, f"${{{name}}} is required by compose but missing from .env.example"
            return env[name]
        if op in (":-", "-"):
            return env.get(name, arg)
        return env.get(name, "")

    return INTERPOLATION.sub(substitute, str(value))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def image_tag(image: str) -> tuple[str, str | None]:
    name = image.split("@", 1)[0]  # a digest pins too, but the tag is still wanted
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:  # no tag (a colon may belong to a registry host:port)
        return name, None
    return repo, tag


def kafka_version() -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(KAFKA_POM).getroot().find("m:properties/m:kafka.version", ns)
    assert node is not None and node.text, "kafka.version property missing from pom.xml"
    return node.text.strip()


def as_argv(command: Any) -> list[str]:
    if isinstance(command, str):
        return command.split()
    return [str(part) for part in command]


def container_port_mapping(service: dict[str, Any]) -> dict[int, int]:
    """host port -> container port of the short `[ip:]host:container` syntax."""
    mapping = {}
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        assert len(parts) in (2, 3), f"port {entry!r} must name a host and a container port"
        mapping[int(parts[-2])] = int(parts[-1].split("/")[0])
    return mapping


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


# ----- images -----


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        assert "image" in service, f"{name}: name the image (built ones too, so all share it)"
        _, tag = image_tag(service["image"])
        assert tag is not None and tag != "latest", f"{name}: image {service['image']} unpinned"
        if "build" not in service:
            assert VERSION_TAG.fullmatch(tag), f"{name}: {service['image']} needs a version tag"


def test_kafka_image_matches_the_local_broker_version(compose: dict[str, Any]) -> None:
    repo, tag = image_tag(services(compose)["kafka"]["image"])
    assert repo == "apache/kafka"
    assert tag == kafka_version()


def test_postgres_image_is_a_pinned_15_minor(compose: dict[str, Any]) -> None:
    repo, tag = image_tag(services(compose)["postgres"]["image"])
    assert repo == "postgres"
    assert tag is not None and re.fullmatch(r"15\.\d+-bookworm", tag), tag


def test_project_services_share_one_image_built_from_the_dockerfile(
    compose: dict[str, Any],
) -> None:
    images = set()
    for name in (*APP_SERVICES, "platform-init"):
        service = services(compose)[name]
        build = service.get("build")
        assert isinstance(build, dict), f"{name}: build must name context and dockerfile"
        assert (ROOT / build["context"]).resolve() == ROOT
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        images.add(service["image"])
    assert len(images) == 1, images


# ----- service environment against the settings classes -----


@pytest.mark.parametrize("name", APP_SERVICES)
def test_environment_names_are_settings_fields(compose: dict[str, Any], name: str) -> None:
    settings_cls = SETTINGS[name]
    prefix = settings_cls.model_config.get("env_prefix")
    assert prefix == f"{name.upper()}_"
    env = environment(services(compose)[name])
    assert env, f"{name}: no environment"
    fields = settings_cls.model_fields
    for key in env:
        assert key.startswith(prefix), f"{name}: {key} lacks the {prefix} prefix"
        field = key[len(prefix) :].lower()
        assert field in fields, f"{name}: {key} is no {settings_cls.__name__} field"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_required_setting_is_provided(compose: dict[str, Any], name: str) -> None:
    settings_cls = SETTINGS[name]
    prefix = str(settings_cls.model_config.get("env_prefix"))
    provided = {key[len(prefix) :].lower() for key in environment(services(compose)[name])}
    required = {field for field, info in settings_cls.model_fields.items() if info.is_required()}
    assert required, "expected at least database_url to be required"
    assert required <= provided, f"{name}: missing {sorted(required - provided)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_environment_loads_into_the_settings_class(
    compose: dict[str, Any],
    name: str,
    generated_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The container's environment, with a generated .env, gives settings that fit compose:
    production mode, own database and role, own Kafka principal, the compose broker, and the
    port that is published and probed."""
    settings_cls = SETTINGS[name]
    service_env(compose, name, generated_env, monkeypatch)
    settings: Any = settings_cls()
    assert settings.environment == "production"
    assert settings.kafka == KafkaConnection(
        "kafka:9092", name, generated_env[f"{name.upper()}_KAFKA_PASSWORD"]
    )

    dsn = urlsplit(settings.database_dsn)
    assert dsn.scheme == "postgresql"
    assert dsn.username == name and dsn.path == f"/{name}", settings.database_dsn
    assert dsn.hostname in services(compose), f"{name}: database host is no compose service"
    assert dsn.port == 5432
    assert dsn.password == generated_env[f"{name.upper()}_DB_PASSWORD"]
    assert settings.kafka_bootstrap_servers == advertised_broker()
    service = services(compose)[name]

    assert settings.http_host == "0.0.0.0"
    ports = container_port_mapping(service)
    assert list(ports.values()) == [settings.http_port], f"{name}: publish the HTTP port"
    # The host port is the one the service uses when run locally (its settings default).
    assert list(ports) == [settings_cls.model_fields["http_port"].default]


def service_env(
    compose: dict[str, Any], name: str, values: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set the service's container environment (interpolated with ``values``) and nothing else
    of its prefix."""
    prefix = str(SETTINGS[name].model_config.get("env_prefix"))
    for key in list(os.environ):
        if key.upper().startswith(prefix):
            monkeypatch.delenv(key)
    for key, value in environment(services(compose)[name]).items():
        monkeypatch.setenv(key, interpolate(value, values))


@pytest.mark.parametrize("name", APP_SERVICES)
def test_placeholder_secrets_of_env_example_are_refused(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copying .env.example without replacing its values cannot start a service."""
    service_env(compose, name, env_example(), monkeypatch)
    with pytest.raises(ValueError, match="production mode refuses to start") as refused:
        SETTINGS[name]()
    assert "kafka_password is a placeholder" in str(refused.value)
    for value in env_example().values():
        assert value not in str(refused.value), "the refusal must not echo a secret"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_command_runs_its_own_module(compose: dict[str, Any], name: str) -> None:
    argv = as_argv(services(compose)[name]["command"])
    assert argv == ["python", "-m", f"services.{name}"]
    assert (ROOT / "services" / name / "__main__.py").is_file()


# ----- secrets -----


def test_no_secret_is_committed(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            secret_bearing = "PASSWORD" in key or key.endswith("DATABASE_URL")
            if not secret_bearing:
                continue
            refs = INTERPOLATION.findall(value)
            assert refs, f"{name}: {key} must take its secret from the environment"
            for var, op, _ in refs:
                assert op == ":?", f"{name}: {key} must refuse to start without ${var} (:?)"
            if "PASSWORD" in key:
                assert INTERPOLATION.fullmatch(value), f"{name}: {key} holds a literal"
            else:  # the password part of the URL is exactly one variable
                assert URL_WITH_PASSWORD_VARIABLE.fullmatch(value), f"{name}: {key} = {value}"


def test_env_example_covers_every_variable(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    referenced = {var for var, _, _ in INTERPOLATION.findall(text)}
    assert referenced, "compose reads its passwords from the environment"
    assert referenced <= set(env_example()), sorted(referenced - set(env_example()))


# ----- topics -----


def test_platform_init_provisions_topics_and_service_principals(
    compose: dict[str, Any], generated_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """platform-init runs `refex platform provision` as the admin principal: the catalogue's
    topics, and each service's principal with the password the service itself is given."""
    service = services(compose)["platform-init"]
    argv = as_argv(service["command"])
    assert argv[:3] == ["refex", "platform", "provision"]
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert scripts["refex"] == "ops.cli:app"

    topic_calls: list[tuple[KafkaConnection, tuple[TopicSpec, ...]]] = []
    passwords: dict[str, str] = {}
    granted: list[Any] = []

    async def fake_ensure_topics(kafka: KafkaConnection, specs: Any, **_: Any) -> list[Any]:
        topic_calls.append((kafka, tuple(specs)))
        return [TopicResult(spec.name, created=True) for spec in specs]

    class FakeAccess:
        def __init__(self, kafka: KafkaConnection) -> None:
            assert kafka.username == "admin"

        def set_password(self, user: str, password: str) -> None:
            passwords[user] = password

        def grant(self, rules: Any) -> int:
            granted.extend(rules)
            return len(granted)

    audits: list[tuple[str, str]] = []

    @contextmanager
    def fake_audited(kafka: KafkaConnection, command: str, kind: str, *_: Any) -> Iterator[None]:
        audits.append((command, kind))
        yield

    awaited_groups: list[str] = []

    async def fake_wait_for_group_coordinators(kafka: KafkaConnection, groups: Any) -> None:
        awaited_groups.extend(groups)

    monkeypatch.setattr(ops.platform, "ensure_topics", fake_ensure_topics)
    monkeypatch.setattr(
        ops.platform, "wait_for_group_coordinators", fake_wait_for_group_coordinators
    )
    monkeypatch.setattr(ops.platform.kafka_access, "KafkaAccess", FakeAccess)
    monkeypatch.setattr(ops.platform, "audited", fake_audited)
    for key, value in environment(service).items():
        monkeypatch.setenv(key, interpolate(value, generated_env))
    result = CliRunner().invoke(ops.cli.app, argv[1:])
    assert result.exit_code == 0, result.output

    [(kafka, specs)] = topic_calls
    assert specs == CATALOGUE
    assert kafka == KafkaConnection(
        advertised_broker(), "admin", generated_env["KAFKA_ADMIN_PASSWORD"]
    )
    for owner in SERVICES:
        name = owner.value
        given = environment(services(compose)[name])[f"{name.upper()}_KAFKA_PASSWORD"]
        assert passwords[service_user(owner)] == interpolate(given, generated_env)
        assert set(service_rules(owner)) <= set(granted)
    assert audits == [("platform grant-services", "service_principals")]
    # ...and it returns once the services' consumer groups have a coordinator.
    assert awaited_groups == [owner.value for owner in SERVICES]


def advertised_broker() -> str:
    """host:port the compose broker advertises (from the arguments kafka-start.sh gives)."""
    match = re.search(r'broker_properties "[^"]+" "CLIENT://([^"]+)"', KAFKA_START.read_text())
    assert match, "kafka-start.sh must call broker_properties with the advertised listener"
    return match.group(1)


def broker_properties(*args: str) -> dict[str, str]:
    script = f'source "{BROKER_PROPERTIES}"; broker_properties "$@"'
    out = subprocess.run(
        ["bash", "-c", script, "props", *args], check=True, capture_output=True, text=True
    ).stdout
    lines = [line for line in out.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_compose_kafka_runs_the_shared_broker_configuration(compose: dict[str, Any]) -> None:
    kafka = services(compose)["kafka"]
    assert kafka["entrypoint"] == ["bash", "/opt/refex/kafka-start.sh"]
    mounts = {str(v).split(":")[1]: ROOT / str(v).split(":")[0] for v in kafka["volumes"]}
    assert mounts["/opt/refex/kafka-start.sh"].resolve() == KAFKA_START
    assert mounts["/opt/refex/broker-properties.sh"].resolve() == BROKER_PROPERTIES
    env = environment(kafka)
    for var in ("KAFKA_ADMIN_PASSWORD", "KAFKA_CONTROLLER_PASSWORD"):
        assert env[var] == f"${{{var}:?set it in .env}}"


def test_broker_requires_authentication_and_acls() -> None:
    props = broker_properties(
        "CLIENT://0.0.0.0:9092",
        "CLIENT://kafka:9092",
        "127.0.0.1:9093",
        "/data",
        "a" * 20,
        "b" * 20,
    )
    assert set(props["process.roles"].split(",")) == {"broker", "controller"}
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, "no listener without authentication"
    for listener in props["listeners"].split(","):
        assert listener.split("://")[0] in protocols, listener
    assert props["advertised.listeners"] == "CLIENT://kafka:9092"
    assert "CONTROLLER" not in props["advertised.listeners"]
    assert props["listeners"].endswith("CONTROLLER://127.0.0.1:9093"), "controller on loopback"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:controller"
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"


@pytest.mark.parametrize(
    "password", ["short", "has,comma-and-enough-chars", 'quote"d-enough-chars']
)
def test_broker_refuses_passwords_jaas_would_mangle(password: str) -> None:
    script = f'source "{BROKER_PROPERTIES}"; broker_check_password P "$1"'
    run = subprocess.run(["bash", "-c", script, "check", password], capture_output=True, text=True)
    assert run.returncode != 0
    assert "P must be at least 16 characters" in run.stderr


# ----- health and start order -----


@pytest.mark.parametrize("name", APP_SERVICES)
def test_healthcheck_probes_readiness(compose: dict[str, Any], name: str) -> None:
    service = services(compose)[name]
    test = service["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", "exec form: no shell tools needed"
    assert test[1:3] == ["python", "-c"]
    code = test[3]
    compile(code, f"<{name} healthcheck>", "exec")
    port = int(environment(service)[f"{name.upper()}_HTTP_PORT"])
    assert f"http://127.0.0.1:{port}{READINESS_PATH}" in code
    assert "urllib" in code


def test_infrastructure_healthchecks(compose: dict[str, Any]) -> None:
    kafka = " ".join(as_argv(services(compose)["kafka"]["healthcheck"]["test"]))
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:9092" in kafka
    assert "--command-config /tmp/refex/admin.properties" in kafka, "the probe must log in"
    assert "broker_admin_client_properties" in KAFKA_START.read_text()
    postgres = as_argv(services(compose)["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in postgres


def test_depends_on_uses_conditions(compose: dict[str, Any]) -> None:
    all_services = services(compose)
    for name, service in all_services.items():
        depends_on = service.get("depends_on")
        if depends_on is None:
            continue
        assert isinstance(depends_on, dict), f"{name}: depends_on must give conditions"
        for target, spec in depends_on.items():
            assert target in all_services, f"{name}: depends on unknown {target}"
            assert isinstance(spec, dict) and spec.get("condition") in CONDITIONS, (name, target)
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in all_services[target], f"{target} has no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert all_services[target].get("restart", "no") == "no", target

    assert all_services["platform-init"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"}
    }
    for name in APP_SERVICES:
        assert all_services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "kafka": {"condition": "service_healthy"},
            "platform-init": {"condition": "service_completed_successfully"},
        }
        assert all_services[name]["restart"] == "unless-stopped"


def test_stateful_services_use_named_volumes(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name in ("kafka", "postgres"):
        sources = {str(v).split(":")[0] for v in services(compose)[name]["volumes"]}
        assert sources & named, f"{name}: keep its data in a named volume"


# ----- postgres provisioning -----


def test_postgres_init_script_provisions_each_service(compose: dict[str, Any]) -> None:
    postgres = services(compose)["postgres"]
    mounts = [str(v) for v in postgres["volumes"]]
    init_mounts = [m for m in mounts if ":/docker-entrypoint-initdb.d/" in m]
    assert len(init_mounts) == 1, mounts
    source = init_mounts[0].split(":")[0]
    assert (ROOT / source).resolve() == POSTGRES_INIT

    script = POSTGRES_INIT.read_text()
    assert "REVOKE CONNECT" in script
    assert "GRANT CONNECT" in script
    postgres_env = environment(postgres)
    for name in APP_SERVICES:
        assert name in script, f"init script does not provision {name}"
        var = f"{name.upper()}_DB_PASSWORD"
        assert var in postgres_env, f"postgres needs {var} for its init script"
        service_url = environment(services(compose)[name])[f"{name.upper()}_DATABASE_URL"]
        assert f"${{{var}:?" in service_url, f"{name} must log in with {var}"


# ----- Dockerfile -----


def test_dockerfile_base_image_is_pinned_to_the_project_python() -> None:
    bases = [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert bases, "Dockerfile has no FROM"
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    minimum = re.search(r">=\s*(\d+\.\d+)", requires)
    assert minimum is not None
    for base in bases:
        repo, tag = image_tag(base)
        assert tag is not None and tag != "latest", base
        assert repo == "python", base
        assert re.fullmatch(rf"{re.escape(minimum.group(1))}\.\d+-slim-bookworm", tag), base


def test_dockerfile_runs_as_non_root_without_dev_deps() -> None:
    instructions = dockerfile_instructions()
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users, "Dockerfile must switch to an unprivileged USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert installs and all("[dev]" not in run for run in installs)
    assert any("--no-cache-dir" in run for run in installs)
    assert [keyword for keyword, _ in instructions].count("CMD") == 1


def test_dockerignore_keeps_local_state_out() -> None:
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for entry in (".venv", ".local", ".git", ".env", "**/__pycache__", ".pytest_cache"):
        assert entry in entries, entry


# ----- the gateway: no database, no Kafka credential of its own -----


def test_the_gateway_runs_in_production_with_its_own_key_and_no_credential(
    compose: dict[str, Any], generated_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.gateway.settings import GatewaySettings

    service = services(compose)["gateway"]
    assert as_argv(service["command"]) == ["python", "-m", "services.gateway"]
    names = set(environment(service))
    assert names <= {f"GATEWAY_{n.upper()}" for n in GatewaySettings.model_fields}
    assert not any("PASSWORD" in n or "DATABASE" in n for n in names), names
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    for key, value in environment(service).items():
        monkeypatch.setenv(key, interpolate(value, generated_env))
    settings = GatewaySettings()
    assert settings.environment == "production" and settings.secure_cookies
    assert settings.kafka_bootstrap_servers == advertised_broker()
    ports = container_port_mapping(service)
    assert list(ports.values()) == [settings.http_port]
    assert list(ports) == [GatewaySettings.model_fields["http_port"].default]

    for key, value in environment(service).items():
        monkeypatch.setenv(key, interpolate(value, env_example()))
    with pytest.raises(ValueError, match="production mode refuses to start") as refused:
        GatewaySettings()
    assert "change-me" not in str(refused.value)
