"""Master-key rotation: re-wrap every case's data key under the configured master key.

Only the small wrapped data keys change; the personal data ciphertext stays as it is (envelope
encryption). The command is idempotent: a key that already opens with the current master key is
left alone, so an interrupted rotation is finished by running it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from nacl.exceptions import CryptoError

from shared.db import DbConnection

from .crypto import unwrap_key, wrap_key


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
    conn: DbConnection, current: bytes, old_keys: list[bytes], *, batch: int = 500
) -> RewrapResult:
    """Re-wrap under ``current`` every live data key that opens with one of ``old_keys``.
    Each batch is its own transaction; rows of erased cases (no key left) are skipped."""
    rewrapped = current_count = 0
    last = None
    while True:
        rows = await conn.fetch(
            """SELECT case_id, wrapped_key FROM case_keys
               WHERE wrapped_key IS NOT NULL AND ($1::uuid IS NULL OR case_id > $1)
               ORDER BY case_id LIMIT $2""",
            last,
            batch,
        )
        if not rows:
            return RewrapResult(rewrapped, current_count)
        async with conn.transaction():
            for row in rows:
                opened = _open(bytes(row["wrapped_key"]), [current, *old_keys])
                if opened is None:
                    raise UnknownMasterKey(f"the data key of case {row['case_id']}")
                data_key, index = opened
                if index == 0:
                    current_count += 1
                    continue
                await conn.execute(
                    "UPDATE case_keys SET wrapped_key = $2 WHERE case_id = $1",
                    row["case_id"],
                    wrap_key(current, data_key),
                )
                rewrapped += 1
        last = rows[-1]["case_id"]
