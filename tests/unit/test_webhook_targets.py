"""The SSRF guard shared by `add-webhook` and every delivery attempt, and the closed vocabulary
of failure reasons on notification.deliveries.v1."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Collection

import aiosmtplib
import httpx
import pytest

from services.notification import email, webhooks
from services.notification.targets import (
    ALLOW_SETTING,
    Resolver,
    address_kind,
    target_refusal,
)
from shared.contracts.events import DeliveryError

PUBLIC = ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")


def resolver(table: dict[str, Collection[str]]) -> Resolver:
    """A DNS of our own: these names, these addresses; any other name does not resolve."""

    def resolve(host: str) -> Collection[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.3.4", "private"),
        ("192.168.1.20", "private"),
        ("fd12:3456::1", "private"),  # IPv6 unique local
        ("169.254.169.254", "link-local"),  # cloud metadata endpoints live here
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),  # as getaddrinfo writes a scoped address
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6 reaches the IPv4 address
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "reserved"),  # carrier-grade NAT: not private, not public either
        ("224.0.0.1", "reserved"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_non_public_addresses_are_named(address: str, kind: str) -> None:
    assert address_kind(address) == kind


@pytest.mark.parametrize("address", [*PUBLIC, "8.8.8.8", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert address_kind(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:9000/hooks",  # a host name, resolved as the delivery resolves it
    ],
)
def test_private_targets_are_refused_with_the_setting_named(url: str) -> None:
    refusal = target_refusal(url, allow_private=False)
    assert refusal is not None
    assert refusal.error is DeliveryError.TARGET_NOT_ALLOWED
    assert f"{ALLOW_SETTING}=true" in refusal.reason


def test_a_host_name_resolving_to_a_private_address_is_refused() -> None:
    resolve = resolver({"hooks.ngo.example": {"10.20.30.40"}})
    refusal = target_refusal("https://hooks.ngo.example/in", allow_private=False, resolve=resolve)
    assert refusal is not None and refusal.error is DeliveryError.TARGET_NOT_ALLOWED
    assert "resolves to 10.20.30.40, a private address" in refusal.reason


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    resolve = resolver({"hooks.ngo.example": {*PUBLIC, "fe80::7"}})
    refusal = target_refusal("https://hooks.ngo.example/in", allow_private=False, resolve=resolve)
    assert refusal is not None and "fe80::7, a link-local address" in refusal.reason


def test_a_public_host_is_allowed_over_https_and_http() -> None:
    resolve = resolver({"hooks.ngo.example": set(PUBLIC)})
    for url in ("https://hooks.ngo.example/in", "http://hooks.ngo.example:8443/in"):
        assert target_refusal(url, allow_private=False, resolve=resolve) is None


def test_a_host_that_does_not_resolve_is_refused_as_such() -> None:
    for resolve in (resolver({}), resolver({"gone.example": ()})):
        refusal = target_refusal("https://gone.example/in", allow_private=False, resolve=resolve)
        assert refusal is not None and refusal.error is DeliveryError.DNS_FAILED


def test_the_allow_setting_admits_private_targets_without_a_lookup() -> None:
    def no_lookup(host: str) -> Collection[str]:
        raise AssertionError("no lookup when private targets are allowed")

    for url in ("http://127.0.0.1:9000/hooks", "http://[::1]/x", "http://internal.lan/x"):
        assert target_refusal(url, allow_private=True, resolve=no_lookup) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "file:///etc/passwd",
        "http:///x",
        "http://[::1",
        "http://h.example:99999/",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_what_is_no_valid_http_url_is_refused_even_when_private_is_allowed(
    url: str, allow_private: bool
) -> None:
    refusal = target_refusal(url, allow_private=allow_private, resolve=resolver({}))
    assert refusal is not None and refusal.error is DeliveryError.TARGET_NOT_ALLOWED
    assert ALLOW_SETTING not in refusal.reason  # the setting would not help


def _caused(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (httpx.ConnectTimeout("t"), DeliveryError.TIMEOUT),
        (httpx.ReadTimeout("t"), DeliveryError.TIMEOUT),
        (httpx.ConnectError("refused"), DeliveryError.CONNECTION_FAILED),
        (httpx.ReadError("reset"), DeliveryError.CONNECTION_FAILED),
        (httpx.RemoteProtocolError("bad"), DeliveryError.PROTOCOL_ERROR),
        (
            _caused(httpx.ConnectError("x"), ssl.SSLCertVerificationError("bad cert")),
            DeliveryError.TLS_ERROR,
        ),
        (_caused(httpx.ConnectError("x"), socket.gaierror(-2, "x")), DeliveryError.DNS_FAILED),
        (httpx.InvalidURL("x"), DeliveryError.TARGET_NOT_ALLOWED),
        (httpx.TooManyRedirects("x"), DeliveryError.REQUEST_FAILED),
    ],
)
def test_webhook_failures_map_to_the_closed_vocabulary(
    exc: httpx.HTTPError, error: DeliveryError
) -> None:
    assert webhooks.failure_of(exc) is error


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (aiosmtplib.SMTPReadTimeoutError("t"), DeliveryError.TIMEOUT),
        (aiosmtplib.SMTPConnectTimeoutError("t"), DeliveryError.TIMEOUT),
        (aiosmtplib.SMTPConnectError("refused"), DeliveryError.CONNECTION_FAILED),
        (aiosmtplib.SMTPServerDisconnected("gone"), DeliveryError.CONNECTION_FAILED),
        (ConnectionRefusedError(), DeliveryError.CONNECTION_FAILED),
        (aiosmtplib.SMTPAuthenticationError(535, "no"), DeliveryError.SMTP_AUTH_FAILED),
        (aiosmtplib.SMTPSenderRefused(550, "no", "a@b.example"), DeliveryError.SMTP_REJECTED),
        (aiosmtplib.SMTPRecipientsRefused([]), DeliveryError.SMTP_REJECTED),
        (aiosmtplib.SMTPDataError(554, "no"), DeliveryError.SMTP_REJECTED),
        (aiosmtplib.SMTPConnectResponseError(421, "busy"), DeliveryError.PROTOCOL_ERROR),
        (aiosmtplib.SMTPNotSupported("no STARTTLS"), DeliveryError.PROTOCOL_ERROR),
        (
            _caused(aiosmtplib.SMTPConnectError("x"), ssl.SSLError("handshake")),
            DeliveryError.TLS_ERROR,
        ),
        (socket.gaierror(-2, "x"), DeliveryError.DNS_FAILED),
    ],
)
def test_email_failures_map_to_the_closed_vocabulary(
    exc: aiosmtplib.SMTPException | OSError, error: DeliveryError
) -> None:
    assert email.failure_of(exc) is error
