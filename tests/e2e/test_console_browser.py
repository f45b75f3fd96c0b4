"""The caseworkers' console in a real browser (Debian's chromium, Playwright) against the
running services and gateway, on the real broker (issue 20): a provider's caseworker logs in,
sees a new referral, opens its disclosure with the agency's key file, accepts it and later
completes it; the referring agency reads each state on its Kafka inbox and on the HTTP inbox.
The gateway never holds the personal data in clear: neither its memory nor its log has the
marker name during the session. Another agency's user gets 404 on the referral's URLs; a
removed user is logged out at its next click. Screenshots land in docs/console/ with
``make screenshots`` (REFEX_WRITE_SCREENSHOTS=1), else in the test's temporary folder."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
from nacl.public import PrivateKey
from playwright.async_api import Browser, Page

from shared.contracts import events as ev
from shared.contracts import topics
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import REPO, RunningService
from tests.e2e.kafka_helpers import (
    collect,
    data_of,
    headers_of,
    register_agency_access,
    wait_until_authenticated,
)
from tests.e2e.test_intake import _known_to_intake
from tests.e2e.test_referral import _eventually, _listed
from tests.integration.test_agency_users import add_user, platform

pytestmark = pytest.mark.e2e

SCREENSHOTS = REPO / "docs" / "console"
# Follow-ups are looked for every second, so the referrer's baseline wave is due at once.
SERVICE_ENV = {"INTAKE_FOLLOW_UP_INTERVAL_S": "1"}
# A given name no other data holds: if it is anywhere in the gateway, the gateway saw it.
MARKER = "Zq" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))


@dataclass(frozen=True)
class User:
    agency_id: str
    login: str
    password: str


def _shots(tmp_path: Path) -> Path:
    folder = SCREENSHOTS if os.environ.get("REFEX_WRITE_SCREENSHOTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def _agency_with_login(
    kafka: KafkaConnection, prefix: str, public_key: str | None = None, user: str | None = None
) -> User:
    """A registered agency and a login: one of its people's own (``refex platform
    add-agency-user``) when ``user`` is given, else the agency's own principal."""
    agency_id = f.unique(prefix)
    connection = await register_agency_access(kafka, agency_id)
    record = f.agency(agency_id).model_copy(update={"public_key": public_key})
    await publish_events(kafka, [f.agency_event(record)])
    if user is not None:
        connection = await asyncio.to_thread(add_user, kafka, agency_id, user)
        await wait_until_authenticated(connection)
    assert connection.username is not None and connection.password is not None
    return User(agency_id, connection.username, connection.password)


async def _log_in(page: Page, gateway: RunningService, user: User, target: str = "/inbox") -> None:
    await page.goto(gateway.url(target))
    await page.fill("#login", user.login)
    await page.fill("#password", user.password)
    await page.click("form.login button[type=submit]")
    await page.wait_for_load_state()


async def _reload_until(page: Page, selector: str, text: str, timeout: float = 45) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = page.locator(selector)
        if await found.count() and text in (await found.first.inner_text()):
            return
        assert asyncio.get_running_loop().time() < deadline, f"{selector} never showed {text!r}"
        await asyncio.sleep(1)
        await page.reload()


