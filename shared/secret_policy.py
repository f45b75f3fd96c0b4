"""What counts as a usable secret in production mode.

A service started with ``<SERVICE>_ENVIRONMENT=production`` refuses to start when a secret is
missing, is a placeholder from ``.env.example`` (``change-me…``, an all-zero key), is a well-known
default, or is too short to resist guessing. Development (the default) accepts anything, so tests
and ``make run`` need no ceremony; compose runs in production mode.
"""

from __future__ import annotations

import base64
import binascii

MIN_PASSWORD_CHARS = 16
WELL_KNOWN = frozenset(
    {"password", "secret", "postgres", "admin", "changeme", "change-me", "default", "kafka"}
)


def _decoded_key(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def weakness(value: str | None, *, is_key: bool = False) -> str | None:
    """Why ``value`` is not acceptable as a production secret, or None when it is."""
    if not value:
        return "is missing"
    lowered = value.lower()
    if "change-me" in lowered or "changeme" in lowered or lowered in WELL_KNOWN:
        return "is a placeholder or a well-known default"
    if is_key:
        raw = _decoded_key(value)
        if raw is not None and len(set(raw)) <= 1:
            return "is a placeholder key (every byte the same)"
        return None  # length and encoding are checked by the setting's own validator
    if len(value) < MIN_PASSWORD_CHARS:
        return f"is shorter than {MIN_PASSWORD_CHARS} characters"
    if len(set(value)) <= 2:
        return "is trivially guessable"
    return None
