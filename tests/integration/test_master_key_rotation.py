"""Rotating intake's master key on the real PostgreSQL: every live data key is re-wrapped, the
personal data still opens, erased cases stay erased, and a second run changes nothing."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import nacl.utils
import pytest

from services.intake.crypto import KeyDestroyed
from services.intake.key_rotation import UnknownMasterKey, rewrap_data_keys
from services.intake.store import IntakeStore
from shared.db.migrations import discover, migrate
from tests import factories as f

INTAKE_MIGRATIONS = Path(__file__).resolve().parents[2] / "services/intake/migrations"


async def test_rotation_rewraps_every_live_key(scratch_pool: asyncpg.Pool) -> None:
    old, new, stranger = (nacl.utils.random(32) for _ in range(3))
    async with scratch_pool.acquire() as conn:
        await migrate(conn, discover("intake", INTAKE_MIGRATIONS))
        cases = IntakeStore(conn)
        submissions = [f.submission(f.unique("iom")) for _ in range(5)]
        rows = [(await cases.create_case(s, old, "k1", []))[0] for s in submissions]
        await cases.erase(rows[0].case_id)

        first = await rewrap_data_keys(scratch_pool.acquire, new, [old], batch=2)
        assert (first.rewrapped, first.already_current) == (4, 0)
        for row, sent in zip(rows[1:], submissions[1:], strict=True):
            assert await cases.read_personal(row.case_id, new) == sent.personal
            with pytest.raises(Exception):  # noqa: B017 - any failure: the old key is gone
                await cases.read_personal(row.case_id, old)
        with pytest.raises(KeyDestroyed):
            await cases.read_personal(rows[0].case_id, new)

        again = await rewrap_data_keys(scratch_pool.acquire, new, [old])
        assert (again.rewrapped, again.already_current) == (0, 4)

        with pytest.raises(UnknownMasterKey):
            await rewrap_data_keys(scratch_pool.acquire, stranger, [nacl.utils.random(32)])
