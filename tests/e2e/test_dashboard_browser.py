"""The evidence dashboard in a real browser (Debian's chromium, driven by Playwright) against
the running evidence service, its accounts made with ``refex evidence add-user``: login, roles
and country scope, filters, French, suppressed cells, and the figures on each page equal to
the report the read model builds. Screenshots land in docs/evidence/ with
``make screenshots`` (REFEX_WRITE_SCREENSHOTS=1), else in the test's temporary folder.

The data: cases of a country no other test uses (BJ), registered through intake with the
``statistics`` purpose, referred to a provider that accepts them; cases whose need no listing
covers, two in one region (a cell under k) and more in two others; one case without
``statistics`` (never counted).
Assessments go through intake (the owner's submissions topic), which scores them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from services.evidence.report import (
    ANSWERS_BY_PROVIDER,
    SCORES_BY_PATHWAY,
    UNMET_BY_AREA,
    Filters,
    Report,
)
from services.evidence.source import report_of
from services.evidence.store import EvidenceStore
from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.taxonomy import Dimension
from shared.db import connected
from shared.kafka.connection import KafkaConnection
from shared.kafka.oneshot import publish_events
from tests import factories as f
from tests.e2e.conftest import REPO, RunningService
from tests.e2e.kafka_helpers import collect, data_of
from tests.e2e.test_referral import _agency, _answer, _events, _listed, _submit

pytestmark = pytest.mark.e2e

COUNTRY = "BJ"  # no other test's cases are here: the figures are this module's
K = 5  # the service's default EVIDENCE_K
ACCEPTED_CASES = 6
PASSWORD = "a long dashboard test password"
SCREENSHOTS = REPO / "docs" / "evidence"


@dataclass(frozen=True)
class Seeded:
    provider: str
    area: str
    unmet_area: str
    operator: str
    viewer: str  # a programme manager: every country
    scoped: str  # a government viewer of BJ only
    leaver: str  # an operator disabled during the tests


def refex(*args: str) -> subprocess.CompletedProcess[str]:
    """The operator CLI, beside the evidence service (its settings and the operator's Kafka
    credentials are in the test environment)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "refex"), "evidence", *args],
        env={**os.environ, "DASHBOARD_TEST_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def add_user(prefix: str, *options: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    done = refex("add-user", name, *options, "--password-env", "DASHBOARD_TEST_PASSWORD")
    assert done.returncode == 0, done.stderr
    return name


async def report(dsn: str, filters: Filters) -> Report:
    async with connected(dsn) as conn:
        facts = await EvidenceStore(conn).facts()
    return report_of(facts, filters, K, datetime.now(UTC))


def _assessment(case_id: str, owner: str, wave: str, on: date, position: int) -> Any:
    """The owner's assessment through intake: every rss-v1 indicator answered with the option
    at ``position`` of its scale (0: the best)."""
    answers = f.answers_scoring(position)
    return f.assessment_event(
        f.assessment(owner, case_id, wave, answers, assessed_on=on.isoformat())
    )


def _district(region: str) -> str:
    return f"{COUNTRY}{region}{uuid.uuid4().int % 10**6:06d}"


@pytest.fixture(scope="module")
async def seeded(
    evidence: RunningService, kafka: KafkaConnection, database_urls: dict[str, str]
) -> Seeded:
    # Two regions (the first four characters): with a country chosen, figures are by region.
    area, unmet_area = _district("10"), _district("20")
    referrer, provider = await _agency(kafka, "iom"), await _agency(kafka, "ngo")
    await _listed(kafka, database_urls["referral"], provider, [area])
    statistics = f.consent(scope={"purposes": ["referral", "follow_up", "statistics"]})
    correlations = [
        await _submit(kafka, referrer, area, consent=statistics) for _ in range(ACCEPTED_CASES)
    ]
    # Needs nobody lists: 2 unmet in one region (a cell under k), 6 and 7 in two others.
    for district, cases in ((unmet_area, 2), (_district("30"), 6), (_district("40"), 7)):
        for _ in range(cases):
            await _submit(
                kafka,
                referrer,
                district,
                consent=statistics,
                needs=f.needs("economic.business_startup_grant"),
            )
    await _submit(kafka, referrer, area)  # no statistics purpose: never counted
    today = datetime.now(UTC).date()
    assessments = []
    for i, correlation in enumerate(correlations):
        [referral] = await _events(kafka, correlation, ev.REFERRAL_REQUESTED)
        await _answer(kafka, provider, referral, "acknowledge")
        await _answer(kafka, provider, referral, "accept")
        case_id = referral["case_id"]
        assessments += [
            _assessment(case_id, referrer, "baseline", today - timedelta(days=180), 99),
            _assessment(case_id, referrer, "month_6", today, i % 3),
        ]
    await publish_events(kafka, assessments)

    deadline = asyncio.get_running_loop().time() + 60
    while True:
        now = await report(database_urls["evidence"], Filters(country=COUNTRY))
        answers = [r for r in now.table(ANSWERS_BY_PROVIDER).rows if r.key[0] == provider]
        scores = now.table(SCORES_BY_PATHWAY).rows
        unmet = now.table(UNMET_BY_AREA).rows
        if answers and answers[0].values[2] == ACCEPTED_CASES and scores and unmet:
            break
        assert asyncio.get_running_loop().time() < deadline, "the read model did not catch up"
        await asyncio.sleep(0.5)
    return Seeded(
        provider=provider,
        area=area,
        unmet_area=unmet_area,
        operator=add_user("ops", "--role", "operator"),
        viewer=add_user("programme", "--role", "viewer"),
        scoped=add_user("benin", "--role", "viewer", "--country", COUNTRY),
        leaver=add_user("leaver", "--role", "operator"),
    )


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


async def screenshot(page: Page, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if os.environ.get("REFEX_WRITE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)


async def logged_in(
    browser: Browser, evidence: RunningService, username: str, path: str, **context: Any
) -> Page:
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(evidence.url(f"/dashboard{path}"))
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("form.login button")
    await page.wait_for_load_state()
    return page


async def cells(page: Page, table: str) -> list[list[dict[str, Any]]]:
    return await page.eval_on_selector(  # type: ignore[no-any-return]
        f'table[data-table="{table}"]',
        """t => [...t.querySelectorAll('tbody tr')].map(tr => [...tr.cells].map(td => ({
              text: td.textContent.trim(),
              value: td.dataset.value === undefined ? null : Number(td.dataset.value),
              suppressed: td.classList.contains('suppressed')})))""",
    )


async def line_of(page: Page, table: str, first_key: str) -> list[dict[str, Any]]:
    [line] = [line for line in await cells(page, table) if line[0]["text"] == first_key]
    return line


def assert_same_figures(shown: list[list[dict[str, Any]]], expected: Report, table: str) -> None:
    """Each row's figures and case count on the page are the report's; a suppressed one is the
    word, never a number."""
    whole = expected.table(table)
    assert len(shown) == len(whole.rows)
    for line, row in zip(shown, whole.rows, strict=True):
        numbers = line[len(row.key) :]
        # the line's case count, unless a figure of the table is that count already
        counted = () if "cases" in whole.figures else (row.cases,)
        for cell, value in zip(numbers, (*row.values, *counted), strict=True):
            if value is None:
                assert cell["suppressed"] and cell["value"] is None
                assert cell["text"] in ("suppressed", "masqué")
            else:
                assert cell["value"] == pytest.approx(value)
                assert not cell["suppressed"]


async def test_login_is_required_and_a_wrong_password_refused(
    browser: Browser, evidence: RunningService, seeded: Seeded, shots: Path
) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(evidence.url(f"/dashboard/unmet?country={COUNTRY}"))
    assert "/dashboard/login?next=" in page.url
    await page.fill("#username", seeded.operator)
    await page.fill("#password", "not the password, surely")
    await page.click("form.login button")
    assert "Wrong account name or password." in (await page.text_content("p.problem") or "")
    await screenshot(page, shots, "login")
    await page.fill("#password", PASSWORD)
    await page.click("form.login button")
    await page.wait_for_load_state()
    assert page.url.endswith(f"/dashboard/unmet?country={COUNTRY}")


async def test_the_figures_on_each_page_are_the_reports_and_small_cells_suppressed(
    browser: Browser,
    evidence: RunningService,
    seeded: Seeded,
    database_urls: dict[str, str],
    shots: Path,
) -> None:
    expected = await report(database_urls["evidence"], Filters(country=COUNTRY))
    page = await logged_in(
        browser,
        evidence,
        seeded.operator,
        f"/unmet?country={COUNTRY}",
        viewport={"width": 1200, "height": 900},
    )
    for path, table, chart in (
        ("unmet", UNMET_BY_AREA, "chart-unmet"),
        ("providers", ANSWERS_BY_PROVIDER, "chart-acceptance"),
        ("pathways", SCORES_BY_PATHWAY, "chart-composite-change"),
    ):
        await page.goto(evidence.url(f"/dashboard/{path}?country={COUNTRY}"))
        assert_same_figures(await cells(page, table), expected, table)
        published = any(v is not None for r in expected.table(table).rows for v in r.values)
        drawn = await page.evaluate(
            f"(c => c !== null && Chart.getChart(c) !== undefined)"
            f"(document.getElementById('{chart}'))"
        )
        assert drawn == published, f"{path}: a chart for published figures only"
        await screenshot(page, shots, path)
    charted = {UNMET_BY_AREA, ANSWERS_BY_PROVIDER, SCORES_BY_PATHWAY}
    for other in (t.name for t in expected.tables if t.name not in charted):
        await page.goto(evidence.url(f"/dashboard/tables/{other}?country={COUNTRY}"))
        if expected.table(other).rows:
            assert_same_figures(await cells(page, other), expected, other)
        else:
            assert await page.locator(f"#table-{other} p.empty").count() == 1
    await page.goto(evidence.url(f"/dashboard/tables/by_group?country={COUNTRY}"))
    await screenshot(page, shots, "by-group")
    await page.goto(evidence.url(f"/dashboard/?country={COUNTRY}"))
    await screenshot(page, shots, "overview")
    await page.goto(evidence.url(f"/dashboard/unmet?country={COUNTRY}"))
    small = await line_of(page, UNMET_BY_AREA, seeded.unmet_area[:4])  # by region
    assert all(c["suppressed"] for c in small[2:]), "2 cases: under k, suppressed"
    await page.goto(evidence.url(f"/dashboard/providers?country={COUNTRY}"))
    provider = await line_of(page, ANSWERS_BY_PROVIDER, seeded.provider)
    # referrals made: the case without statistics is not counted
    assert provider[2]["value"] == ACCEPTED_CASES
    phone = await logged_in(
        browser,
        evidence,
        seeded.viewer,
        f"/pathways?country={COUNTRY}",
        viewport={"width": 390, "height": 844},
        is_mobile=True,
    )
    await screenshot(phone, shots, "pathways-phone")


async def test_filters_change_the_figures(
    browser: Browser, evidence: RunningService, seeded: Seeded, database_urls: dict[str, str]
) -> None:
    page = await logged_in(browser, evidence, seeded.viewer, f"/providers?country={COUNTRY}")
    before = await cells(page, ANSWERS_BY_PROVIDER)
    assert any(line[0]["text"] == seeded.provider for line in before)
    await page.select_option("#filter-dimension", "economic")
    await page.click("form.filters button")
    await page.wait_for_load_state()
    assert "dimension=economic" in page.url
    expected = await report(
        database_urls["evidence"], Filters(country=COUNTRY, dimension=Dimension.ECONOMIC)
    )
    shown = (
        await cells(page, ANSWERS_BY_PROVIDER) if expected.table(ANSWERS_BY_PROVIDER).rows else []
    )
    assert_same_figures(shown, expected, ANSWERS_BY_PROVIDER)
    if not shown:
        assert await page.locator("#table-answers_by_provider p.empty").count() == 1
    assert not any(line[0]["text"] == seeded.provider for line in shown)  # psychosocial only


async def test_the_dashboard_in_french(
    browser: Browser, evidence: RunningService, seeded: Seeded, shots: Path
) -> None:
    page = await logged_in(browser, evidence, seeded.viewer, f"/unmet?country={COUNTRY}")
    await page.click("nav.languages a[lang=fr]")
    await page.wait_for_load_state()
    assert await page.get_attribute("html", "lang") == "fr"
    assert await page.text_content("h1") == "Besoins non satisfaits par zone"
    small = await line_of(page, UNMET_BY_AREA, seeded.unmet_area[:4])
    assert small[2]["text"] == "masqué"
    await screenshot(page, shots, "unmet-fr")
    await page.goto(evidence.url(f"/dashboard/pathways?country={COUNTRY}"))
    assert await page.get_attribute("html", "lang") == "fr"  # the cookie keeps the choice


async def test_a_viewer_cannot_reach_operator_pages_and_a_scoped_one_sees_its_country(
    browser: Browser, evidence: RunningService, seeded: Seeded, database_urls: dict[str, str]
) -> None:
    viewer = await logged_in(browser, evidence, seeded.viewer, "/accounts")
    assert "operators only" in (await viewer.text_content("main") or "")
    assert await viewer.locator("nav.pages a", has_text="Accounts").count() == 0
    scoped = await logged_in(browser, evidence, seeded.scoped, "/unmet?country=SN")
    assert "your account sees one country only" in (await scoped.text_content("form.filters") or "")
    expected = await report(database_urls["evidence"], Filters(country=COUNTRY))
    assert_same_figures(await cells(scoped, UNMET_BY_AREA), expected, UNMET_BY_AREA)
    operator = await logged_in(browser, evidence, seeded.operator, "/accounts")
    names = [line[0]["text"] for line in await cells(operator, "accounts")]
    assert {seeded.operator, seeded.viewer, seeded.scoped} <= set(names)


async def test_a_disabled_account_is_logged_out_and_each_change_audited(
    browser: Browser,
    evidence: RunningService,
    seeded: Seeded,
    kafka: KafkaConnection,
    database_urls: dict[str, str],
) -> None:
    page = await logged_in(browser, evidence, seeded.leaver, "/")
    assert "/dashboard/login" not in page.url
    done = refex("disable-user", seeded.leaver)
    assert done.returncode == 0, done.stderr
    await page.goto(evidence.url("/dashboard/unmet"))
    assert "/dashboard/login" in page.url
    await page.fill("#username", seeded.leaver)
    await page.fill("#password", PASSWORD)
    await page.click("form.login button")
    assert "Wrong account name or password." in (await page.text_content("p.problem") or "")
    listed = refex("list-users")
    assert listed.returncode == 0 and seeded.leaver in listed.stdout
    async with connected(database_urls["evidence"]) as conn:
        account_id = await conn.fetchval(
            "SELECT account_id FROM dashboard_accounts WHERE username = $1", seeded.leaver
        )
    audited = await collect(
        kafka,
        topics.OPERATORS_AUDIT,
        lambda r: data_of(r).get("target_id") == account_id,
        expected=4,  # add-user and disable-user: started, succeeded each
    )
    assert [(data_of(r)["command"], data_of(r)["outcome"]) for r in audited] == [
        ("evidence add-user", "started"),
        ("evidence add-user", "succeeded"),
        ("evidence disable-user", "started"),
        ("evidence disable-user", "succeeded"),
    ]
