"""Which webhook URLs may be called (the SSRF guard).

One decision, :func:`target_refusal`, serves both ``refex notification add-webhook`` (which
refuses such a URL at once, with the reason) and every delivery attempt (a host name may resolve
elsewhere later), so registration and delivery never disagree. Without the allow setting a URL
must be http(s) and every address its host resolves to must be public: an agency's URL must not
reach the services next to ours (loopback, the private network, a cloud's link-local metadata
endpoint). The allow setting is for local development and tests; production refuses it
(:mod:`.settings`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.contracts.events import DeliveryError

ALLOW_SETTING = "NOTIFICATION_ALLOW_PRIVATE_WEBHOOK_TARGETS"

Resolver = Callable[[str], Collection[str]]  # host name → its addresses; OSError if none


@dataclass(frozen=True, slots=True)
class Refusal:
    error: DeliveryError  # what notification.deliveries.v1 says
    reason: str  # for the operator's terminal and the service log, never for a topic


def resolve_host(host: str) -> set[str]:
    """Every address the host resolves to, as the HTTP client would look it up."""
    return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}


def address_kind(address: str) -> str | None:
    """What makes an address unfit for a webhook (``"loopback"``, ...), or None if public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    if ip.is_unspecified:
        return "unspecified"  # 0.0.0.0 and :: reach this very host
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast or ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"  # e.g. 100.64.0.0/10 (carrier-grade NAT): not private, not public
    return None


def target_refusal(
    url: str, allow_private: bool, resolve: Resolver = resolve_host
) -> Refusal | None:
    """Why ``url`` must not be called, or None if it may be."""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:  # that, or an unclosed [IPv6 literal
        scheme, host = "", None
    if scheme not in ("https", "http") or not host:
        return Refusal(
            DeliveryError.TARGET_NOT_ALLOWED, "not an http(s) URL with a host (and a valid port)"
        )
    if allow_private:
        return None
    try:
        addresses = resolve(host)
    except (OSError, UnicodeError):  # gaierror; an over-long label fails IDNA encoding
        addresses = ()
    if not addresses:
        return Refusal(DeliveryError.DNS_FAILED, f"the host {host} does not resolve")
    for address in sorted(addresses):
        kind = address_kind(address)
        if kind is not None:
            a_kind = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address"
            where = (
                f"{host} is {a_kind}"
                if host == address
                else (f"the host {host} resolves to {address}, {a_kind}")
            )
            return Refusal(
                DeliveryError.TARGET_NOT_ALLOWED,
                f"{where}; webhooks to loopback, private, link-local or reserved addresses are "
                f"sent only with {ALLOW_SETTING}=true (local development and tests; production "
                f"refuses it)",
            )
    return None