def _gateway_memory_has(pid: int, needle: bytes) -> bool:
    """Whether any readable memory mapping of the gateway process holds ``needle``."""
    found = False
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addresses, perms = line.split()[:2]
            if "r" not in perms:
                continue
            start, end = (int(a, 16) for a in addresses.split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            if needle in chunk:
                found = True
                break
    return found


@pytest.fixture(scope="module")
def http(gateway: RunningService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url(""), timeout=30) as client:
        yield client


async def test_a_provider_caseworker_answers_a_referral_from_the_console(
    services: dict[str, RunningService],
    gateway: RunningService,
    browser: Browser,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
    http: httpx.Client,
    tmp_path: Path,
) -> None:
    shots = _shots(tmp_path)
    key = PrivateKey.generate()
    provider = await _agency_with_login(
        kafka, "ngo-console", base64.b64encode(bytes(key.public_key)).decode(), user="amina"
    )
    referrer = await _agency_with_login(kafka, "iom-console", user="fatou")
    stranger = await _agency_with_login(kafka, "ngo-other", user="moussa")
    await _known_to_intake(database_urls, provider.agency_id)  # with its public key
    area = f.unique_area()
    await _listed(kafka, database_urls["referral"], provider.agency_id, [area])
    personal = {
        "given_name": MARKER,
        "family_name": "Diallo",
        "contacts": [{"kind": "phone", "value": "+221770001122"}],
    }
    sent = f.submission_event(
        f.submission(
            referrer.agency_id,
            personal=personal,
            profile=f.profile(return_country=area[:2], return_area=area),
        )
    )
    await publish_events(kafka, [sent])
    key_file = tmp_path / "agency-private-key.b64"
    key_file.write_text(base64.b64encode(bytes(key)).decode() + "\n")

    context = await browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    try:
        await page.goto(gateway.url("/inbox"))
        assert page.url.endswith("/login?next=/inbox")
        await page.screenshot(path=str(shots / "login.png"))
        await _log_in(page, gateway, provider)
        await _reload_until(page, "table.referrals tbody", "from " + referrer.agency_id)
        await page.screenshot(path=str(shots / "inbox.png"), full_page=True)
        row = page.locator("tr[data-referral-id]").first
        referral_id = await row.get_attribute("data-referral-id")
        assert referral_id
        await row.locator("a").click()
        await _reload_until(page, "section.disclosure", "")  # the disclosure has arrived

        # libsodium compiles its WebAssembly first; then the key input is enabled.
        await page.wait_for_selector("html[data-disclosure-ready=true]", timeout=15_000)
        await page.set_input_files("#key-file", str(key_file))
        fields = page.locator("dl.disclosure-fields")
        opened = page.locator("dl.disclosure-fields:visible, p.disclosure-error:visible")
        try:
            await opened.first.wait_for(timeout=15_000)
        except Exception as exc:
            scripts = await page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
            raise AssertionError(f"the disclosure did not open: {problems} {scripts}") from exc
        error = page.locator("p.disclosure-error")
        assert await fields.is_visible(), (await error.inner_text(), problems)
        text = await fields.inner_text()
        assert MARKER in text and "+221770001122" in text
        await page.screenshot(path=str(shots / "referral-opened.png"), full_page=True)

        await page.click("form.action-accept button")
        await page.wait_for_load_state()
        assert "sent=accept" in page.url
        await _reload_until(page, "dd.state", "accepted")
        await page.select_option("form.action-complete select[name=outcome]", "achieved")
        await page.click("form.action-complete button")
        await page.wait_for_load_state()
        await _reload_until(page, "dd.state", "completed")
        await page.screenshot(path=str(shots / "referral-completed.png"), full_page=True)
        assert problems == [], problems

        # The gateway handed over a sealed box: the name never reached it in clear.
        assert not _gateway_memory_has(gateway.process.pid, MARKER.encode())
        assert MARKER not in gateway.log()

        # The referrer's system sees each state on its Kafka inbox...
        states = await collect(
            kafka,
            topics.agency_inbox(referrer.agency_id),
            lambda r: (
                headers_of(r).get("ce_type") == ev.INBOX_STATUS_CHANGED
                and data_of(r)["referral_id"] == referral_id
            ),
            expected=2,
        )
        assert [data_of(r)["to_state"] for r in states] == ["accepted", "completed"]
        # ...and on the HTTP inbox.
        inbox = await asyncio.to_thread(
            http.get, "/v1/inbox", auth=(referrer.login, referrer.password)
        )
        page_of = inbox.json()
        told = [
            e["data"]["to_state"]
            for e in page_of["events"]
            if e["type"] == ev.INBOX_STATUS_CHANGED and e["data"]["referral_id"] == referral_id
        ]
        assert told == ["accepted", "completed"]

        # Capacity, the listing field a provider changes most: one form, the listing republished.
        await page.click("nav a[href='/listings']")
        listing = page.locator("section.listing").first
        service_id = await listing.get_attribute("data-service-id")
        await listing.locator("select[name=status]").select_option("waitlist")
        await listing.locator("input[name=open_slots]").fill("3")
        await listing.locator("button").click()
        await page.wait_for_load_state()
        assert "sent=" in page.url
        capacity = await _eventually(
            database_urls["referral"],
            "SELECT capacity FROM listings WHERE service_id = $1 AND capacity = 'waitlist'",
            service_id,
        )
        assert capacity == "waitlist"
        await _reload_until(page, "dd.capacity", "waitlist (3")
        await page.screenshot(path=str(shots / "listings.png"), full_page=True)

        # The referrer's caseworker ends its agency's assistance on the case from its page.
        own = await browser.new_context()
        caseworker = await own.new_page()
        await _log_in(caseworker, gateway, referrer, "/follow-ups")
        case_id = data_of(states[0])["case_id"]
        # The follow-up interview of the baseline wave, answered in the console's form.
        await _reload_until(caseworker, "table", case_id)
        await caseworker.click(f"tr[data-case-id='{case_id}'] a")
        await caseworker.fill("#assessed_on", date.today().isoformat())
        for fieldset in await caseworker.locator("fieldset.indicator").all():
            await fieldset.locator("input[type=radio]").first.check()
        await caseworker.screenshot(path=str(shots / "assessment.png"), full_page=True)
        await caseworker.click("form.assessment button[type=submit]")
        await caseworker.wait_for_load_state()
        assert "sent=assessment" in caseworker.url, await caseworker.content()
        [recorded] = await collect(
            kafka,
            topics.INTAKE_CASES,
            lambda r: (
                headers_of(r).get("ce_type") == ev.ASSESSMENT_RECORDED
                and data_of(r)["case_id"] == case_id
            ),
        )
        assert data_of(recorded)["wave"] == "baseline"
        assert data_of(recorded)["scores"]["composite"] is not None

        # A new case typed in the form: refused by intake's rules field by field first (the
        # page keeps what was typed), registered once corrected.
        new_ref = f.unique("FORM")
        await caseworker.goto(gateway.url("/cases/new"))
        for name, value in {
            "agency_case_ref": new_ref,
            "given_name": "Fatima",
            "family_name": "Ba",
            "phone": "+221770009988",
            "nationality": "SN",
            "return_country": "SN",
            "return_area": "SN0101",
            "return_date": "2099-01-01",  # in the future: intake refuses it
        }.items():
            await caseworker.fill(f"#{name}", value)
        for name, value in {
            "sex": "female",
            "age_band": "25-34",
            "return_type": "voluntary_assisted",
            "need_1": "psychosocial.counselling",
            "consent_method": "verbal",
        }.items():
            await caseworker.select_option(f"#{name}", value)
        await caseworker.click("form.case-form button[type=submit]")
        await caseworker.wait_for_load_state()
        refused = caseworker.locator("div.error")
        invalid = "form.case-form :invalid"
        assert await refused.count(), await caseworker.eval_on_selector_all(
            invalid, "els => els.map(e => e.name)"
        )
        assert "profile.return_date" in await refused.inner_text()
        assert await caseworker.input_value("#given_name") == "Fatima"
        await caseworker.fill("#return_date", date.today().isoformat())
        await caseworker.click("form.case-form button[type=submit]")
        await caseworker.wait_for_load_state()
        assert "/cases?sent=" in caseworker.url
        await _reload_until(caseworker, "table", new_ref)
        await caseworker.screenshot(path=str(shots / "cases.png"), full_page=True)

        await caseworker.goto(gateway.url("/cases"))
        await _reload_until(caseworker, "table", sent.key)  # the agency_case_ref
        await caseworker.click(f"tr[data-case-ref='{sent.key}'] a")
        await caseworker.select_option("form.action-end-assistance select", "programme_ended")
        await caseworker.click("form.action-end-assistance button")
        await caseworker.wait_for_load_state()
        assert "sent=end-assistance" in caseworker.url
        await caseworker.screenshot(path=str(shots / "case.png"), full_page=True)
        [ended] = await collect(
            kafka,
            topics.INTAKE_CASES,
            lambda r: (
                headers_of(r).get("ce_type") == ev.ASSISTANCE_ENDED
                and data_of(r)["case_id"] == case_id
            ),
        )
        assert data_of(ended)["reason"] == "programme_ended"
        assert data_of(ended)["owner_agency_id"] == referrer.agency_id

        # The case's needs replaced from its page: n1 kept, a new need n2 added.
        await caseworker.select_option("#need_1", "psychosocial.counselling")
        await caseworker.select_option("#need_2", "economic.job_placement")
        await caseworker.select_option("#urgency_2", "urgent")
        await caseworker.click("form.action-replace-needs button")
        await caseworker.wait_for_load_state()
        assert "sent=replace-needs" in caseworker.url
        [updated] = await collect(
            kafka,
            topics.INTAKE_CASES,
            lambda r: (
                headers_of(r).get("ce_type") == ev.CASE_UPDATED
                and data_of(r)["case_id"] == case_id
                and len(data_of(r)["needs"]) == 2
            ),
        )
        assert [(n["need_id"], n["category"], n["urgency"]) for n in data_of(updated)["needs"]] == [
            ("n1", "psychosocial.counselling", "normal"),
            ("n2", "economic.job_placement", "urgent"),
        ]

        # The referrer's programme has ended: it offers the case to the provider, which
        # accepts it from its own console under its own reference; the case moves.
        await caseworker.fill("#to_agency_id", provider.agency_id)
        await caseworker.select_option("#handover-reason", "long_term_support")
        await caseworker.click("form.action-propose-handover button")
        await caseworker.wait_for_load_state()
        assert "sent=propose-handover" in caseworker.url
        [proposed] = await collect(
            kafka,
            topics.REFERRAL_EVENTS,
            lambda r: (
                headers_of(r).get("ce_type") == ev.HANDOVER_PROPOSED
                and data_of(r)["case_id"] == case_id
            ),
        )
        assert data_of(proposed)["receiving_agency_id"] == provider.agency_id
        assert data_of(proposed)["answering_agency_id"] == provider.agency_id
        await page.goto(gateway.url("/cases"))
        await _reload_until(page, "table.handovers-waiting", case_id)
        await page.click("table.handovers-waiting tr[data-handover-id] a")
        taken_ref = f.unique("TAKEN")
        await page.fill("#agency_case_ref", taken_ref)
        await page.screenshot(path=str(shots / "handover.png"), full_page=True)
        await page.click("form.action-accept-handover button")
        await page.wait_for_load_state()
        assert "sent=handover-accept" in page.url
        await _reload_until(page, "table", taken_ref)  # now one of the provider's cases
        await caseworker.reload()
        await _reload_until(caseworker, "dd.handed-over", provider.agency_id)
        await own.close()

        # Another agency's user: the same URLs are 404, reading and answering alike.
        other = await browser.new_context()
        spy = await other.new_page()
        await _log_in(spy, gateway, stranger)
        token = await spy.locator("input[name=form_token]").first.get_attribute("value")
        response = await spy.goto(gateway.url(f"/referrals/{referral_id}"))
        assert response is not None and response.status == 404
        posted = await spy.request.post(
            gateway.url(f"/referrals/{referral_id}/respond"),
            form={"form_token": token or "", "action": "reject", "reason_code": "capacity_full"},
        )
        assert posted.status == 404
        forged = await spy.request.post(
            gateway.url(f"/referrals/{referral_id}/respond"), form={"action": "accept"}
        )
        assert forged.status in (403, 404)  # no form token: refused before anything

        # A removed user is logged out at its next click.
        removed = await asyncio.to_thread(
            platform,
            kafka,
            "remove-agency-user",
            "--agency",
            stranger.agency_id,
            "--user",
            "moussa",
        )
        assert removed.exit_code == 0, removed.output
        response = await spy.goto(gateway.url("/inbox"))
        assert response is not None and "/login" in spy.url
        await other.close()
    finally:
        await context.close()


def test_the_console_pages_carry_a_strict_policy_and_refuse_a_post_without_token(
    gateway: RunningService, http: httpx.Client
) -> None:
    page = http.get("/login")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    refused = http.post("/login", data={"login": "agency.x", "password": "y"})
    assert refused.status_code == 403  # no form token
    ar = http.get("/login", params={"lang": "ar"})
    assert re.search(r'<html lang="ar" dir="rtl">', ar.text)
    assert "تسجيل الدخول" in ar.text  # "Log in", from the shared catalogue
    assert "refex_lang=ar" in ar.headers["set-cookie"]  # kept for the next pages
    http.cookies.clear()  # else the cookie's choice (ar) wins over the browser's languages
    fr = http.get("/login", headers={"accept-language": "fr-SN,fr;q=0.9"})
    assert '<html lang="fr" dir="ltr">' in fr.text and "Se connecter" in fr.text
