"""Secrets as files. Docker Compose (and Kubernetes) mount each secret as a file under
``/run/secrets``, which keeps it out of the container's environment: ``docker inspect``, a
crash report or a child process's environment never shows it.

The services' settings read ``/run/secrets/<prefix>_<field>`` (pydantic-settings' ``secrets_dir``,
e.g. ``intake_kafka_password``) when the directory exists; a variable of the environment still
wins over a file. The operator CLI reads its own (``REFEX_KAFKA_PASSWORD``, the services' Kafka
passwords for ``platform provision``) with ``environ_or_file``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SECRETS_DIR = Path("/run/secrets")


def secrets_dir() -> Path | None:
    """The directory for pydantic-settings' ``secrets_dir``, or None where there is none (a
    developer's machine, `make run`): pydantic-settings warns about a missing directory, and a
    clean start prints no warning."""
    return SECRETS_DIR if SECRETS_DIR.is_dir() else None


def environ_or_file(
    name: str, environ: Mapping[str, str] | None = None, directory: Path | None = None
) -> str | None:
    """``name`` from the environment, else from the secret file of that name in lower case
    (``REFEX_KAFKA_PASSWORD`` → ``/run/secrets/refex_kafka_password``), else None."""
    value = (os.environ if environ is None else environ).get(name)
    if value:
        return value
    path = (directory or SECRETS_DIR) / name.lower()
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None
