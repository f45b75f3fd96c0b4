"""Intake's submission keys published on ``intake.keys.v1`` (issue 22, decision 32): at every
start, what the settings changed since the last one (sealing.key_changes decides), through the
outbox like every event intake writes. Public keys only; a compacted topic keeps the latest
record of each key, which every agency may read with its own principal."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

from shared.contracts import events as ev
from shared.contracts import topics
from shared.logging import get_logger

from .handlers import IntakeUnit
from .sealing import SubmissionKeys, key_changes

log = get_logger(__name__)

Units = Callable[[], AbstractAsyncContextManager[IntakeUnit]]


async def publish_submission_keys(units: Units, keys: SubmissionKeys) -> int:
    """Publish what changed about the keys; return how many records were written."""
    async with units() as unit:
        store = unit.stores.submission_keys
        changes = key_changes(keys.published(), await store.published())
        await store.record(changes)
        now = datetime.now(UTC)
        for key in changes:
            unit.emit(
                ev.SUBMISSION_KEY_PUBLISHED,
                ev.SubmissionKey(
                    key_sha256=key.key_sha256,
                    public_key=key.public_key,
                    status=key.status,
                    published_at=now,
                ),
                topic=topics.INTAKE_KEYS,
                subject=key.key_sha256,
            )
    current = next(
        (k.key_sha256 for k in keys.published() if k.status is ev.SubmissionKeyStatus.CURRENT), None
    )
    log.info(
        "submission_keys_published",
        current_key_sha256=current,  # a public key's fingerprint: nothing secret
        changes={k.key_sha256[:16]: k.status.value for k in changes},
    )
    return len(changes)
