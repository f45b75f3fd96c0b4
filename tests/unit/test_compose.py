"""docker-compose.yml and deploy/Dockerfile checked against the code they deploy.

Docker is not needed: the files are parsed and compared with the settings classes, the topic
catalogue, the readiness path, the operator commands and the Kafka version of the local broker,
so a renamed setting or a drifted image tag fails here rather than in a container. The tests
under "a real host" (issue 21) each name the defect they guard against.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

import ops.cli
import ops.platform
import shared.operator
import shared.secret_files
from ops.access_policy import SERVICES, agency_rules, service_rules, service_user
from services.evidence.settings import EvidenceSettings
from services.intake.settings import IntakeSettings
from services.notification.settings import NotificationSettings
from services.referral.settings import ReferralSettings
from shared.contracts.topics import AGENCY_SUBMISSIONS, CATALOGUE, TopicSpec
from shared.kafka.admin import TopicResult
from shared.kafka.connection import KafkaConnection
from shared.service import READINESS_PATH

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# The production profile of the broker: three nodes laid over COMPOSE_FILE (decision 34).
CLUSTER_FILE = ROOT / "docker-compose.cluster.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
POSTGRES_INIT = ROOT / "deploy" / "compose" / "postgres-init.sh"
KAFKA_START = ROOT / "deploy" / "compose" / "kafka-start.sh"
BROKER_PROPERTIES = ROOT / "deploy" / "kafka" / "broker-properties.sh"
GENERATE_ENV = ROOT / "deploy" / "compose" / "generate-env.sh"
CONSTRAINTS = ROOT / "constraints.txt"
GITIGNORE = ROOT / ".gitignore"
README = ROOT / "README.md"
INTEGRATORS = ROOT / "docs" / "integrators.md"
KAFKA_POM = ROOT / "deploy" / "local" / "kafka" / "pom.xml"
PYPROJECT = ROOT / "pyproject.toml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"

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
# (Prometheus' images are tagged with a leading v: prom/prometheus:v2.42.0.)
VERSION_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?(-[a-z0-9][a-z0-9.-]*)?$")
# What the host operator is asked for (generate-env.sh takes them from its environment).
HOST_SETTINGS = {
    "REFEX_PUBLIC_KAFKA_HOST": "kafka.example.org",
    "NOTIFICATION_SMTP_HOST": "smtp.example.org",
}
SECRETS_TARGET_DIR = "/run/secrets"
MONITORING = ("prometheus", "grafana")
LONG_RUNNING = ("kafka", "postgres", *APP_SERVICES, "gateway", *MONITORING)
# Where compose mounts the private CA's certificate (config tls_ca) in every client container.
CA_IN_CONTAINERS = "/etc/refex/tls/ca.crt"
CERTIFICATES = ROOT / "deploy" / "compose" / "certificates.sh"
POSTGRES_START = ROOT / "deploy" / "compose" / "postgres-start.sh"
PG_HBA = ROOT / "deploy" / "compose" / "pg_hba.conf"
# Test values for broker_properties' TLS files.
KEYSTORE, CA_FILE = "/run/secrets/kafka_tls_keystore", CA_IN_CONTAINERS


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


@dataclass(frozen=True)
class Generated:
    """What deploy/compose/generate-env.sh writes: .env (settings) and secrets/ (one file each)."""

    env: dict[str, str]
    secrets: Path

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text()

    def file_of(self, compose_file: str) -> Path:
        """The generated file a compose `file: ./secrets/…` entry names."""
        return self.secrets / (ROOT / compose_file).relative_to(ROOT / "secrets")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """What an operator should use, given the host's public Kafka name and mail relay."""
    target = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run(
        ["bash", str(GENERATE_ENV), str(target)],
        check=True,
        capture_output=True,
        env={**os.environ, **HOST_SETTINGS},
    )
    assert target.stat().st_mode & 0o077 == 0, "the generated .env must be private (0600)"
    secrets = target.parent / "secrets"
    assert secrets.stat().st_mode & 0o077 == 0, "the secrets directory must be private (0700)"
    return Generated(read_env_file(target), secrets)


@pytest.fixture(scope="module")
def generated_env(generated: Generated) -> dict[str, str]:
    return generated.env


def secret_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target file name under /run/secrets -> top-level secret, of a service's `secrets:`."""
    mounts = {}
    for entry in service.get("secrets") or []:
        if isinstance(entry, str):
            mounts[entry] = entry
        else:
            target = str(entry.get("target", entry["source"]))
            assert "/" not in target, f"secret {entry}: keep it under {SECRETS_TARGET_DIR}"
            mounts[target] = entry["source"]
    return mounts


def mounted_secrets(compose: dict[str, Any], name: str, generated: Generated, into: Path) -> Path:
    """The /run/secrets the service `name` sees, built in ``into`` from the generated files."""
    into.mkdir(parents=True, exist_ok=True)
    top = compose["secrets"]
    for target, source in secret_mounts(services(compose)[name]).items():
        (into / target).write_text(generated.file_of(top[source]["file"]).read_text())
    return into


def config_mounts(service: dict[str, Any]) -> dict[str, str]:
    """absolute target path -> top-level config, of a service's `configs:`."""
    mounts = {}
    for entry in service.get("configs") or []:
        assert isinstance(entry, dict) and str(entry.get("target", "")).startswith("/"), entry
        mounts[str(entry["target"])] = str(entry["source"])
    return mounts


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
            assert name in env, f"${{{name}}} is required by compose but missing from .env"
            # `:?` refuses an empty value as well: compose would not start.
            assert env[name] or op == "?", f"compose refuses to start: ${{{name}}} is empty"
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
    # A secret file is read as /run/secrets/<prefix><field> (pydantic-settings' secrets_dir).
    for target in secret_mounts(services(compose)[name]):
        assert target.startswith(prefix.lower()), f"{name}: secret {target} lacks {prefix}"
        field = target[len(prefix) :]
        assert field in fields, f"{name}: secret {target} is no {settings_cls.__name__} field"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_required_setting_is_provided(compose: dict[str, Any], name: str) -> None:
    settings_cls = SETTINGS[name]
    prefix = str(settings_cls.model_config.get("env_prefix"))
    service = services(compose)[name]
    provided = {key[len(prefix) :].lower() for key in environment(service)}
    provided |= {target[len(prefix) :] for target in secret_mounts(service)}
    required = {field for field, info in settings_cls.model_fields.items() if info.is_required()}
    assert required, "expected at least database_url to be required"
    assert required <= provided, f"{name}: missing {sorted(required - provided)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_environment_loads_into_the_settings_class(
    compose: dict[str, Any],
    name: str,
    generated: Generated,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The container's environment and secret files, as generate-env.sh writes them, give
    settings that fit compose: production mode, own database and role, own Kafka principal, the
    compose broker, and the port that is published and probed."""
    settings_cls = SETTINGS[name]
    service_env(compose, name, generated.env, monkeypatch)
    secrets = mounted_secrets(compose, name, generated, tmp_path / "run-secrets")
    settings: Any = settings_cls(_secrets_dir=secrets)  # type: ignore[call-arg]
    assert settings.environment == "production"
    assert settings.kafka == KafkaConnection(
        "kafka:9092", name, generated.secret(f"{name}_kafka_password"), CA_IN_CONTAINERS
    )
    assert config_mounts(services(compose)[name]) == {CA_IN_CONTAINERS: "tls_ca"}

    dsn = urlsplit(settings.database_dsn)
    assert dsn.scheme == "postgresql"
    assert dsn.username == name and dsn.path == f"/{name}", settings.database_dsn
    assert dsn.hostname in services(compose), f"{name}: database host is no compose service"
    assert dsn.port == 5432
    assert dsn.password == generated.secret(f"{name}_db_password"), "postgres-init's password"
    assert parse_qs(dsn.query) == {"sslmode": ["verify-full"], "sslrootcert": [CA_IN_CONTAINERS]}
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


def test_env_example_copied_unchanged_cannot_start_compose(compose: dict[str, Any]) -> None:
    """Its required host settings are empty: compose refuses (`${VAR:?…}`) until they are set."""
    with pytest.raises(AssertionError, match="compose refuses to start"):
        for service in services(compose).values():
            for value in environment(service).values():
                interpolate(value, env_example())


@pytest.mark.parametrize("name", APP_SERVICES)
def test_a_service_without_its_secret_files_cannot_start(
    compose: dict[str, Any],
    name: str,
    generated: Generated,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Production mode refuses a service whose secrets are not mounted (none is in its
    environment any more), and the refusal names no value."""
    service_env(compose, name, generated.env, monkeypatch)
    with pytest.raises(ValueError) as refused:
        SETTINGS[name](_secrets_dir=tmp_path)  # type: ignore[call-arg]
    assert "database_url" in str(refused.value)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_service_command_runs_its_own_module(compose: dict[str, Any], name: str) -> None:
    argv = as_argv(services(compose)[name]["command"])
    assert argv == ["python", "-m", f"services.{name}"]
    assert (ROOT / "services" / name / "__main__.py").is_file()


