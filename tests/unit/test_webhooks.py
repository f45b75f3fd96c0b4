"""Webhook signing (checked with the independent standardwebhooks library), retry schedule.
The SSRF guard: test_webhook_targets.py."""

import json

from standardwebhooks import Webhook

from services.notification.secret_store import new_secret as new_sealed_secret
from services.notification.webhooks import DeliveryPolicy, sign


def new_secret() -> str:
    return new_sealed_secret().get_secret_value()


def test_signature_verifies_with_standard_webhooks() -> None:
    secret, body = new_secret(), json.dumps({"type": "x"}).encode()
    import time

    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, "msg_1", timestamp, body),
    }
    assert Webhook(secret).verify(body, headers) == {"type": "x"}


def test_both_signatures_during_a_rotation_each_verify() -> None:
    import time

    old, new, body, ts = new_secret(), new_secret(), b"{}", int(time.time())
    header = f"{sign(old, 'msg_2', ts, body)} {sign(new, 'msg_2', ts, body)}"
    for secret in (old, new):
        Webhook(secret).verify(
            body, {"webhook-id": "msg_2", "webhook-timestamp": str(ts), "webhook-signature": header}
        )


def test_schedule_has_jitter_and_an_end() -> None:
    policy = DeliveryPolicy(schedule_s=(5.0, 300.0))
    for attempt, base in ((1, 5.0), (2, 300.0)):
        delays = [policy.next_delay(attempt) or 0 for _ in range(200)]
        assert all(0.9 * base <= d <= 1.1 * base for d in delays)  # within ±10 %
        # Spread over the band, so that retries to many receivers do not fall together (zero
        # jitter fails this): 200 uniform samples all above 0.98 * base has chance 0.6^200.
        assert len(set(delays)) > 150
        assert min(delays) < 0.98 * base and max(delays) > 1.02 * base
    assert policy.next_delay(3) is None


def test_the_local_receiver_checks_signatures_as_a_receiver_must() -> None:
    import time

    from ops.webhook_receiver import verify

    secret, other, body, now = new_secret(), new_secret(), b'{"type":"x"}', int(time.time())

    def headers(signature: str, timestamp: int = now) -> dict[str, str]:
        return {
            "webhook-id": "msg_3",
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }

    good = sign(secret, "msg_3", now, body)
    assert verify(secret, headers(good), body, now)
    assert verify(secret, headers(f"{sign(other, 'msg_3', now, body)} {good}"), body, now)
    assert not verify(secret, headers(good), body + b" ", now)  # body changed
    assert not verify(other, headers(good), body, now)  # another secret
    stale = sign(secret, "msg_3", now - 600, body)
    assert not verify(secret, headers(stale, now - 600), body, now)  # a replay
    assert not verify(secret, headers(good, now + 1), body, now)  # timestamp changed
    assert not verify(secret, {"webhook-signature": good}, body, now)
