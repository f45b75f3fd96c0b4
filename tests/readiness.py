"""Whether a service process answers its readiness probe (for the tests that start services)."""

from __future__ import annotations

import urllib.request


def service_ready(port: int) -> bool:
    """True when the service on this local port answers 200 on ``/health/ready``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
