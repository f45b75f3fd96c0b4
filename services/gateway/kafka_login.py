"""Checking a login against the broker: one bare connection and one SASL/SCRAM handshake, as
the principal. The gateway keeps no password list of its own; the broker's credentials are the
only truth, so a user an operator removed is refused at the very next check."""

from __future__ import annotations

import asyncio
from enum import StrEnum

from aiokafka.conn import create_conn
from aiokafka.errors import AuthenticationFailedError, KafkaError, SaslAuthenticationFailed

from shared.kafka.connection import KafkaConnection

LOGIN_TIMEOUT_S = 10.0


class LoginResult(StrEnum):
    OK = "ok"
    REFUSED = "refused"  # the broker refused the credential
    UNREACHABLE = "unreachable"  # no broker answered: say so, do not call the password wrong


async def check_login(connection: KafkaConnection) -> LoginResult:
    """Whether the broker accepts ``connection``'s credential (the first bootstrap server that
    answers decides)."""
    settings = connection.client_kwargs()
    del settings["bootstrap_servers"]
    for server in connection.servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(host, int(port), client_id="refex-gateway-login", **settings),
                LOGIN_TIMEOUT_S,
            )
        except (SaslAuthenticationFailed, AuthenticationFailedError):
            return LoginResult.REFUSED
        except (KafkaError, OSError, TimeoutError):
            continue  # this server did not answer: the next one may
        conn.close()
        return LoginResult.OK
    return LoginResult.UNREACHABLE
