"""Applies :mod:`ops.access_policy` to the broker: SCRAM credentials and ACLs, and waits until
a new credential logs in or a removed one is refused.

aiokafka has no admin calls for ACLs or SCRAM credentials, so this (operator-only) module uses
confluent-kafka's AdminClient (docs/decisions/0011-kafka-authentication.md). Every call is
idempotent: creating an ACL or upserting a credential that already exists changes nothing, so
provisioning can run at every start-up.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, cast

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from shared.kafka.connection import KafkaConnection

from .access_policy import (
    AclRule,
    Operation,
    Pattern,
    Resource,
    agency_member_rules,
    agency_member_user,
    agency_rules,
    agency_user,
)

SCRAM_ITERATIONS = 8192
TIMEOUT_S = 30.0
LOGIN_RETRY_S = 0.2

_RESOURCE = {Resource.TOPIC: ResourceType.TOPIC, Resource.GROUP: ResourceType.GROUP}
_PATTERN = {
    Pattern.LITERAL: ResourcePatternType.LITERAL,
    Pattern.PREFIXED: ResourcePatternType.PREFIXED,
}
_OPERATION = {
    Operation.READ: AclOperation.READ,
    Operation.WRITE: AclOperation.WRITE,
    Operation.DELETE: AclOperation.DELETE,
}


class AccessError(RuntimeError):
    """The broker refused or failed a credential or ACL change."""


def new_password() -> str:
    # URL-safe base64 has no comma or '=', which SCRAM tooling and JAAS lines would trip over.
    return secrets.token_urlsafe(32)


def _wait(futures: Iterable[Future[Any]], what: str) -> None:
    errors = []
    for future in futures:
        try:
            future.result(timeout=TIMEOUT_S)
        except KafkaException as exc:
            errors.append(str(exc.args[0]) if exc.args else str(exc))
    if errors:
        raise AccessError(f"{what} failed: " + "; ".join(errors))


def _fields(rule: AclRule) -> tuple[Any, ...]:
    return (
        _RESOURCE[rule.resource],
        rule.name,
        _PATTERN[rule.pattern],
        rule.principal,
        "*",  # from any host
        _OPERATION[rule.operation],
        AclPermissionType.ALLOW,
    )


def _binding(rule: AclRule) -> AclBinding:
    return AclBinding(*_fields(rule))


def _filter(rule: AclRule) -> AclBindingFilter:
    return AclBindingFilter(*_fields(rule))


def _any_acl_of(user: str | None) -> AclBindingFilter:
    # None matches anything; the stubs say str, librdkafka's binding accepts None.
    anything = cast(str, None)
    return AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        f"User:{user}" if user else anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


class KafkaAccess:
    """Credential and ACL changes through one admin connection (librdkafka answers through
    futures that fail once their client is gone, so the client lives as long as this object)."""

    def __init__(self, kafka: KafkaConnection) -> None:
        self._admin = AdminClient(dict(kafka.librdkafka_config()))

    def grant(self, rules: Iterable[AclRule]) -> int:
        """Create these ACLs (existing ones are kept as they are). Returns how many were asked."""
        bindings = [_binding(r) for r in rules]
        if bindings:
            _wait(self._admin.create_acls(bindings).values(), "creating ACLs")
        return len(bindings)

    def revoke_user(self, user: str) -> None:
        """Delete every ACL of ``user``: it takes effect on its very next request."""
        _wait(self._admin.delete_acls([_any_acl_of(user)]).values(), f"deleting ACLs of {user}")

    def revoke_rules(self, rules: Iterable[AclRule]) -> None:
        filters = [_filter(r) for r in rules]
        if filters:
            _wait(self._admin.delete_acls(filters).values(), "deleting ACLs")

    def acls_of(self, user: str | None = None) -> list[AclRule]:
        """The ACLs on the broker (of one user, or all) that this policy knows how to express."""
        try:
            found: list[AclBinding] = self._admin.describe_acls(_any_acl_of(user)).result(
                timeout=TIMEOUT_S
            )
        except KafkaException as exc:
            raise AccessError(f"listing ACLs failed: {exc}") from exc
        by_type = {v: k for k, v in _RESOURCE.items()}
        by_pattern = {v: k for k, v in _PATTERN.items()}
        by_op = {v: k for k, v in _OPERATION.items()}
        return sorted(
            AclRule(
                b.principal.removeprefix("User:"),
                by_type[b.restype],
                b.name,
                by_pattern[b.resource_pattern_type],
                by_op[b.operation],
            )
            for b in found
            if b.restype in by_type
            and b.resource_pattern_type in by_pattern
            and b.operation in by_op
            and b.permission_type == AclPermissionType.ALLOW
        )

    def set_password(self, user: str, password: str) -> None:
        """Create the user's SCRAM-SHA-512 credential or replace its password."""
        upsert = UserScramCredentialUpsertion(
            user,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
            password.encode(),
        )
        futures = self._admin.alter_user_scram_credentials([upsert]).values()
        _wait(futures, f"setting {user}'s password")

    def has_credential(self, user: str) -> bool:
        described = cast(
            dict[str, Future[Any]], self._admin.describe_user_scram_credentials([user])
        )
        try:
            return bool(described[user].result(timeout=TIMEOUT_S).scram_credential_infos)
        except KafkaException:
            return False  # RESOURCE_NOT_FOUND: no credential for this user

    def scram_users(self) -> list[str]:
        """Every user that has a SCRAM credential on the broker."""
        described = cast(Future[Any], self._admin.describe_user_scram_credentials())
        try:
            return sorted(cast(dict[str, Any], described.result(timeout=TIMEOUT_S)))
        except KafkaException as exc:
            raise AccessError(f"listing credentials failed: {exc}") from exc

    def delete_credential(self, user: str) -> None:
        deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
        futures = self._admin.alter_user_scram_credentials([deletion]).values()
        _wait(futures, f"deleting {user}'s credential")


