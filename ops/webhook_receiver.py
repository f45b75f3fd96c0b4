"""``refex demo receive-webhooks``: a tiny webhook receiver on loopback, for local development.

It prints one line per delivery (webhook-id, type, subject, whether the signature holds) and
answers 204, or 401 to a signature that does not verify (notification then retries, and reports
``http_error`` on notification.deliveries.v1). The check is written out here, independently of
the notification's signer, as a receiver would write it (Standard Webhooks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated

import typer

TOLERANCE_S = 300  # a signature older (or newer) than this is refused: no replays


def verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> bool:
    """Whether any ``v1,`` signature in ``webhook-signature`` is the HMAC-SHA256 of
    ``<webhook-id>.<webhook-timestamp>.<body>`` under the secret, and the timestamp is fresh."""
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        timestamp = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > TOLERANCE_S:
        return False
    signed = f"{headers.get('webhook-id', '')}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = headers.get("webhook-signature", "").split()
    return any(
        hmac.compare_digest(s.removeprefix("v1,"), expected) for s in offered if s[:3] == "v1,"
    )


def _handler(secret: str | None) -> type[BaseHTTPRequestHandler]:
    class Receive(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            valid = None if secret is None else verify(secret, headers, body, time.time())
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
            event = event if isinstance(event, dict) else {}
            signature = {None: "not checked", True: "ok", False: "INVALID"}[valid]
            print(
                f"{time.strftime('%H:%M:%S')} POST {self.path} "
                f"webhook-id={headers.get('webhook-id', '-')} type={event.get('type', '-')} "
                f"subject={event.get('subject', '-')} signature={signature}",
                flush=True,
            )
            self.send_response(401 if valid is False else 204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # the line above says it all

    return Receive


def receive_webhooks(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 to listen on.")] = 9000,
    secret_env: Annotated[
        str,
        typer.Option(
            metavar="VAR",
            help="Environment variable holding the whsec_ secret that add-webhook printed "
            "(a variable, not an option: the secret stays out of the process list).",
        ),
    ] = "REFEX_WEBHOOK_SECRET",
) -> None:
    """Receive webhooks on loopback and print each one (local development; stop with Ctrl-C)."""
    secret = os.environ.get(secret_env) or None
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(secret))
    checked = "checking signatures" if secret else f"NOT checking signatures ({secret_env} unset)"
    print(f"receiving webhooks on http://127.0.0.1:{port}/ — {checked}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
