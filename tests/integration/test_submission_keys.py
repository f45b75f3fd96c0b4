"""Intake's submission keys published from its settings on the real PostgreSQL (issue 22):
through the outbox, once per change, a rotation's keys as current, previous then retired, and
two instances starting at once publishing a change once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from services.intake.handlers import SOURCE
from services.intake.key_publication import publish_submission_keys
from services.intake.sealing import SubmissionKeys, key_sha256
from services.intake.store import IntakeStore
from shared.contracts import events as ev
from shared.contracts import topics
from shared.db.migrations import discover, migrate
from shared.unit import open_unit

pytestmark = pytest.mark.integration

INTAKE_MIGRATIONS = Path(__file__).resolve().parents[2] / "services/intake/migrations"
OLD, NEW = bytes(range(32)), bytes(range(5, 37))


def _sha(private: bytes) -> str:
    keys = SubmissionKeys.of(private)
    assert keys.current is not None
    return key_sha256(bytes(keys.current.public_key))


async def _outbox(pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    """(key, key_sha256, status) of each record queued for intake.keys.v1, in order."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT topic, key, headers, body FROM outbox ORDER BY id")
    out = []
    for row in rows:
        assert row["topic"] == topics.INTAKE_KEYS
        assert json.loads(row["headers"])["ce_type"] == ev.SUBMISSION_KEY_PUBLISHED
        key = ev.SubmissionKey.model_validate_json(bytes(row["body"]))
        out.append((row["key"], key.key_sha256, key.status.value))
    return out


async def test_a_rotation_is_published_once_per_change(scratch_pool: asyncpg.Pool) -> None:
    async with scratch_pool.acquire() as conn:
        await migrate(conn, discover("intake", INTAKE_MIGRATIONS))

    def units() -> object:
        return open_unit(scratch_pool.acquire(), IntakeStore, SOURCE)

    async def start(keys: SubmissionKeys) -> int:
        return await publish_submission_keys(units, keys)  # type: ignore[arg-type]

    old, new = _sha(OLD), _sha(NEW)
    # two instances starting at once with the first key: it is published once
    assert sorted(
        await asyncio.gather(start(SubmissionKeys.of(OLD)), start(SubmissionKeys.of(OLD)))
    ) == [0, 1]
    assert await _outbox(scratch_pool) == [(old, old, "current")]
    assert await start(SubmissionKeys.of(OLD)) == 0  # a restart
    # the rotation: a new current key, the old one still opened
    assert await start(SubmissionKeys.of(NEW, [OLD])) == 2
    # its end: the old key out of the settings
    assert await start(SubmissionKeys.of(NEW)) == 1
    assert await _outbox(scratch_pool) == [
        (old, old, "current"),
        (new, new, "current"),
        (old, old, "previous"),
        (old, old, "retired"),
    ]
    # without any key (sealing switched off), every key published before is retired
    assert await start(SubmissionKeys()) == 1
    assert (await _outbox(scratch_pool))[-1] == (new, new, "retired")
