"""`make run`'s supervisor (deploy/local/run.py) against make test's Kafka and PostgreSQL: a clean
start, a crashed service restarted while the others keep running, e-mail caught by its SMTP sink,
and SIGTERM stopping every process it started (the infrastructure stays: --keep-infra)."""

from __future__ import annotations

import os
import queue
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import IO

import pytest

from tests.readiness import service_ready

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "referral", "notification", "evidence", "gateway")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"supervisor │ (\w+) started \(pid (\d+)\)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Output:
    """The supervisor's output, read on a thread, ANSI colours stripped."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._new.put(ANSI.sub("", line))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        wanted = re.compile(pattern)
        for line in self.lines:
            if found := wanted.search(line):
                return found
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                break
            self.lines.append(line)
            if found := wanted.search(line):
                return found
        tail = "".join(self.lines[-40:])
        raise AssertionError(f"no line matching {pattern!r} in {timeout} s; last lines:\n{tail}")


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output, dict[str, int]]]:
    if "INTAKE_DATABASE_URL" not in os.environ:
        pytest.fail("needs make test's infrastructure: run it with `make test`")
    ports = {s: _free_port() for s in (*SERVICES, "smtp")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFICATION_SMTP_")}
    env |= {f"REFEX_{s.upper()}_HTTP_PORT": str(ports[s]) for s in SERVICES}
    env |= {"REFEX_SMTP_PORT": str(ports["smtp"]), "REFEX_LOCAL_DIR": str(tmp_path)}
    # run.py reads the services' environment file from REFEX_LOCAL_DIR: make test's own, copied
    # so that the sink's mail folder is this test's.
    (tmp_path / "env").write_text((Path(os.environ["REFEX_LOCAL_DIR"]) / "env").read_text())
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "deploy/local/run.py"), "--keep-infra"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield proc, Output(proc), ports
    finally:
        if proc.poll() is None:
            proc.kill()  # the services follow it (PR_SET_PDEATHSIG)
            proc.wait()


def test_a_crashed_service_is_restarted_and_sigterm_stops_everything(
    supervisor: tuple[subprocess.Popen[str], Output, dict[str, int]], tmp_path: Path
) -> None:
    proc, out, ports = supervisor
    out.wait_for(r"Referral Exchange is running", timeout=120)
    out.wait_for(r"try: make demo", timeout=5)  # the end of the banner
    pids = {m[1]: int(m[2]) for line in out.lines if (m := STARTED.search(line))}
    assert set(pids) == set(SERVICES)
    start_up = "".join(out.lines)
    loud = [line for line in out.lines if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)]
    assert not loud, f"a clean start is quiet, but: {loud[:5]}"
    assert f"e-mail            smtp://127.0.0.1:{ports['smtp']}" in start_up
    assert str(tmp_path / "mail") in start_up, "the banner says where mail lands"

    os.kill(pids["referral"], signal.SIGKILL)
    out.wait_for(r"referral exited \(killed by SIGKILL\); restarting it in", timeout=10)
    again = int(out.wait_for(r"referral is ready again \(pid (\d+)\)", timeout=60)[1])
    assert again != pids["referral"] and _alive(again)
    assert all(service_ready(ports[s]) for s in SERVICES)
    assert all(_alive(pids[s]) for s in ("intake", "notification")), "the others kept running"
    assert proc.poll() is None

    # notification's e-mail goes to the sink, which keeps each message as a file.
    environ = Path(f"/proc/{pids['notification']}/environ").read_bytes().split(b"\0")
    assert f"NOTIFICATION_SMTP_PORT={ports['smtp']}".encode() in environ
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.invalid", "b@y.invalid", "sink?"
    message.set_content("kept")
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as smtp:
        smtp.send_message(message)
    saved = Path(out.wait_for(r"e-mail saved to (\S+\.eml)", timeout=10)[1])
    assert saved.parent == tmp_path / "mail" and "Subject: sink?" in saved.read_text()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    out.wait_for(r"stopping services", timeout=1)
    assert not [p for p in (*pids.values(), again) if _alive(p)], "no process left behind"
    assert not any("stopping Kafka" in line for line in out.lines), "--keep-infra"
    kafka_port = int(os.environ["REFEX_KAFKA_PORT"])
    with socket.create_connection(("127.0.0.1", kafka_port), timeout=5):
        pass  # make test's broker still runs for the tests after this one
