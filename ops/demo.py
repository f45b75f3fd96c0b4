"""``refex demo run``: a small, realistic scenario against a running system (``make run``).

Three agencies in Senegal — IOM's reintegration programme refers, an NGO offers psychosocial
support in Dakar, a government agency offers vocational training nationwide — two listings,
three returnees with needs. Then it shows what landed in each agency's inbox.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter
from typing import Annotated

import typer
from nacl.public import PrivateKey, SealedBox
from rich.table import Table

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import OutgoingEvent
from shared.contracts.messages import agency_message, listing_message, submission_message
from shared.kafka.admin import ensure_agency_topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import follow, publish_events
from shared.operator import DEFAULT_BOOTSTRAP, Bootstrap, connect, console, run

from . import kafka_access
from .access_policy import agency_user
from .webhook_receiver import receive_webhooks

app = typer.Typer(help="Demo scenario; a local webhook receiver.", no_args_is_help=True)
app.command("receive-webhooks")(receive_webhooks)

# Each demo agency gets a fresh key pair, so the demo can open what was sealed for it.
PRIVATE_KEYS = {
    agency_id: PrivateKey.generate() for agency_id in ("iom-sn", "ngo-jamm", "gov-fp-sn")
}


def _public(agency_id: str) -> str:
    return base64.b64encode(bytes(PRIVATE_KEYS[agency_id].public_key)).decode()


AGENCIES = [
    ev.AgencyRecord(
        agency_id="iom-sn",
        name="IOM Senegal reintegration",
        type=ev.AgencyType.UN_AGENCY,
        countries=["SN"],
        public_key=_public("iom-sn"),
    ),
    ev.AgencyRecord(
        agency_id="ngo-jamm",
        name="Jamm psychosocial support",
        type=ev.AgencyType.NGO,
        countries=["SN"],
        public_key=_public("ngo-jamm"),
    ),
    ev.AgencyRecord(
        agency_id="gov-fp-sn",
        name="Office national de formation professionnelle",
        type=ev.AgencyType.GOVERNMENT,
        countries=["SN"],
        public_key=_public("gov-fp-sn"),
    ),
]
LISTINGS = [
    ev.ServiceListing.model_validate(item)
    for item in (
        {
            "service_id": "jamm-dakar-pss",
            "agency_id": "ngo-jamm",
            "name": "Individual counselling, Dakar",
            "categories": ["psychosocial.counselling"],
            "service_areas": ["SN01"],
            "languages": ["fr", "wo"],
            "assured_date": "2026-11-01",
        },
        {
            "service_id": "onfp-tvet",
            "agency_id": "gov-fp-sn",
            "name": "Vocational training courses",
            "categories": ["economic.vocational_training"],
            "service_areas": ["SN"],
            "languages": ["fr"],
            "capacity": {"status": "waitlist"},
            "assured_date": "2026-10-15",
        },
    )
]


def _case(ref: str, area: str, categories: list[str]) -> ev.CaseSubmission:
    return ev.CaseSubmission.model_validate(
        {
            "agency_id": "iom-sn",
            "agency_case_ref": ref,
            "personal": {"given_name": "Demo", "family_name": f"Returnee {ref}"},
            "profile": {
                "sex": "female",
                "age_band": "25-34",
                "nationality": "SN",
                "return_country": "SN",
                "return_date": "2026-11-02",
                "return_type": "voluntary_assisted",
                "return_area": area,
                "languages": ["fr", "wo"],
            },
            "needs": [
                {"need_id": f"{ref}-n{i}", "category": c} for i, c in enumerate(categories, 1)
            ],
            "consent": {
                "given": True,
                "scope": {"purposes": ["referral", "follow_up"]},
                "recorded_at": "2026-11-02T10:00:00Z",
                "method": "written",
            },
        }
    )


def scenario(run_id: str) -> list[OutgoingEvent]:
    """Agencies, listings, then three returnees: Dakar (two needs), Tambacounda (two cases)."""
    cases = [
        _case(
            f"DEMO-{run_id}-1",
            "SN0101",
            ["psychosocial.counselling", "economic.vocational_training"],
        ),
        _case(f"DEMO-{run_id}-2", "SN0702", ["economic.vocational_training"]),
        _case(f"DEMO-{run_id}-3", "SN0702", ["psychosocial.counselling"]),
    ]
    return (
        [agency_message(a) for a in AGENCIES]
        + [listing_message(s) for s in LISTINGS]
        + [submission_message(c) for c in cases]
    )


def _provision_agencies(admin: KafkaConnection) -> dict[str, KafkaConnection]:
    """Each demo agency gets its own Kafka principal and ACLs (a fresh password per run), as
    `refex platform register-agency` would give it; the demo then acts as each agency."""
    access, as_agency = kafka_access.KafkaAccess(admin), {}
    for agency in AGENCIES:
        password = kafka_access.new_password()
        kafka_access.grant_agency(access, agency.agency_id, password)
        as_agency[agency.agency_id] = admin.as_user(agency_user(agency.agency_id), password)
    return as_agency


async def _publish_as_senders(
    as_agency: dict[str, KafkaConnection], events: list[OutgoingEvent]
) -> None:
    """Each event with the credentials of the agency whose topic it goes to."""
    for agency_id, connection in as_agency.items():
        own = [e for e in events if e.topic.startswith(f"agency.{agency_id}.")]
        if own:
            await publish_events(connection, own)


async def _inbox_summary(
    as_agency: dict[str, KafkaConnection], correlation_ids: set[str]
) -> dict[str, Counter[str]]:
    summary: dict[str, Counter[str]] = {}
    for agency in AGENCIES:
        counts: Counter[str] = Counter()
        async for record in follow(
            as_agency[agency.agency_id], topics.agency_inbox(agency.agency_id), idle_timeout_s=2.0
        ):
            headers = {k: v.decode() for k, v in record.headers or ()}
            if headers.get("ce_correlationid") in correlation_ids:
                counts[headers.get("ce_type", "?").removeprefix("org.referralexchange.")] += 1
                data = json.loads(record.value or b"{}")
                if "sealed_box" in data:  # what only this agency can read
                    opened = SealedBox(PRIVATE_KEYS[agency.agency_id]).decrypt(
                        base64.b64decode(data["sealed_box"])
                    )
                    data = {
                        "referral_id": data["referral_id"],
                        "opened_with_own_key": json.loads(opened),
                    }
                console.print(
                    f"[bold]{agency.agency_id}[/bold] ← {headers.get('ce_type')} "
                    f"{json.dumps(data, ensure_ascii=False)}"
                )
        summary[agency.agency_id] = counts
    return summary


@app.command("run")
def run_demo(
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    wait: Annotated[float, typer.Option(help="Seconds to let the services work.")] = 8.0,
) -> None:
    """Publish the scenario, wait, and show what each agency received."""
    run_id = uuid.uuid4().hex[:6]
    events = scenario(run_id)
    submissions = [e for e in events if topics.AGENCY_SUBMISSIONS.agency_of(e.topic)]
    registry = [e for e in events if e.topic == topics.DIRECTORY_AGENCIES]
    listings = [e for e in events if topics.AGENCY_LISTINGS.agency_of(e.topic)]
    directory = registry + listings
    correlation_ids = {e.headers["ce_correlationid"] for e in submissions}
    admin = connect(bootstrap)

    async def _run() -> dict[str, Counter[str]]:
        for agency in AGENCIES:
            await ensure_agency_topics(admin, agency.agency_id)
        as_agency = _provision_agencies(admin)
        for connection in as_agency.values():  # fresh passwords: usable a moment later
            await kafka_access.wait_until_login_works(connection)
        await publish_events(admin, registry)
        await _publish_as_senders(as_agency, listings)
        console.print(
            f"published {len(directory)} agencies and listings; the services pick up "
            f"new agencies' topics within seconds ({wait:.0f} s)"
        )
        await asyncio.sleep(wait)
        await _publish_as_senders(as_agency, submissions)
        console.print(
            f"published {len(submissions)} case submissions (run {run_id}); waiting {wait:.0f} s"
        )
        await asyncio.sleep(wait)
        return await _inbox_summary(as_agency, correlation_ids)

    summary = run(_run())
    table = Table("agency", "received")
    for agency_id, counts in summary.items():
        table.add_row(agency_id, ", ".join(f"{n} x {t}" for t, n in counts.items()) or "nothing")
    console.print(table)
