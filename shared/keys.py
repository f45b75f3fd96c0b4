"""32-byte symmetric keys given as base64 in the environment (intake's master and duplicate keys,
notification's secrets key): one decoding rule, and one way to read an *old* key during a
rotation from a variable named on the command line, so keys never appear in shell history."""

from __future__ import annotations

import base64
import binascii
import os

from pydantic import SecretStr

KEY_BYTES = 32


def decode_key(value: SecretStr) -> bytes:
    """A 32-byte key given as standard base64 (``head -c 32 /dev/urandom | base64``).
    Error messages say what is wrong, never the value."""
    try:
        raw = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be standard base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"must decode to exactly {KEY_BYTES} bytes")
    return raw


def key_from_environment(variable: str) -> bytes:
    """The key in environment variable ``variable``; ValueError (naming the variable only)
    when it is unset or malformed."""
    value = os.environ.get(variable)
    if not value:
        raise ValueError(f"{variable} is not set")
    try:
        return decode_key(SecretStr(value))
    except ValueError as exc:
        raise ValueError(f"{variable} {exc}") from None
