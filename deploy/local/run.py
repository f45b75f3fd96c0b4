"""Foreground supervisor for `make run`: starts the three services against the local Kafka and
PostgreSQL (already up), interleaves their logs readably, prints the URLs once all are ready,
and on Ctrl-C / SIGTERM stops the services, then the infrastructure, leaving no process behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from shared.settings import service_environment

REPO = Path(__file__).resolve().parents[2]
LOCAL = Path(os.environ.get("REFEX_LOCAL_DIR", REPO / ".local"))
SERVICES = ("intake", "referral", "notification")
COLOURS = {"intake": "\033[36m", "referral": "\033[35m", "notification": "\033[33m"}
RESET, DIM, RED = "\033[0m", "\033[2m", "\033[31m"
STOP_GRACE_S = 30.0


def say(text: str) -> None:
    """Print, but never let a closed terminal or pipe stop the shutdown sequence."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except OSError:
        pass


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
            env[key] = value
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


async def announce_when_ready(env: dict[str, str]) -> None:
    ports = {s: env[f"{s.upper()}_HTTP_PORT"] for s in SERVICES}
    for _ in range(240):
        if all(await asyncio.gather(*(asyncio.to_thread(ready, p) for p in ports.values()))):
            break
        await asyncio.sleep(0.5)
    else:
        say(f"{RED}services not ready after 2 minutes; see the logs above{RESET}")
        return
    lines = [
        "",
        "Referral Exchange is running. Ctrl-C stops everything.",
        f"  Kafka bootstrap   {env['REFEX_KAFKA_BOOTSTRAP_SERVERS']}",
        f"  PostgreSQL        127.0.0.1:{env['REFEX_PG_PORT']} (one database per service)",
    ]
    for service, port in ports.items():
        lines.append(
            f"  {service:<17} http://127.0.0.1:{port}/health/ready   "
            f"docs: http://127.0.0.1:{port}/docs/asyncapi"
        )
    lines.append("  try: make demo   (in another terminal)")
    say("\n".join(lines) + "\n")


async def supervise() -> int:
    env = load_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)

    procs: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    for service in SERVICES:
        # start_new_session: Ctrl-C reaches only this supervisor, which then stops the services
        # in order (SIGTERM → graceful shutdown) instead of all of them at once.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{service}",
            cwd=REPO,
            env=service_environment(service, env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        procs[service] = proc
        assert proc.stdout is not None
        pumps.append(asyncio.create_task(pump(service, proc.stdout)))
    announcer = asyncio.create_task(announce_when_ready(env))

    exited = [asyncio.create_task(p.wait()) for p in procs.values()]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper, *exited], return_when=asyncio.FIRST_COMPLETED)
    crashed = [s for s, p in procs.items() if p.returncode is not None]
    if crashed:
        say(f"{RED}{', '.join(crashed)} exited; stopping everything{RESET}")
    announcer.cancel()

    say("stopping services…")
    for proc in procs.values():
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs.values())), STOP_GRACE_S)
    except TimeoutError:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
        await asyncio.gather(*(p.wait() for p in procs.values()))
    await asyncio.gather(*pumps, return_exceptions=True)
    return 1 if crashed else 0


def main() -> int:
    code = 1
    try:
        code = asyncio.run(supervise())
    finally:
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