# ----- secrets -----


SECRET_NAME = re.compile(r"PASSWORD|_KEY$|DATABASE_URL|SECRET")


def test_no_secret_is_committed_or_passed_in_the_environment(
    compose: dict[str, Any], generated: Generated
) -> None:
    """Defect: passwords and keys were environment variables (visible to `docker inspect`, to
    every child process, to a crash report). Each is now a file of secrets/, written by
    generate-env.sh, git- and docker-ignored, mounted under /run/secrets."""
    for name, service in services(compose).items():
        for key, value in environment(service).items():
            if key.endswith("_FILE") and SECRET_NAME.search(key.removesuffix("_FILE")):
                assert value.startswith(f"{SECRETS_TARGET_DIR}/"), f"{name}: {key}={value}"
                assert value.rsplit("/", 1)[1] in secret_mounts(service), f"{name}: {key}"
                continue
            assert not SECRET_NAME.search(key), f"{name}: {key} is a secret in the environment"
    top = compose["secrets"]
    assert top, "compose declares its secrets"
    for secret, spec in top.items():
        assert set(spec) == {"file"}, f"secret {secret}: a file of secrets/"
        path = (ROOT / spec["file"]).resolve()
        assert path.parent in (ROOT / "secrets", ROOT / "secrets" / "tls"), spec["file"]
        assert generated.file_of(spec["file"]).is_file(), f"generate-env.sh does not write {secret}"
    assert "/secrets/" in GITIGNORE.read_text().splitlines()
    assert "secrets" in DOCKERIGNORE.read_text().splitlines()
    used = {src for svc in services(compose).values() for src in secret_mounts(svc).values()}
    assert used == set(top), f"declared but unused: {sorted(set(top) - used)}"
    for key in set(generated.env) | set(env_example()):
        assert not SECRET_NAME.search(key), f".env holds {key}: secrets belong in secrets/"


def test_generated_secrets_are_random_and_strong(generated: Generated) -> None:
    from shared.secret_policy import weakness

    # secrets/tls/ (certificates and their keys) has a test of its own.
    values = {p.name: p.read_text() for p in generated.secrets.iterdir() if p.is_file()}
    for name, value in values.items():
        if name in ("notification_smtp_password", "intake_submission_previous_keys"):
            assert value == "", "left for the relay's own password, for a rotation's old keys"
        elif name.endswith("_database_url"):
            assert weakness(urlsplit(value).password) is None, name
        else:
            assert weakness(value, is_key=name.endswith("_key")) is None, name
        assert values[name].strip() == values[name], f"{name}: no stray newline"