def grant_agency(access: KafkaAccess, agency_id: str, password: str) -> None:
    """An agency's principal with this password, its ACLs and the services' ACLs on its
    topics: what registration does on the broker, topics aside."""
    access.set_password(agency_user(agency_id), password)
    access.grant(agency_rules(agency_id))


def grant_agency_member(access: KafkaAccess, agency_id: str, user: str, password: str) -> None:
    """A member's principal with this password (a new one, or a new password for an existing
    one) and the agency's own rights under its name."""
    access.set_password(agency_member_user(agency_id, user), password)
    access.grant(agency_member_rules(agency_id, user))


async def remove_principal(access: KafkaAccess, kafka: KafkaConnection, user: str) -> None:
    """Take ``user``'s rights, then its login, and return once the broker refuses both.

    ACLs go first: they are checked on every request, so from then on even a connection that is
    already open can do nothing. The credential cannot be watched on its own (we do not know the
    user's password), so it is first replaced by a throwaway one: once that logs in, the user's
    own password is refused; once the deletion refuses the throwaway one too, no password works.
    ``kafka`` is the operator's connection (its bootstrap servers are the ones checked)."""
    await asyncio.to_thread(access.revoke_user, user)
    await _wait_until_no_acls(access, user)
    throwaway = kafka.as_user(user, new_password())
    await asyncio.to_thread(access.set_password, user, throwaway.password or "")
    await wait_until_login_works(throwaway)
    await asyncio.to_thread(access.delete_credential, user)
    await wait_until_login_refused(throwaway)


async def _wait_until_no_acls(access: KafkaAccess, user: str, timeout_s: float = TIMEOUT_S) -> None:
    # A deletion travels through the metadata log to the broker's authoriser, which is also
    # what answers the listing.
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await asyncio.to_thread(access.acls_of, user):
        if asyncio.get_running_loop().time() > deadline:
            raise AccessError(f"the ACLs of {user} are still there after {timeout_s:.0f} s")
        await asyncio.sleep(LOGIN_RETRY_S)


LoginOutcome = BaseException | None
"""None when a login worked, else why it did not (SaslAuthenticationFailed: the broker refused)."""


async def _try_login(host: str, port: int, settings: dict[str, Any]) -> LoginOutcome:
    """One bare connection and one SASL login: an aiokafka client would log every refused try
    as an ERROR (SaslAuthenticationFailed), a burst of alarming lines for what is only a wait."""
    try:
        conn = await create_conn(host, port, client_id="refex-login-check", **settings)
    except (KafkaError, OSError) as exc:
        return exc
    conn.close()
    return None


async def _wait_for_login(
    kafka: KafkaConnection, timeout_s: float, until: Callable[[LoginOutcome], bool]
) -> tuple[str, LoginOutcome] | None:
    """Try ``kafka``'s login on each bootstrap broker in turn until ``until`` holds there.
    None once it held on all; else the broker where it did not within ``timeout_s`` and the
    last outcome there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    settings = kafka.client_kwargs()
    del settings["bootstrap_servers"]
    for server in kafka.servers:
        host, _, port = server.rpartition(":")
        while not until(outcome := await _try_login(host, int(port), settings)):
            if loop.time() > deadline:
                return server, outcome
            await asyncio.sleep(LOGIN_RETRY_S)
    return None


async def wait_until_login_refused(kafka: KafkaConnection, timeout_s: float = TIMEOUT_S) -> None:
    """Return once the broker refuses ``kafka``'s credential on every bootstrap broker: a
    deleted or changed credential leaves a broker's login cache shortly after the controller
    committed it. A broker that cannot be reached has refused nothing, so it is waited for.
    Raises AccessError if the login is not refused within ``timeout_s``."""
    failed = await _wait_for_login(
        kafka, timeout_s, lambda outcome: isinstance(outcome, SaslAuthenticationFailed)
    )
    if failed:
        raise AccessError(f"{kafka.username} is still not refused on {failed[0]}")


async def wait_until_login_works(kafka: KafkaConnection, timeout_s: float = TIMEOUT_S) -> None:
    """Return once ``kafka``'s credential logs in on every bootstrap broker.

    A new or changed SCRAM credential reaches a broker's login cache shortly after the
    controller committed it (seconds under load, as make chaos and make bench showed); a login
    in between is refused, and each refused try is waited out quietly. Raises
    KafkaConnectionError if it never works."""
    failed = await _wait_for_login(kafka, timeout_s, lambda outcome: outcome is None)
    if failed:
        server, exc = failed
        raise KafkaConnectionError(f"{kafka.username} cannot log in on {server}: {exc}") from exc
