"""Webhook signing (checked with the independent standardwebhooks library), SSRF guard, retry
schedule."""

import json

from standardwebhooks import Webhook

from services.notification.secret_store import new_secret as new_sealed_secret
from services.notification.webhooks import DeliveryPolicy, sign, target_refused


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


def test_private_targets_are_refused_unless_allowed() -> None:
    for url in (
        "http://127.0.0.1:8080/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/x",
        "http://[::1]/x",
        "ftp://example.org/x",
    ):
        assert target_refused(url, allow_private=False) is not None, url
    assert target_refused("http://127.0.0.1:8080/x", allow_private=True) is None


def test_schedule_has_jitter_and_an_end() -> None:
    policy = DeliveryPolicy(schedule_s=(5.0, 300.0))
    assert 4.5 <= (policy.next_delay(1) or 0) <= 5.5
    assert 270 <= (policy.next_delay(2) or 0) <= 330
    assert policy.next_delay(3) is None
