"""Master-key rotation: re-wrap every case's data key under the configured master key.

Only the small wrapped data keys change; the personal data ciphertext stays as it is (envelope
encryption). The command is idempotent: a key that already opens with the current master key is
left alone, so an interrupted rotation is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from nacl.exceptions import CryptoError

from shared.db import DbConnection
from shared.unit import open_unit

from .crypto import unwrap_key, wrap_key
from .handlers import SOURCE
from .store import IntakeStore


class UnknownMasterKey(Exception):
    """A wrapped data key opens with neither the current nor any given old master key."""


@dataclass(frozen=True, slots=True)
class RewrapResult:
    rewrapped: int
    already_current: int


def _open(wrapped: bytes, keys: list[bytes]) -> tuple[bytes, int] | None:
    """The data key and the index of the master key that opened it."""
    for index, key in enumerate(keys):
        try:
            return unwrap_key(key, wrapped), index
        except CryptoError:
            continue
    return None


async def rewrap_data_keys(
    connection: Callable[[], AbstractAsyncContextManager[DbConnection]],
    current: bytes,
    old_keys: list[bytes],
    *,
    batch: int = 500,
) -> RewrapResult:
    """Re-wrap under ``current`` every live data key that opens with one of ``old_keys``.
    Each batch is its own unit of work on a connection from ``connection()``; rows of erased
    cases (no key left) are skipped."""
    rewrapped = current_count = 0
    last = None
    while True:
        async with open_unit(connection(), IntakeStore, SOURCE) as unit:
            keys = await unit.stores.wrapped_keys_after(last, batch)
            if not keys:
                return RewrapResult(rewrapped, current_count)
            for case_id, wrapped in keys:
                opened = _open(wrapped, [current, *old_keys])
                if opened is None:
                    raise UnknownMasterKey(f"the data key of case {case_id}")
                data_key, index = opened
                if index == 0:
                    current_count += 1
                    continue
                await unit.stores.set_wrapped_key(case_id, wrap_key(current, data_key))
                rewrapped += 1
        last = keys[-1][0]
