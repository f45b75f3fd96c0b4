"""The services as OS processes (two referral instances in one consumer group) and the local
infrastructure scripts, so faults can be injected: SIGKILL, SIGSTOP/SIGCONT, restarts."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.settings import service_environment
from tests.readiness import service_ready

REPO = Path(__file__).resolve().parents[2]


def _die_with_parent() -> None:
    """In the child: Linux sends it SIGKILL if the chaos run dies, so no service is left behind
    (the run's own SIGKILLs of a service are unaffected)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass
class ServiceProcess:
    """One instance of a service: ``name`` is the instance (e.g. referral-2), ``service`` the
    module it runs (services.referral)."""

    name: str
    service: str
    port: int
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
            f"{self.service.upper()}_HTTP_PORT": str(self.port),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.service}"],
                cwd=REPO,
                env=service_environment(self.service, env),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def ready(self) -> bool:
        return self.alive() and service_ready(self.port)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 90) -> float:
        """Seconds until ready; raises if it dies or takes longer."""
        started = time.monotonic()
        while not self.ready():
            if not self.alive():
                raise RuntimeError(f"{self.name} died: see {self.log_path}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.name} not ready after {timeout} s: see {self.log_path}")
            time.sleep(0.2)
        return time.monotonic() - started

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Orderly stop (SIGTERM; a frozen process is thawed first)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def infrastructure(script: str, action: str) -> None:
    """deploy/local/<script> up|down with the environment of this run (REFEX_LOCAL_DIR, ports)."""
    subprocess.run(
        [str(REPO / "deploy" / "local" / script), action],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def restart(script: str, pause_s: float = 2.0) -> None:
    # Kafka's `stop` keeps a namespaced cluster's network (kafka.sh): a restart of the brokers,
    # not of the host's links.
    infrastructure(script, "stop" if script == "kafka.sh" else "down")
    time.sleep(pause_s)
    infrastructure(script, "up")
