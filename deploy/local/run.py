"""Foreground supervisor for `make run`: starts the four services against the local Kafka and
PostgreSQL (already up) and a local SMTP sink for their e-mail, interleaves their logs readably,
prints the URLs once all are ready, restarts a service that exits (with backoff, saying so; the
others keep running), and on Ctrl-C / SIGTERM stops the services, then the infrastructure,
leaving no process behind.

  run.py [--keep-infra]   --keep-infra: leave Kafka and PostgreSQL running on exit (tests that
                          supervise against infrastructure they own)

Ports come from the environment file deploy/local/env.sh wrote; REFEX_<SERVICE>_HTTP_PORT in the
environment overrides a service's, REFEX_SMTP_PORT (default 18025) is the sink's. With
NOTIFICATION_SMTP_HOST set, notification uses that relay and no sink is started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from mail_sink import start_mail_sink

from shared.settings import service_environment

REPO = Path(__file__).resolve().parents[2]
LOCAL = Path(os.environ.get("REFEX_LOCAL_DIR", REPO / ".local"))
MAIL_DIR = LOCAL / "mail"
SERVICES = ("intake", "referral", "notification", "evidence", "gateway")
COLOURS = {
    "intake": "\033[36m",
    "referral": "\033[35m",
    "notification": "\033[33m",
    "evidence": "\033[32m",
    "gateway": "\033[34m",
}
RESET, DIM, RED, BOLD = "\033[0m", "\033[2m", "\033[31m", "\033[1m"
STOP_GRACE_S = 30.0
# Delay before each restart of a service that keeps exiting; one that ran this long before it
# exited starts again from the first delay.
RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
STABLE_S = 60.0


def say(text: str) -> None:
    """Print, but never let a closed terminal or pipe stop the shutdown sequence."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError:
        pass


def supervisor_says(text: str, colour: str = "") -> None:
    say(f"{BOLD}{'supervisor':>12}{RESET} │ {colour}{text}{RESET if colour else ''}")


def die_with_parent() -> None:
    """Runs in each service's child process: Linux sends it SIGTERM if this supervisor dies,
    even by SIGKILL, so a service is never left running on its own."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def load_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in (LOCAL / "env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            # env.sh shell-quotes a value that needs it (a database URL's '&'): undo it.
            env[key] = "".join(shlex.split(value)) if value else ""
    for service in SERVICES:
        override = os.environ.get(f"REFEX_{service.upper()}_HTTP_PORT")
        if override:
            env[f"{service.upper()}_HTTP_PORT"] = override
    env["PYTHONUNBUFFERED"] = "1"
    return env


def readable(line: str) -> str:
    """A JSON log line as `time level event key=value…`; anything else unchanged."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return line
    if not isinstance(record, dict):
        return line
    time = str(record.pop("timestamp", ""))[11:23]
    level = str(record.pop("level", "")).upper()
    event = record.pop("event", "")
    for noise in ("service", "logger"):
        record.pop(noise, None)
    colour = RED if level in ("ERROR", "CRITICAL", "WARNING") else ""
    extras = " ".join(f"{DIM}{k}={RESET}{v}" for k, v in record.items())
    return f"{DIM}{time}{RESET} {colour}{level:<7}{RESET} {event} {extras}".rstrip()


async def pump(name: str, stream: asyncio.StreamReader) -> None:
    prefix = f"{COLOURS[name]}{name:>12}{RESET} │ "
    while line := await stream.readline():
        say(prefix + readable(line.decode(errors="replace").rstrip()))


