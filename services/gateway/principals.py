"""Who a login is: a Kafka principal of an agency, ``agency.<agency_id>`` (the agency's system)
or ``agency.<agency_id>.<user>`` (one of its people, created by ``refex platform
add-agency-user``). Pure: the name says which agency it acts for; whether the password is right,
and what it may do, only the broker knows (its SCRAM credentials and ACLs)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.contracts.topics import AGENCY_ID_PATTERN, AGENCY_MEMBER_NAME_PATTERN

# An agency id has no dot, so the first dot after ``agency.`` ends it: no two agencies' names
# can be read as the same principal.
_PRINCIPAL = re.compile(
    rf"agency\.(?P<agency>{AGENCY_ID_PATTERN})(?:\.(?P<user>{AGENCY_MEMBER_NAME_PATTERN}))?"
)


@dataclass(frozen=True, slots=True)
class Principal:
    agency_id: str
    user: str | None  # None: the agency's own system principal

    @property
    def name(self) -> str:
        base = f"agency.{self.agency_id}"
        return f"{base}.{self.user}" if self.user else base


def principal_of(login: str) -> Principal | None:
    """The principal a login name is, or None when it is not an agency's."""
    match = _PRINCIPAL.fullmatch(login)
    if match is None:
        return None
    return Principal(match["agency"], match["user"])