def test_env_example_covers_every_variable(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    referenced = {var for var, _, _ in INTERPOLATION.findall(text)}
    assert referenced, "compose reads its passwords from the environment"
    assert referenced <= set(env_example()), sorted(referenced - set(env_example()))


# ----- topics -----


def test_platform_init_provisions_topics_and_service_principals(
    compose: dict[str, Any],
    generated: Generated,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
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

        def scram_users(self) -> list[str]:  # a registered agency's rules are granted again
            return ["admin", "agency.iom-sn"]

    audits: list[tuple[str, str]] = []

    @contextmanager
    def fake_audited(kafka: KafkaConnection, command: str, kind: str, *_: Any) -> Iterator[None]:
        audits.append((command, kind))
        yield

    awaited_groups: list[str] = []

    async def fake_wait_for_group_coordinators(kafka: KafkaConnection, groups: Any) -> None:
        awaited_groups.extend(groups)

    monkeypatch.setattr(ops.platform, "ensure_topics", fake_ensure_topics)

    async def fake_visible_topics(kafka: KafkaConnection) -> set[str]:
        return {t.name for t in CATALOGUE} | {"agency.iom-sn.submissions.v1"}

    monkeypatch.setattr(ops.platform, "visible_topics", fake_visible_topics)
    monkeypatch.setattr(
        ops.platform, "wait_for_group_coordinators", fake_wait_for_group_coordinators
    )
    monkeypatch.setattr(ops.platform.kafka_access, "KafkaAccess", FakeAccess)
    monkeypatch.setattr(ops.platform, "audited", fake_audited)
    for key in [k for k in os.environ if k.endswith("_KAFKA_PASSWORD")]:
        monkeypatch.delenv(key)
    for key, value in environment(service).items():
        monkeypatch.setenv(key, interpolate(value, generated.env))
    secrets = mounted_secrets(compose, "platform-init", generated, tmp_path / "run-secrets")
    monkeypatch.setattr(shared.secret_files, "SECRETS_DIR", secrets)
    result = CliRunner().invoke(ops.cli.app, argv[1:])
    assert result.exit_code == 0, result.output

    [(kafka, specs)] = topic_calls
    # the catalogue, and the registered agencies' topics brought back to it
    assert specs == (*CATALOGUE, AGENCY_SUBMISSIONS.spec("iom-sn"))
    assert kafka == KafkaConnection(
        advertised_broker(), "admin", generated.secret("kafka_admin_password"), CA_IN_CONTAINERS
    )
    for owner in SERVICES:
        name = owner.value
        # The very file the service itself is given.
        [source] = [s for t, s in secret_mounts(services(compose)[name]).items() if "kafka" in t]
        assert source in secret_mounts(service).values()
        assert passwords[service_user(owner)] == generated.secret(source)
        assert set(service_rules(owner)) <= set(granted)
    assert set(agency_rules("iom-sn")) <= set(granted)
    assert audits == [("platform grant-services", "service_principals")]
    # ...and it returns once the services' consumer groups have a coordinator.
    assert awaited_groups == [owner.value for owner in SERVICES]


def advertised_broker() -> str:
    """host:port the compose broker advertises (from the arguments kafka-start.sh gives)."""
    return advertised_broker_of("")


def advertised_broker_of(host_name: str) -> str:
    """The same for a node told its host name (REFEX_KAFKA_HOST_NAME; "": the default)."""
    start = KAFKA_START.read_text()
    match = re.search(r'broker_properties "[^"]+" "CLIENT://([^"]+)"', start)
    assert match, "kafka-start.sh must call broker_properties with the advertised listener"
    default = re.search(r'HOST_NAME="\$\{REFEX_KAFKA_HOST_NAME:-([a-z0-9-]+)\}"', start)
    assert default, "kafka-start.sh names its host kafka unless told otherwise"
    return match.group(1).replace("$HOST_NAME", host_name or default.group(1))


def broker_properties(*args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    script = f'source "{BROKER_PROPERTIES}"; broker_properties "$@"'
    cluster = ("REFEX_KAFKA_NODE_ID", "REFEX_KAFKA_QUORUM_VOTERS", "REFEX_KAFKA_REPLICATION_FACTOR")
    # Only what the test gives: not a cluster setting of the shell the tests run in.
    base = {k: v for k, v in os.environ.items() if k not in cluster}
    out = subprocess.run(
        ["bash", "-c", script, "props", *args],
        check=True,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
    ).stdout
    lines = [line for line in out.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_compose_kafka_runs_the_shared_broker_configuration(compose: dict[str, Any]) -> None:
    kafka = services(compose)["kafka"]
    assert kafka["entrypoint"] == ["bash", "/opt/refex/kafka-start.sh"]
    mounts = {str(v).split(":")[1]: ROOT / str(v).split(":")[0] for v in kafka["volumes"]}
    assert mounts["/opt/refex/kafka-start.sh"].resolve() == KAFKA_START
    assert mounts["/opt/refex/broker-properties.sh"].resolve() == BROKER_PROPERTIES
    assert set(secret_mounts(kafka)) == {
        "kafka_admin_password",
        "kafka_controller_password",
        "kafka_tls_keystore",
    }
    assert config_mounts(kafka) == {CA_IN_CONTAINERS: "tls_ca"}
    start = KAFKA_START.read_text()
    for name in ("kafka_admin_password", "kafka_controller_password", "kafka_tls_keystore"):
        assert f"read_secret {name}" in start


def test_broker_requires_authentication_and_acls() -> None:
    props = broker_properties(
        "CLIENT://0.0.0.0:9092",
        "CLIENT://kafka:9092",
        "127.0.0.1:9093",
        "/data",
        "a" * 20,
        "b" * 20,
        KEYSTORE,
        CA_FILE,
    )
    assert set(props["process.roles"].split(",")) == {"broker", "controller"}
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    assert protocols == {"CLIENT": "SASL_SSL", "CONTROLLER": "SASL_PLAINTEXT"}, "TLS for clients"
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
    for name in ("kafka", "postgres", *MONITORING):
        sources = {str(v).split(":")[0] for v in services(compose)[name]["volumes"]}
        assert sources & named, f"{name}: keep its data in a named volume"


# ----- postgres provisioning -----


def test_postgres_init_script_provisions_each_service(
    compose: dict[str, Any], generated: Generated, tmp_path: Path
) -> None:
    postgres = services(compose)["postgres"]
    mounts = [str(v) for v in postgres["volumes"]]
    init_mounts = [m for m in mounts if ":/docker-entrypoint-initdb.d/" in m]
    assert len(init_mounts) == 1, mounts
    source = init_mounts[0].split(":")[0]
    assert (ROOT / source).resolve() == POSTGRES_INIT

    script = POSTGRES_INIT.read_text()
    assert "REVOKE CONNECT" in script
    assert "GRANT CONNECT" in script
    # Run it with a psql that records its arguments: each role gets the password of its file.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    psql = bin_dir / "psql"
    psql.write_text('#!/usr/bin/env bash\ncat > /dev/null; printf "%s\\n" "$*" >> "$PSQL_LOG"\n')
    psql.chmod(0o755)
    log = tmp_path / "psql.log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PSQL_LOG": str(log),
        "REFEX_SECRETS_DIR": str(generated.secrets),
    }
    subprocess.run(["bash", str(POSTGRES_INIT)], check=True, env=env, capture_output=True)
    for name in APP_SERVICES:
        expected = f"-v svc={name} -v password={generated.secret(f'{name}_db_password')}"
        assert expected in log.read_text(), name
    # A missing password file stops the init (and so the first start) with its name.
    env["REFEX_SECRETS_DIR"] = str(tmp_path / "empty")
    missing = subprocess.run(["bash", str(POSTGRES_INIT)], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "intake_db_password is missing" in missing.stderr
    postgres_secrets = secret_mounts(postgres)
    assert environment(postgres)["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    for name in APP_SERVICES:
        assert name in script, f"init script does not provision {name}"
        assert f"{name}_db_password" in postgres_secrets, f"postgres needs {name}'s password"
        assert f"{name}_database_url" in secret_mounts(services(compose)[name])
        # The service logs in with the password the init script gave its role.
        url = urlsplit(generated.secret(f"{name}_database_url"))
        assert url.password == generated.secret(f"{name}_db_password"), name


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
    compose: dict[str, Any],
    generated: Generated,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
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
    assert set(secret_mounts(service)) == {"gateway_session_key"}, "its key and nothing else"
    for key, value in environment(service).items():
        monkeypatch.setenv(key, interpolate(value, generated.env))
    secrets = mounted_secrets(compose, "gateway", generated, tmp_path / "run-secrets")
    settings = GatewaySettings(_secrets_dir=secrets)  # type: ignore[call-arg]
    assert settings.session_key.get_secret_value() == generated.secret("gateway_session_key")
    assert settings.environment == "production" and settings.secure_cookies
    assert settings.kafka_bootstrap_servers == advertised_broker()
    ports = container_port_mapping(service)
    assert list(ports.values()) == [settings.http_port]
    assert list(ports) == [GatewaySettings.model_fields["http_port"].default]

    # A weak key in the file is refused as it was in the environment.
    (secrets / "gateway_session_key").write_text("change-me-gateway-session-key")
    with pytest.raises(ValueError, match="production mode refuses to start") as refused:
        GatewaySettings(_secrets_dir=secrets)  # type: ignore[call-arg]
    assert "change-me" not in str(refused.value)


# ----- a real host (issue 21): one test per defect -----


def test_agencies_reach_the_broker_on_an_external_listener(
    compose: dict[str, Any], generated: Generated
) -> None:
    """Defect: the broker published no port and advertised only kafka:9092, a name no agency
    outside the compose network can resolve."""
    kafka = services(compose)["kafka"]
    env = environment(kafka)
    host = interpolate(env["REFEX_PUBLIC_KAFKA_HOST"], generated.env)
    port = interpolate(env["REFEX_PUBLIC_KAFKA_PORT"], generated.env)
    assert host == HOST_SETTINGS["REFEX_PUBLIC_KAFKA_HOST"]
    assert "${REFEX_PUBLIC_KAFKA_HOST:?" in env["REFEX_PUBLIC_KAFKA_HOST"], "no default host"
    published = {interpolate(p, generated.env) for p in kafka["ports"]}
    assert published == {f"{port}:9094"}, "the public port, on every interface, to EXTERNAL"
    start = KAFKA_START.read_text()
    assert '"EXTERNAL://0.0.0.0:9094"' in start
    assert '"EXTERNAL://$REFEX_PUBLIC_KAFKA_HOST:$REFEX_PUBLIC_KAFKA_PORT"' in start

    props = broker_properties(
        "CLIENT://0.0.0.0:9092",
        "CLIENT://kafka:9092",
        "127.0.0.1:9093",
        "/data",
        "a" * 20,
        "b" * 20,
        KEYSTORE,
        CA_FILE,
        "EXTERNAL://0.0.0.0:9094",
        f"EXTERNAL://{host}:{port}",
    )
    assert props["advertised.listeners"] == f"CLIENT://kafka:9092,EXTERNAL://{host}:{port}"
    assert props["listeners"].split(",")[:2] == ["CLIENT://0.0.0.0:9092", "EXTERNAL://0.0.0.0:9094"]
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    assert protocols["EXTERNAL"] == protocols["CLIENT"] == "SASL_SSL", "same TLS and login"
    assert props["inter.broker.listener.name"] == "CLIENT"
    assert "listener.name.external.scram-sha-512.sasl.jaas.config" in props
    # The partner guide gives both addresses.
    guide = INTEGRATORS.read_text()
    assert "REFEX_PUBLIC_KAFKA_HOST:REFEX_PUBLIC_KAFKA_PORT" in guide and "`kafka:9092`" in guide


def test_notification_mails_through_the_configured_relay(
    compose: dict[str, Any], generated: Generated, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Defect: e-mail went to 127.0.0.1:25, the notification container itself."""
    env = environment(services(compose)["notification"])
    assert env["NOTIFICATION_SMTP_HOST"].startswith("${NOTIFICATION_SMTP_HOST:?"), "required"
    for var in ("NOTIFICATION_SMTP_HOST", "NOTIFICATION_SMTP_PORT", "NOTIFICATION_SMTP_USERNAME"):
        assert var in env_example() and var in generated.env, var
    service_env(compose, "notification", generated.env, monkeypatch)
    secrets = mounted_secrets(compose, "notification", generated, tmp_path / "run-secrets")
    settings = NotificationSettings(_secrets_dir=secrets)  # type: ignore[call-arg]
    assert settings.smtp_host == HOST_SETTINGS["NOTIFICATION_SMTP_HOST"]
    assert settings.smtp_port == 587 and settings.smtp_start_tls
    # An .env pointing it back at the container is refused at start.
    monkeypatch.setenv("NOTIFICATION_SMTP_HOST", "127.0.0.1")
    with pytest.raises(ValueError, match="production mode refuses smtp_host="):
        NotificationSettings(_secrets_dir=secrets)  # type: ignore[call-arg]


def operator_commands() -> dict[str, list[str]]:
    import typer.main

    root = typer.main.get_command(ops.cli.app)
    groups = root.commands  # type: ignore[attr-defined]
    return {g: sorted(groups[g].commands) for g in groups}


def readme_command_containers() -> dict[str, str]:
    """`group command` -> the container cell of README's table of operator commands."""
    section = README.read_text().split("### Operator commands", 1)[1].split("\n## ", 1)[0]
    known = operator_commands()
    found: dict[str, str] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        group = None
        for chunk in re.findall(r"`([^`]+)`", cells[0]):
            words = chunk.split()
            if words[0] == "refex" and len(words) > 2 and words[1] in known:
                group, words = words[1], words[2:]
            if group and words and words[0] in known[group]:
                found[f"{group} {words[0]}"] = cells[2]
    return found


# The container each operator command runs in, and the secrets that container must hold.
TOOL_SECRETS = {
    "refex": {"refex_kafka_password"},
    "refex-intake": {
        "refex_kafka_password",
        "intake_database_url",
        "intake_master_key",
        "intake_duplicate_key",
        "intake_submission_key",
        "intake_submission_previous_keys",
    },
    "refex-referral": {"refex_kafka_password", "referral_database_url"},
    "refex-notification": {
        "refex_kafka_password",
        "notification_database_url",
        "notification_secrets_key",
    },
    "refex-evidence": {
        "refex_kafka_password",
        "evidence_database_url",
        "evidence_dashboard_session_key",
    },
}


def test_every_operator_command_has_a_tool_container_with_just_its_credentials(
    compose: dict[str, Any], generated: Generated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect: most operator commands could run from no container (platform-init alone had
    the operators' principal, no container had a service's database beside it)."""
    documented = readme_command_containers()
    every = {f"{g} {c}" for g, commands in operator_commands().items() for c in commands}
    assert every - set(documented) == set(), "README's table misses these commands"
    all_services = services(compose)
    for command, cell in documented.items():
        containers = re.findall(r"`([a-z-]+)`", cell)
        if command.startswith("demo ") or command == "platform export-contracts":
            assert cell.startswith("none"), command  # local / developer commands
            continue
        assert containers, f"{command}: which container?"
        assert containers[0] in all_services, f"{command}: no container {containers[0]}"
        group = command.split()[0]
        if containers[0] not in ("refex", "platform-init"):
            assert containers[0] == f"refex-{group}", f"{command} runs beside {group}"

    admin = generated.secret("kafka_admin_password")
    for name, expected in TOOL_SECRETS.items():
        tool = all_services[name]
        assert tool["profiles"] == ["tools"] and tool["restart"] == "no", name
        assert set(secret_mounts(tool)) == expected, f"{name}: exactly its commands' secrets"
        assert secret_mounts(tool)["refex_kafka_password"] == "kafka_admin_password"
        env = {k: interpolate(v, generated.env) for k, v in environment(tool).items()}
        assert env["REFEX_KAFKA_BOOTSTRAP_SERVERS"] == advertised_broker()
        assert env["REFEX_KAFKA_USERNAME"] == "admin"
        secrets = mounted_secrets(compose, name, generated, tmp_path / name)
        monkeypatch.setattr(shared.secret_files, "SECRETS_DIR", secrets)
        monkeypatch.delenv("REFEX_KAFKA_PASSWORD", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert shared.operator.operator_kafka().password == admin, name
        assert shared.operator.operator_kafka().ca_file == CA_IN_CONTAINERS, name
        assert config_mounts(tool) == {CA_IN_CONTAINERS: "tls_ca"}, name
        if name != "refex":  # beside a service: its settings class loads from these files
            service = name.removeprefix("refex-")
            for key in [k for k in os.environ if k.startswith(f"{service.upper()}_")]:
                monkeypatch.delenv(key)
            settings: Any = SETTINGS[service](_secrets_dir=secrets)  # type: ignore[call-arg]
            assert urlsplit(settings.database_dsn).username == service


def test_every_container_rotates_its_logs(compose: dict[str, Any]) -> None:
    """Defect: Docker's default json-file log grows without end until the disk is full."""
    for name, service in services(compose).items():
        logging = service.get("logging")
        assert logging and logging["driver"] == "json-file", f"{name}: no log rotation"
        options = logging["options"]
        assert re.fullmatch(r"\d+[km]", options["max-size"]), f"{name}: {options}"
        # Docker wants strings here; a YAML integer is refused by the engine.
        assert isinstance(options["max-file"], str) and int(options["max-file"]) >= 2, name


def memory_bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kmg])", str(value).lower()).groups()  # type: ignore[union-attr]
    return int(number) * {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


def test_every_container_has_memory_and_cpu_limits(compose: dict[str, Any]) -> None:
    """Defect: memory and CPU were unbounded: one leak or hot loop could take the host."""
    for name, service in services(compose).items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert "memory" in limits and "cpus" in limits, f"{name}: no limits"
        assert 0 < float(limits["cpus"]) <= 4, name
        # Room above the ~100 MB peak a service reaches under load (docs/performance.md).
        assert memory_bytes(limits["memory"]) >= 256 << 20, name
    kafka = services(compose)["kafka"]
    heap = re.search(r"-Xmx(\d+[kmg])", environment(kafka)["KAFKA_HEAP_OPTS"])
    assert heap, "Kafka's heap is fixed"
    kafka_limit = memory_bytes(kafka["deploy"]["resources"]["limits"]["memory"])
    assert kafka_limit >= 2 * memory_bytes(heap.group(1)), "heap plus the JVM's own memory"


def postgres_settings(compose: dict[str, Any]) -> dict[str, str]:
    argv = as_argv(services(compose)["postgres"]["command"])
    assert argv[0] == "postgres"
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_postgres_is_sized_for_the_deployment(compose: dict[str, Any]) -> None:
    """Defect: PostgreSQL ran with the image's defaults (128 MB shared_buffers whatever the
    limit, connections not counted against the pools)."""
    settings = postgres_settings(compose)
    pools = 0
    for name in APP_SERVICES:
        env = environment(services(compose)[name])
        default = SETTINGS[name].model_fields["db_pool_size"].default
        pools += int(env.get(f"{name.upper()}_DB_POOL_SIZE", default))
    # Every pool, as much again for tools and a restarting service, the superuser's reserve.
    assert int(settings["max_connections"]) >= 2 * pools + 3, settings["max_connections"]
    limit = memory_bytes(services(compose)["postgres"]["deploy"]["resources"]["limits"]["memory"])
    shared = memory_bytes(settings["shared_buffers"].lower().removesuffix("b"))
    assert limit // 8 <= shared <= limit // 3, "shared_buffers: about a quarter of the memory"
    cache = memory_bytes(settings["effective_cache_size"].lower().removesuffix("b"))
    assert shared < cache <= limit
    for name in ("work_mem", "maintenance_work_mem", "max_wal_size"):
        assert name in settings, name
    assert memory_bytes(services(compose)["postgres"]["shm_size"]) >= shared


def test_kafka_and_postgres_have_time_to_shut_down_cleanly(compose: dict[str, Any]) -> None:
    """Defect: Docker's 10 s default killed them mid-shutdown: log recovery or WAL replay at
    the next start."""
    for name in ("kafka", "postgres"):
        grace = str(services(compose)[name].get("stop_grace_period", "10s"))
        seconds = int(grace.removesuffix("s")) if grace.endswith("s") else 60 * int(grace[:-1])
        assert seconds >= 60, f"{name}: stop_grace_period {grace}"
    for name in (*APP_SERVICES, "gateway"):
        assert str(services(compose)[name]["stop_grace_period"]) == "30s", name


def test_services_restart_when_they_stop_working(compose: dict[str, Any]) -> None:
    """Defect: a service whose consumer or relay had died stayed up, unready, forever (compose
    restarts containers that exit, never unhealthy ones). It now exits (shared.service's
    watchdog, tests/unit/test_service_watchdog.py); here: each is restarted, and probed on
    readiness."""
    import shared.service

    assert shared.service.EXIT_TASK_DIED != 0
    for name in LONG_RUNNING:
        service = services(compose)[name]
        assert service["restart"] == "unless-stopped", name
        assert "healthcheck" in service, name
    for name in (*APP_SERVICES, "gateway"):
        code = services(compose)[name]["healthcheck"]["test"][-1]
        assert READINESS_PATH in code, f"{name}: the healthcheck reads readiness"


def test_the_cluster_id_is_generated_per_host(compose: dict[str, Any], tmp_path: Path) -> None:
    """Defect: one cluster id committed for every installation."""
    value = environment(services(compose)["kafka"])["CLUSTER_ID"]
    assert INTERPOLATION.fullmatch(value) and value.startswith("${KAFKA_CLUSTER_ID:?"), value
    ids = []
    for n in range(2):
        target = tmp_path / str(n) / ".env"
        target.parent.mkdir()
        subprocess.run(["bash", str(GENERATE_ENV), str(target)], check=True, capture_output=True)
        ids.append(read_env_file(target)["KAFKA_CLUSTER_ID"])
    for cluster_id in ids:
        # What `kafka-storage.sh random-uuid` prints: 16 bytes, URL-safe base64, no padding.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), cluster_id
        padded = cluster_id.replace("-", "+").replace("_", "/") + "=="
        assert len(base64.b64decode(padded)) == 16
    assert ids[0] != ids[1]
    assert env_example()["KAFKA_CLUSTER_ID"] == "", ".env.example commits no id"


def requirement_pins() -> dict[str, str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?==([^\s;]+)", requirement)
        assert match, f"pyproject pins every dependency exactly: {requirement}"
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_images_install_the_python_packages_the_tests_ran_against() -> None:
    """Defect: `pip install .` resolved every transitive dependency anew at each build."""
    lines = [
        line
        for line in CONSTRAINTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    constraints = {}
    for line in lines:
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[A-Za-z0-9.+!-]+", version), f"not an exact pin: {line}"
        constraints[canonical(name)] = version
    assert "referral-exchange" not in constraints, "the project itself is not a constraint"
    for name, version in requirement_pins().items():
        assert constraints.get(name) == version, f"{name}: pyproject {version}, constraints.txt"
    runs = [args for keyword, args in dockerfile_instructions() if keyword == "RUN"]
    assert any("pip install" in run and "-c constraints.txt" in run for run in runs)
    copies = [args for keyword, args in dockerfile_instructions() if keyword == "COPY"]
    assert any("constraints.txt" in copy.split() for copy in copies)


# Each image's full version: Kafka and Python major.minor.patch, PostgreSQL major.minor (its
# full version since 10), then the Debian release where the image has one.
FULL_VERSION = {
    "apache/kafka": re.compile(r"\d+\.\d+\.\d+"),
    "postgres": re.compile(r"\d+\.\d+-bookworm"),
    "python": re.compile(r"\d+\.\d+\.\d+-slim-bookworm"),
    "prom/prometheus": re.compile(r"v\d+\.\d+\.\d+"),
    "grafana/grafana": re.compile(r"\d+\.\d+\.\d+"),
}


def test_images_are_pinned_to_full_version_tags(compose: dict[str, Any]) -> None:
    """Defect class: a floating tag (`latest`, `15`, `3.11-slim`) changes under a rebuild. No
    registry of images is reachable from here, so tags are pinned, not digests."""
    images = [s["image"] for s in services(compose).values() if "build" not in s]
    images += [args.split()[0] for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    # Kafka, PostgreSQL, Prometheus, Grafana and the Dockerfile's Python.
    assert len(images) == 5, images
    for image in images:
        repo, tag = image_tag(image)
        assert repo in FULL_VERSION, f"{image}: which version scheme?"
        assert tag is not None and FULL_VERSION[repo].fullmatch(tag), f"{image}: a full version"


# ----- monitoring: Prometheus and Grafana (issue 21) -----


def command_flags(service: dict[str, Any]) -> dict[str, str]:
    """--name=value flags of a service's command."""
    return dict(
        arg.removeprefix("--").split("=", 1) for arg in as_argv(service["command"]) if "=" in arg
    )


def bind_mounts(service: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """container path -> (host path, options) of a service's ./ bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *options = str(volume).split(":")
        if source.startswith("./"):
            mounts[target] = ((ROOT / source).resolve(), ",".join(options))
    return mounts


def test_prometheus_scrapes_every_service_serving_metrics_by_its_compose_name_and_port(
    compose: dict[str, Any],
) -> None:
    """Defect class: a scrape target that names no compose service or the wrong port is down
    forever, and a service missing from the scrape config is silently unwatched."""
    from shared.service import METRICS_PATH

    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # Every service built on shared.service.ServiceRuntime serves /metrics on its HTTP port; a
    # service given a <NAME>_METRICS_PORT serves it there instead (a port of its own).
    runtime = {
        name
        for name in (*APP_SERVICES, "gateway")
        if "ServiceRuntime(" in (ROOT / "services" / name / "app.py").read_text()
    }
    assert runtime == set(APP_SERVICES)
    expected = {}
    for name, service in services(compose).items():
        env = environment(service)
        if f"{name.upper()}_METRICS_PORT" in env:
            expected[name] = f"{name}:{env[f'{name.upper()}_METRICS_PORT']}"
        elif name in runtime:
            expected[name] = f"{name}:{env[f'{name.upper()}_HTTP_PORT']}"
    assert set(jobs) == set(expected), "one job per service, named after it (alerts read `job`)"
    for name, job in jobs.items():
        assert job.get("metrics_path", "/metrics") == METRICS_PATH, name
        targets = [t for static in job["static_configs"] for t in static["targets"]]
        assert targets == [expected[name]], f"{name}: the compose service's own metrics port"
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_CONFIG.parent / rule_file).is_file(), rule_file


def test_compose_prometheus_runs_this_configuration_and_bounds_its_disk(
    compose: dict[str, Any],
) -> None:
    service = services(compose)["prometheus"]
    flags = command_flags(service)
    mounts = bind_mounts(service)
    config = Path(flags["config.file"])
    assert mounts[str(config.parent)] == (PROMETHEUS_CONFIG.parent, "ro"), "config read-only"
    assert (PROMETHEUS_CONFIG.parent / config.name).resolve() == PROMETHEUS_CONFIG
    named = set(compose["volumes"])
    storage = {str(v).split(":")[1]: str(v).split(":")[0] for v in service["volumes"]}
    assert storage[flags["storage.tsdb.path"]] in named, "its data in a named volume"
    # Defect class: a time series database that grows until the disk is full.
    assert re.fullmatch(r"\d+d", flags["storage.tsdb.retention.time"])
    assert re.fullmatch(r"\d+GB", flags["storage.tsdb.retention.size"])


def test_grafana_reads_the_compose_prometheus_and_the_dashboards_it_is_given(
    compose: dict[str, Any],
) -> None:
    prometheus_port = command_flags(services(compose)["prometheus"])["web.listen-address"]
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    [datasource] = datasources
    assert datasource["url"] == f"http://prometheus:{prometheus_port.rsplit(':', 1)[1]}"
    assert datasource["uid"] == "prometheus", "the uid every panel of the dashboard names"
    service = services(compose)["grafana"]
    mounts = bind_mounts(service)
    assert mounts["/etc/grafana/provisioning"] == ((GRAFANA / "provisioning"), "ro")
    [provider] = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "refex.yml").read_text()
    )["providers"]
    assert mounts[provider["options"]["path"]] == ((GRAFANA / "dashboards"), "ro")
    env = environment(service)
    home = Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == provider["options"]["path"]
    assert (GRAFANA / "dashboards" / home.name).is_file()
    assert services(compose)["grafana"]["depends_on"] == {
        "prometheus": {"condition": "service_healthy"}
    }
    assert list(container_port_mapping(service).values()) == [int(env["GF_SERVER_HTTP_PORT"])]


def test_grafanas_admin_password_and_key_are_generated_secret_files(
    compose: dict[str, Any], generated: Generated
) -> None:
    """Defect class: Grafana's admin/admin default, or its built-in secret key."""
    service = services(compose)["grafana"]
    env = environment(service)
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert env["GF_SECURITY_SECRET_KEY__FILE"] == "/run/secrets/grafana_secret_key"
    assert set(secret_mounts(service)) == {"grafana_admin_password", "grafana_secret_key"}
    assert not any("PASSWORD" in k and not k.endswith("__FILE") for k in env)
    assert env["GF_USERS_ALLOW_SIGN_UP"] == env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert len(generated.secret("grafana_admin_password")) >= 24


def test_monitoring_is_reached_from_this_host_only(compose: dict[str, Any]) -> None:
    """Prometheus has no login and Grafana's is a single admin: neither listens on the host's
    public interfaces by default."""
    for name in MONITORING:
        for entry in services(compose)[name]["ports"]:
            assert str(entry).startswith("127.0.0.1:"), f"{name}: {entry}"


# ----- TLS to Kafka and PostgreSQL (issue 22, decision 31): one test per defect -----


def kafka_clients(compose: dict[str, Any]) -> dict[str, str]:
    """Every container that connects to Kafka -> the prefix of its Kafka settings."""
    clients = {}
    for name, service in services(compose).items():
        for key in environment(service):
            if key.endswith("_KAFKA_BOOTSTRAP_SERVERS"):
                clients[name] = key.removesuffix("BOOTSTRAP_SERVERS")
    return clients


def test_every_kafka_client_in_compose_verifies_the_broker(compose: dict[str, Any]) -> None:
    """Defect: clients connected in plaintext, or with TLS but no CA to check the broker by."""
    clients = kafka_clients(compose)
    assert {*APP_SERVICES, "gateway", "platform-init", *TOOL_SECRETS} <= set(clients)
    assert compose["configs"]["tls_ca"] == {"file": "./secrets/tls/ca.crt"}
    for name, prefix in clients.items():
        service = services(compose)[name]
        ca_file = environment(service).get(f"{prefix}CA_FILE")
        assert ca_file == CA_IN_CONTAINERS, f"{name}: {prefix}CA_FILE must name the mounted CA"
        assert config_mounts(service).get(ca_file) == "tls_ca", f"{name}: the CA is not mounted"


def test_every_database_url_asks_for_verify_full(
    compose: dict[str, Any], generated: Generated
) -> None:
    """Defect: the services' URLs had no sslmode (asyncpg's `prefer`: any certificate, and
    plaintext when the server offers no TLS)."""
    urls = {p.name: p.read_text() for p in generated.secrets.glob("*_database_url")}
    assert set(urls) == {f"{name}_database_url" for name in APP_SERVICES}
    for secret, url in urls.items():
        query = parse_qs(urlsplit(url).query)
        assert query == {"sslmode": ["verify-full"], "sslrootcert": [CA_IN_CONTAINERS]}, secret
        for name, service in services(compose).items():
            if secret in secret_mounts(service):
                assert config_mounts(service).get(CA_IN_CONTAINERS) == "tls_ca", (name, secret)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_production_refuses_plaintext_kafka_and_weak_sslmodes(
    compose: dict[str, Any],
    name: str,
    generated: Generated,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Defect class: an .env or secret edited back to plaintext would still start."""
    settings_cls = SETTINGS[name]
    prefix = f"{name.upper()}_"
    service_env(compose, name, generated.env, monkeypatch)
    secrets = mounted_secrets(compose, name, generated, tmp_path / "run-secrets")
    settings_cls(_secrets_dir=secrets)  # type: ignore[call-arg]  # as compose runs it: accepted

    monkeypatch.delenv(f"{prefix}KAFKA_CA_FILE")
    with pytest.raises(ValueError, match="kafka_ca_file is missing") as refused:
        settings_cls(_secrets_dir=secrets)  # type: ignore[call-arg]
    assert generated.secret(f"{name}_kafka_password") not in str(refused.value)
    monkeypatch.setenv(f"{prefix}KAFKA_CA_FILE", CA_IN_CONTAINERS)

    url = generated.secret(f"{name}_database_url")
    for weaker in ("disable", "allow", "prefer", "require", "verify-ca"):
        (secrets / f"{name}_database_url").write_text(
            url.replace("sslmode=verify-full", f"sslmode={weaker}")
        )
        with pytest.raises(ValueError, match=f"sslmode={weaker}; it needs") as refused:
            settings_cls(_secrets_dir=secrets)  # type: ignore[call-arg]
        assert generated.secret(f"{name}_db_password") not in str(refused.value)
    (secrets / f"{name}_database_url").write_text(url.split("?")[0])
    with pytest.raises(ValueError, match=r"sslmode=\(unset\)"):
        settings_cls(_secrets_dir=secrets)  # type: ignore[call-arg]


def test_the_gateway_refuses_plaintext_kafka_in_production(
    compose: dict[str, Any], generated: Generated, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Defect class: agencies' passwords crossing the network in the clear (the gateway logs in
    as them)."""
    from services.gateway.settings import GatewaySettings

    for key in [k for k in os.environ if k.startswith("GATEWAY_")]:
        monkeypatch.delenv(key)
    for key, value in environment(services(compose)["gateway"]).items():
        monkeypatch.setenv(key, interpolate(value, generated.env))
    secrets = mounted_secrets(compose, "gateway", generated, tmp_path / "run-secrets")
    assert GatewaySettings(_secrets_dir=secrets).kafka.ca_file == CA_IN_CONTAINERS  # type: ignore[call-arg]
    monkeypatch.delenv("GATEWAY_KAFKA_CA_FILE")
    with pytest.raises(ValueError, match="kafka_ca_file is missing"):
        GatewaySettings(_secrets_dir=secrets)  # type: ignore[call-arg]


def test_the_broker_has_no_plaintext_client_listener(compose: dict[str, Any]) -> None:
    """Defect: both client listeners were SASL_PLAINTEXT. Every listener but the controller's is
    SASL_SSL; the controller's is plaintext only on loopback, SASL_SSL anywhere else."""
    start = KAFKA_START.read_text()
    assert 'CONTROLLER="127.0.0.1:9093"' in start, "compose's one controller on loopback"
    assert '"$CONTROLLER" "$DATA"' in start
    assert '"$KEYSTORE" "$CA_FILE"' in start
    assert 'KEYSTORE="$secrets_dir/kafka_tls_keystore"' in start
    props = broker_properties(
        "CLIENT://0.0.0.0:9092",
        "CLIENT://kafka:9092",
        "127.0.0.1:9093",
        "/data",
        "a" * 20,
        "b" * 20,
        KEYSTORE,
        CA_FILE,
        "EXTERNAL://0.0.0.0:9094",
        "EXTERNAL://kafka.example.org:9094",
    )
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    for listener in props["listeners"].split(","):
        name = listener.split("://")[0]
        if name == "CONTROLLER":
            assert protocols[name] == "SASL_PLAINTEXT" and "://127.0.0.1:" in listener
        else:
            assert protocols[name] == "SASL_SSL", listener
    assert "CONTROLLER" not in props["advertised.listeners"]
    assert props["ssl.keystore.type"] == "PEM" and props["ssl.keystore.location"] == KEYSTORE
    assert props["ssl.truststore.location"] == CA_FILE
    assert props["ssl.endpoint.identification.algorithm"] == "https"
    assert set(props["ssl.enabled.protocols"].split(",")) <= {"TLSv1.2", "TLSv1.3"}

    def refused(*args: str) -> str:
        script = f'source "{BROKER_PROPERTIES}"; broker_properties "$@"'
        run = subprocess.run(
            ["bash", "-c", script, "props", *args], capture_output=True, text=True, check=False
        )
        assert run.returncode != 0, args
        return run.stderr

    base = ["CLIENT://0.0.0.0:9092", "CLIENT://kafka:9092"]
    rest = ["/data", "a" * 20, "b" * 20, KEYSTORE, CA_FILE]
    # A controller other machines reach (a cluster, issue 22) speaks TLS too.
    for controller in ("0.0.0.0:9093", "kafka:9093", "10.0.0.5:9093"):
        off_loopback = broker_properties(*base, controller, *rest)
        assert "CONTROLLER:SASL_SSL" in off_loopback["listener.security.protocol.map"], controller
    assert "TLS needs" in refused(*base, "127.0.0.1:9093", "/data", "a" * 20, "b" * 20)

    # The healthcheck's own client speaks TLS too.
    script = f'source "{BROKER_PROPERTIES}"; broker_admin_client_properties "$@"'
    admin = subprocess.run(
        ["bash", "-c", script, "p", "a" * 20, CA_FILE], check=True, capture_output=True, text=True
    ).stdout
    assert "security.protocol=SASL_SSL" in admin
    assert f"ssl.truststore.location={CA_FILE}" in admin


def test_postgres_serves_tls_only(compose: dict[str, Any], tmp_path: Path) -> None:
    """Defect: PostgreSQL accepted plaintext TCP connections (the image's `host all all all`)."""
    postgres = services(compose)["postgres"]
    settings = postgres_settings(compose)
    tls_dir = "/var/lib/postgresql/tls"
    assert settings["ssl"] == "on"
    assert settings["ssl_cert_file"] == f"{tls_dir}/server.crt"
    assert settings["ssl_key_file"] == f"{tls_dir}/server.key"
    assert settings["ssl_min_protocol_version"] in ("TLSv1.2", "TLSv1.3")
    mounts = {str(v).split(":")[1]: ROOT / str(v).split(":")[0] for v in postgres["volumes"]}
    assert mounts[settings["hba_file"]].resolve() == PG_HBA
    assert postgres["entrypoint"] == ["bash", "/opt/refex/postgres-start.sh"]
    assert mounts["/opt/refex/postgres-start.sh"].resolve() == POSTGRES_START
    assert {"postgres_tls_certificate", "postgres_tls_key"} <= set(secret_mounts(postgres))

    rules = [line.split() for line in PG_HBA.read_text().splitlines()]
    rules = [r for r in rules if r and not r[0].startswith("#")]
    assert {r[0] for r in rules} <= {"local", "hostssl", "hostnossl"}, "no `host` line"
    assert all(r[-1] == "reject" for r in rules if r[0] == "hostnossl")
    assert all(r[-1] == "scram-sha-256" for r in rules if r[0] == "hostssl")
    assert rules[-1] == ["hostnossl", "all", "all", "all", "reject"]

    # The start script copies the key where PostgreSQL accepts it (owned by postgres, 0600) and
    # hands compose's command to the image's entry point unchanged.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in ("install", "docker-entrypoint.sh"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n')
        (bin_dir / tool).chmod(0o755)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "REFEX_SECRETS_DIR": str(secrets),
        "REFEX_PG_TLS_DIR": tls_dir,
    }
    argv = ["bash", str(POSTGRES_START), *as_argv(postgres["command"])]
    missing = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and "postgres_tls_certificate is missing" in missing.stderr
    for name in ("postgres_tls_certificate", "postgres_tls_key"):
        (secrets / name).write_text("pem")
    subprocess.run(argv, env=env, check=True, capture_output=True)
    lines = calls.read_text().splitlines()
    key_copy = f"install -m 0600 -o postgres -g postgres {secrets}/postgres_tls_key"
    assert f"{key_copy} {tls_dir}/server.key" in lines
    assert lines[-1] == "docker-entrypoint.sh " + " ".join(as_argv(postgres["command"]))


def openssl_verifies(ca: Path, certificate: Path, host: str) -> bool:
    flag = "-verify_ip" if re.fullmatch(r"[\d.]+", host) else "-verify_hostname"
    run = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), flag, host, str(certificate)],
        capture_output=True,
        text=True,
        check=False,
    )
    return run.returncode == 0


def test_generated_certificates_name_the_hosts_clients_reach(
    compose: dict[str, Any], generated: Generated
) -> None:
    """Defect class: a certificate without the name a client uses fails every connection with
    host name verification on (as it must be); one with a key others can mount leaks it."""
    tls = generated.secrets / "tls"
    ca = tls / "ca.crt"
    hosts = ("kafka", "kafka-2", "kafka-3", "localhost", "127.0.0.1")  # -2, -3: the cluster's
    for host in (*hosts, HOST_SETTINGS["REFEX_PUBLIC_KAFKA_HOST"]):
        assert openssl_verifies(ca, tls / "kafka.pem", host), host
    for host in ("postgres", "localhost"):
        assert openssl_verifies(ca, tls / "postgres.crt", host), host
    assert not openssl_verifies(ca, tls / "kafka.pem", "other.example.org")
    assert not openssl_verifies(ca, tls / "postgres.crt", "kafka")

    keystore = (tls / "kafka.pem").read_text()
    assert keystore.count("-----BEGIN PRIVATE KEY-----") == 1, "one unencrypted PKCS#8 key"
    assert keystore.count("-----BEGIN CERTIFICATE-----") == 2, "the broker's, then the CA's"
    # The CA's key signs; no container ever gets it.
    assert (tls / "ca.key").stat().st_mode & 0o077 == 0
    mounted = {
        spec["file"] for spec in (*compose["secrets"].values(), *compose["configs"].values())
    }
    assert "./secrets/tls/ca.key" not in mounted
    assert tls.stat().st_mode & 0o077 == 0 and generated.secrets.stat().st_mode & 0o077 == 0


def test_certificates_follow_a_new_public_host_and_keep_the_ca(tmp_path: Path) -> None:
    """Defect class: changing REFEX_PUBLIC_KAFKA_HOST needs a new broker certificate, and a new
    CA would make every agency's copy of it worthless."""
    target = tmp_path / ".env"
    env = {**os.environ, **HOST_SETTINGS}
    subprocess.run(
        ["bash", str(GENERATE_ENV), str(target)], check=True, capture_output=True, env=env
    )
    tls = tmp_path / "secrets" / "tls"
    ca_before = (tls / "ca.crt").read_bytes()
    keystore_before = (tls / "kafka.pem").read_bytes()
    subprocess.run(
        ["bash", str(CERTIFICATES), str(target)], check=True, capture_output=True, env=env
    )
    assert (tls / "kafka.pem").read_bytes() == keystore_before, "nothing to renew"
    env["REFEX_PUBLIC_KAFKA_HOST"] = "kafka2.example.org"
    subprocess.run(
        ["bash", str(CERTIFICATES), str(target)], check=True, capture_output=True, env=env
    )
    assert (tls / "ca.crt").read_bytes() == ca_before
    assert openssl_verifies(tls / "ca.crt", tls / "kafka.pem", "kafka2.example.org")
    assert not openssl_verifies(tls / "ca.crt", tls / "kafka.pem", "kafka.example.org")


# ----- the production profile: three brokers (docker-compose.cluster.yml, issue 22) -----

BROKER_NODES = ("kafka", "kafka-2", "kafka-3")


def _overlay(base: Any, over: Any) -> Any:
    """docker compose's merge of a second -f file, for the keys used here: mappings merge key
    by key (environment, depends_on), anything else the second file replaces."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _overlay(base[k], v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


@pytest.fixture(scope="module")
def cluster(compose: dict[str, Any]) -> dict[str, Any]:
    over = yaml.safe_load(CLUSTER_FILE.read_text())
    assert isinstance(over, dict) and isinstance(over.get("services"), dict)
    return dict(_overlay(compose, over))


def test_the_cluster_profile_runs_three_nodes_of_one_quorum(cluster: dict[str, Any]) -> None:
    nodes = {name: services(cluster)[name] for name in BROKER_NODES}
    env = {name: node["environment"] for name, node in nodes.items()}
    assert [env[n]["REFEX_KAFKA_NODE_ID"] for n in BROKER_NODES] == ["1", "2", "3"]
    assert [env[n].get("REFEX_KAFKA_HOST_NAME") for n in BROKER_NODES] == list(BROKER_NODES)
    voters = {env[n]["REFEX_KAFKA_QUORUM_VOTERS"] for n in BROKER_NODES}
    assert voters == {"1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"}, "one quorum, every node"
    assert {env[n]["REFEX_KAFKA_REPLICATION_FACTOR"] for n in BROKER_NODES} == {"3"}
    first = nodes["kafka"]
    for name in ("kafka-2", "kafka-3"):
        node = nodes[name]
        for key in ("image", "entrypoint", "secrets", "configs", "healthcheck", "restart"):
            assert node[key] == first[key], (name, key)
        assert node["stop_grace_period"] == first["stop_grace_period"]
        assert node["deploy"] == first["deploy"], "the same memory and CPU limits"
        assert env[name]["CLUSTER_ID"] == env["kafka"]["CLUSTER_ID"], "one cluster id"
        assert env[name]["KAFKA_HEAP_OPTS"] == env["kafka"]["KAFKA_HEAP_OPTS"]
        # The same scripts, a data volume of its own.
        scripts = [v for v in node["volumes"] if "/opt/refex/" in v]
        assert sorted(scripts) == sorted(v for v in first["volumes"] if "/opt/refex/" in v)
        data = [v for v in node["volumes"] if v.endswith(":/var/lib/kafka/data")]
        assert data == [f"{name}-data:/var/lib/kafka/data"] and f"{name}-data" in cluster["volumes"]
    # Each node's EXTERNAL listener on a public port of its own, advertised as that port.
    published = [str(nodes[n]["ports"][0]).rsplit(":", 1) for n in BROKER_NODES]
    assert all(container == "9094" for _, container in published)
    assert len({host for host, _ in published}) == 3
    for (host_port, _), name in zip(published, BROKER_NODES, strict=True):
        assert env[name]["REFEX_PUBLIC_KAFKA_PORT"] == host_port, name


def test_the_cluster_profile_replicates_every_topic_three_times_with_min_insync_two(
    cluster: dict[str, Any],
) -> None:
    """What each node's kafka-start.sh writes with the environment the cluster file gives it:
    every topic (internal ones included) on three replicas, a write acknowledged on two."""
    for name in BROKER_NODES:
        env = services(cluster)[name]["environment"]
        props = broker_properties(
            "CLIENT://0.0.0.0:9092",
            f"CLIENT://{advertised_broker_of(env['REFEX_KAFKA_HOST_NAME'])}",
            "0.0.0.0:9093",  # kafka-start.sh's controller address when given voters
            "/var/lib/kafka/data",
            "a" * 20,
            "b" * 20,
            KEYSTORE,
            CA_FILE,
            "EXTERNAL://0.0.0.0:9094",
            f"EXTERNAL://kafka.example.org:{env['REFEX_PUBLIC_KAFKA_PORT']}",
            env={k: str(v) for k, v in env.items() if k.startswith("REFEX_KAFKA_")},
        )
        assert props["node.id"] == env["REFEX_KAFKA_NODE_ID"]
        assert props["controller.quorum.voters"] == env["REFEX_KAFKA_QUORUM_VOTERS"]
        assert props["advertised.listeners"].startswith(f"CLIENT://{name}:9092,"), name
        for key in (
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "share.coordinator.state.topic.replication.factor",
        ):
            assert props[key] == "3", (name, key)
        for key in (
            "min.insync.replicas",
            "transaction.state.log.min.isr",
            "share.coordinator.state.topic.min.isr",
        ):
            assert props[key] == "2", (name, key)
        assert props["unclean.leader.election.enable"] == "false"
        # The controllers reach each other over the network: TLS, never plaintext.
        assert "CONTROLLER:SASL_SSL" in props["listener.security.protocol.map"]
    assert 'CONTROLLER="0.0.0.0:9093"' in KAFKA_START.read_text()


def test_the_cluster_profile_creates_topics_on_three_brokers_and_gives_clients_all_three(
    cluster: dict[str, Any],
) -> None:
    every = "kafka:9092,kafka-2:9092,kafka-3:9092"
    init = services(cluster)["platform-init"]
    assert init["environment"]["REFEX_KAFKA_REPLICATION_FACTOR"] == "3"
    assert init["environment"]["REFEX_KAFKA_BOOTSTRAP_SERVERS"] == every
    assert init["command"] == ["refex", "platform", "provision", "--bootstrap", every]
    for name in BROKER_NODES:  # RF 3 topics need all three up
        assert init["depends_on"][name] == {"condition": "service_healthy"}, name
    for name in (*APP_SERVICES, "gateway"):
        env = services(cluster)[name]["environment"]
        assert env[f"{name.upper()}_KAFKA_BOOTSTRAP_SERVERS"] == every, name
    tools = [n for n, s in services(cluster).items() if "tools" in (s.get("profiles") or [])]
    assert tools
    for name in tools:  # register-agency creates the agency's topics
        env = services(cluster)[name]["environment"]
        assert env["REFEX_KAFKA_BOOTSTRAP_SERVERS"] == every, name
        assert env["REFEX_KAFKA_REPLICATION_FACTOR"] == "3", name
    # The one-node file stays one node: its topics on one replica, the broker's default.
    assert "REFEX_KAFKA_REPLICATION_FACTOR" not in services(compose_file())["platform-init"].get(
        "environment", {}
    )


def compose_file() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))