def ready(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


async def wait_ready(ports: list[str], attempts: int = 240) -> bool:
    for _ in range(attempts):
        if all(await asyncio.gather(*(asyncio.to_thread(ready, p) for p in ports))):
            return True
        await asyncio.sleep(0.5)
    return False


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervised:
    """One service: started, restarted whenever it exits until the supervisor stops, then
    stopped gracefully (SIGTERM, SIGKILL after STOP_GRACE_S)."""

    def __init__(self, name: str, env: dict[str, str], stop: asyncio.Event) -> None:
        self.name = name
        self.env = service_environment(name, env)
        self.port = env[f"{name.upper()}_HTTP_PORT"]
        self.stop = stop
        self.restarts = 0

    async def _spawn(self) -> asyncio.subprocess.Process:
        # start_new_session: Ctrl-C reaches only this supervisor, which then stops the services
        # in order (SIGTERM → graceful shutdown) instead of all of them at once.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{self.name}",
            cwd=REPO,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        supervisor_says(f"{self.name} started (pid {proc.pid})")
        return proc

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        def signal_group(sig: signal.Signals) -> None:
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                os.killpg(proc.pid, sig)  # its own session: the group is the service alone

        if proc.returncode is None:
            signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            supervisor_says(f"{self.name} did not stop in {STOP_GRACE_S:.0f} s; killing it", RED)
            signal_group(signal.SIGKILL)
            await proc.wait()

    async def _announce_when_ready_again(self, proc: asyncio.subprocess.Process) -> None:
        if await wait_ready([self.port]) and proc.returncode is None:
            supervisor_says(f"{self.name} is ready again (pid {proc.pid})")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self.stop.is_set():
            proc = await self._spawn()
            started = loop.time()
            assert proc.stdout is not None
            output = asyncio.create_task(pump(self.name, proc.stdout))
            watch = (
                asyncio.create_task(self._announce_when_ready_again(proc))
                if self.restarts
                else None
            )
            exited = asyncio.create_task(proc.wait())
            stopping = asyncio.create_task(self.stop.wait())
            await asyncio.wait([exited, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if watch is not None:
                watch.cancel()
            if self.stop.is_set():
                await self._terminate(proc)
                await output
                return
            await output  # the last lines of a crashed service say why
            assert proc.returncode is not None
            failures = 0 if loop.time() - started >= STABLE_S else failures
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            failures += 1
            supervisor_says(
                f"{self.name} exited ({exit_reason(proc.returncode)}); restarting it in "
                f"{delay:g} s — the other services keep running",
                RED,
            )
            try:
                await asyncio.wait_for(self.stop.wait(), delay)
            except TimeoutError:
                self.restarts += 1


async def announce_when_ready(env: dict[str, str], mail: str) -> None:
    ports = {s: env[f"{s.upper()}_HTTP_PORT"] for s in SERVICES}
    if not await wait_ready(list(ports.values())):
        say(f"{RED}services not ready after 2 minutes; see the logs above{RESET}")
        return
    lines = [
        "",
        "Referral Exchange is running. Ctrl-C stops everything.",
        f"  Kafka bootstrap   {env['REFEX_KAFKA_BOOTSTRAP_SERVERS']} (SASL_SSL)",
        f"  PostgreSQL        127.0.0.1:{env['REFEX_PG_PORT']} (TLS; one database per service)",
        f"  TLS CA            {env.get('REFEX_KAFKA_CA_FILE', '?')} (give it to Kafka clients)",
    ]
    for service, port in ports.items():
        lines.append(
            f"  {service:<17} http://127.0.0.1:{port}/health/ready   "
            f"docs: http://127.0.0.1:{port}/docs/"
            + ("openapi.json" if service == "gateway" else "asyncapi")
        )
    if "evidence" in ports:
        lines.append(
            f"  dashboard         http://127.0.0.1:{ports['evidence']}/dashboard/   "
            "(accounts: refex evidence add-user, see the README)"
        )
    if "gateway" in ports:
        lines.append(
            f"  console           http://127.0.0.1:{ports['gateway']}/   (users: refex platform "
            "add-agency-user; API: /v1, OpenAPI: /docs/openapi.json)"
        )
    lines.append(f"  e-mail            {mail}")
    lines.append(f"  operator shell    set -a; source {LOCAL / 'operator.env'}; set +a")
    lines.append("  try: make demo   (in another terminal)")
    say("\n".join(lines) + "\n")


async def supervise() -> int:
    env = load_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    sink: asyncio.Server | None = None
    if os.environ.get("NOTIFICATION_SMTP_HOST"):
        mail = f"relay {env['NOTIFICATION_SMTP_HOST']}:{env.get('NOTIFICATION_SMTP_PORT', 25)}"
    else:
        port = int(os.environ.get("REFEX_SMTP_PORT", "18025"))
        try:
            sink = await start_mail_sink(
                "127.0.0.1",
                port,
                MAIL_DIR,
                lambda path: supervisor_says(f"e-mail saved to {path}"),
            )
        except OSError as exc:
            say(
                f"{RED}cannot start the SMTP sink on 127.0.0.1:{port} ({exc.strerror}); free "
                f"the port or set REFEX_SMTP_PORT{RESET}"
            )
            return 1
        env |= {"NOTIFICATION_SMTP_HOST": "127.0.0.1", "NOTIFICATION_SMTP_PORT": str(port)}
        mail = f"smtp://127.0.0.1:{port} → each message saved as a .eml file in {MAIL_DIR}/"

    services = [Supervised(s, env, stop) for s in SERVICES]
    running = [asyncio.create_task(s.run()) for s in services]
    announcer = asyncio.create_task(announce_when_ready(env, mail))
    await stop.wait()
    announcer.cancel()
    say("stopping services…")
    await asyncio.gather(*running)
    if sink is not None:
        sink.close()
        await sink.wait_closed()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running on exit"
    )
    args = parser.parse_args()
    code = 1
    try:
        code = asyncio.run(supervise())
    finally:
        if not args.keep_infra:
            say("stopping Kafka and PostgreSQL…")
            # Ignore a second Ctrl-C (or the terminal closing) while the infrastructure stops.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            # Captured, then relayed: written straight to a closed terminal or pipe, the script's
            # output would kill it (SIGPIPE) before it stopped anything.
            down = subprocess.run(
                [str(REPO / "deploy/local/down.sh")], check=False, capture_output=True, text=True
            )
            say((down.stdout + down.stderr).rstrip())
    return code


if __name__ == "__main__":
    sys.exit(main())
