"""The evidence dashboard's web app on a fixed report and in-memory accounts: login, roles and
country scope, filters, languages, suppressed cells, static files. The browser test
(tests/e2e/test_dashboard_browser.py) drives the same pages in chromium."""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's notice about httpx: it works as is
    from starlette.testclient import TestClient

from services.evidence.report import ANSWERS_BY_PROVIDER, UNMET_BY_AREA, Filters
from services.evidence.web.account_store import Role
from services.evidence.web.app import SESSION_COOKIE, STATIC_FILES, dashboard_app
from shared.service import PrefixMounts
from shared.web.static_files import StaticFiles
from tests.dashboard_fakes import PASSWORD, FakeAccounts, config, sample_report, sample_source

ROOT = "/dashboard"


async def _service(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("the service's own routes")(scope, receive, send)


def mounted(app: ASGIApp) -> PrefixMounts:
    """Under /dashboard as the evidence service mounts it (services/evidence/app.py)."""
    return PrefixMounts(_service, {ROOT: app})


@pytest.fixture
def accounts() -> FakeAccounts:
    fake = FakeAccounts()
    fake.add_account("ops", Role.OPERATOR)
    fake.add_account("minister", Role.VIEWER, "SN")
    fake.add_account("programme", Role.VIEWER)
    return fake


@pytest.fixture
def client(accounts: FakeAccounts) -> TestClient:
    app = mounted(dashboard_app(config(), sample_source, accounts.units))
    return TestClient(app, base_url="http://dashboard.test")


def _token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "the page has no form token"
    return found.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD, next_: str = "") -> object:
    page = client.get(f"{ROOT}/login")
    return client.post(
        f"{ROOT}/login",
        data={
            "username": username,
            "password": password,
            "form_token": _token(page.text),
            "next": next_,
        },
        follow_redirects=False,
    )


def _cells(html: str, table: str) -> list[list[str]]:
    """The text of each cell of one report table (data-table=...), row by row."""
    body = html.split(f'data-table="{table}"', 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)[1:]  # [0] is the heading row
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?</td>", r, re.S)]
        for r in rows
    ]


def _values(html: str, table: str) -> list[float]:
    body = html.split(f'data-table="{table}"', 1)[1].split("</tbody>", 1)[0]
    return [float(v) for v in re.findall(r'data-value="([^"]+)"', body)]


# ----- login -----


def test_every_page_needs_a_login_and_comes_back_to_it_after(client: TestClient) -> None:
    for path in ("/", "/unmet", "/providers", "/pathways", "/tables/handovers", "/accounts"):
        response = client.get(f"{ROOT}{path}?country=SN", follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith(f"{ROOT}/login?next=")
    response = login(client, "programme", next_=f"{ROOT}/unmet?country=SN")
    assert response.status_code == 303
    assert response.headers["location"] == f"{ROOT}/unmet?country=SN"


def test_a_wrong_password_or_an_unknown_name_is_refused_alike(client: TestClient) -> None:
    wrong = login(client, "ops", "not the password at all")
    unknown = login(client, "nobody", PASSWORD)
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "Wrong account name or password." in response.text
    assert client.get(f"{ROOT}/", follow_redirects=False).status_code == 303


def test_login_is_throttled_after_repeated_failures_even_with_the_right_password(
    client: TestClient, accounts: FakeAccounts
) -> None:
    for _ in range(3):  # the test policy's free failures
        assert login(client, "ops", "guessing the password").status_code == 401
    throttled = login(client, "ops", PASSWORD)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert "Too many failed attempts." in throttled.text
    accounts.failed["ops"] = replace(
        accounts.failed["ops"], last_at=datetime.now(UTC) - timedelta(hours=1)
    )
    assert login(client, "ops", PASSWORD).status_code == 303


def test_a_post_without_the_session_form_token_is_refused(client: TestClient) -> None:
    client.get(f"{ROOT}/login")
    response = client.post(
        f"{ROOT}/login",
        data={"username": "ops", "password": PASSWORD, "form_token": "forged"},
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert client.get(f"{ROOT}/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "target",
    [
        "https://elsewhere.example/",
        "//elsewhere.example/",
        "/other-service/",
        f"{ROOT}x/",
        f"{ROOT}\\x",
        f"{ROOT}/\r\nSet-Cookie: x",
    ],
)
def test_login_never_sends_the_reader_to_another_site(client: TestClient, target: str) -> None:
    response = login(client, "ops", next_=target)
    assert response.headers["location"] == f"{ROOT}/"


def test_logout_ends_the_session(client: TestClient) -> None:
    login(client, "ops")
    page = client.get(f"{ROOT}/")
    assert page.status_code == 200
    out = client.post(
        f"{ROOT}/logout", data={"form_token": _token(page.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    assert client.get(f"{ROOT}/", follow_redirects=False).status_code == 303


def test_a_disabled_account_loses_its_session_at_the_next_click(
    client: TestClient, accounts: FakeAccounts
) -> None:
    login(client, "programme")
    assert client.get(f"{ROOT}/").status_code == 200
    account = next(a for a in accounts.accounts.values() if a.username == "programme")
    accounts.accounts[account.account_id] = replace(account, disabled_at=datetime.now(UTC))
    assert client.get(f"{ROOT}/", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_httponly_samesite_and_secure_outside_development(
    accounts: FakeAccounts,
) -> None:
    app = dashboard_app(config(secure_cookies=True), sample_source, accounts.units)
    client = TestClient(mounted(app), base_url="https://dashboard.test")
    response = login(client, "ops")
    cookie = next(c for c in response.headers.get_list("set-cookie") if SESSION_COOKIE in c)
    assert "httponly" in cookie.lower()
    assert "samesite=lax" in cookie.lower()
    assert "secure" in cookie.lower()
    dev = login(TestClient_for(accounts), "ops")
    dev_cookie = next(c for c in dev.headers.get_list("set-cookie") if SESSION_COOKIE in c)
    assert "secure" not in dev_cookie.lower()


def TestClient_for(accounts: FakeAccounts) -> TestClient:
    app = mounted(dashboard_app(config(), sample_source, accounts.units))
    return TestClient(app, base_url="http://dashboard.test")


# ----- roles and scope -----


def test_a_viewer_cannot_reach_the_operator_pages(client: TestClient) -> None:
    login(client, "programme")
    response = client.get(f"{ROOT}/accounts")
    assert response.status_code == 403
    assert "operators only" in response.text
    assert f'href="{ROOT}/accounts"' not in client.get(f"{ROOT}/").text


def test_an_operator_sees_the_accounts_without_their_password_hashes(client: TestClient) -> None:
    login(client, "ops")
    response = client.get(f"{ROOT}/accounts")
    assert response.status_code == 200
    assert [row[0] for row in _cells(response.text, "accounts")] == ["minister", "ops", "programme"]
    assert "argon2" not in response.text


def test_a_country_viewer_sees_its_country_only_whatever_the_query_says(client: TestClient) -> None:
    login(client, "minister")
    page = client.get(f"{ROOT}/unmet?country=ML")
    assert page.status_code == 400
    assert "your account sees one country only" in page.text
    areas = {row[0] for row in _cells(page.text, UNMET_BY_AREA)}
    assert areas == {"SN01", "SN02"}


# ----- figures -----


def test_the_page_shows_the_report_figures_and_suppressed_cells_as_words(
    client: TestClient,
) -> None:
    login(client, "ops")
    page = client.get(f"{ROOT}/unmet")
    report = sample_report(Filters()).table(UNMET_BY_AREA)
    published = [v for row in report.rows for v in (*row.values, row.cases) if v is not None]
    assert _values(page.text, UNMET_BY_AREA) == published
    cells = _cells(page.text, UNMET_BY_AREA)
    assert cells[1] == ["SN01", "Outside the consent", "suppressed", "suppressed"]
    assert cells[0] == ["SN01", "No service listed", "12", "12"]
    chart = re.search(r'data-canvas="chart-unmet">(.*?)</script>', page.text, re.S)
    assert chart and '"data": [null, null, null]' in chart.group(1)  # a gap, never a number


def test_filters_change_the_figures(client: TestClient) -> None:
    login(client, "ops")
    everything = _cells(client.get(f"{ROOT}/providers").text, ANSWERS_BY_PROVIDER)
    economic = _cells(client.get(f"{ROOT}/providers?dimension=economic").text, ANSWERS_BY_PROVIDER)
    assert len(everything) == 2
    assert [row[0] for row in economic] == ["gov-emploi"]
    assert economic[0][7] == "60.0%"  # acceptance rate 0.6
    region = _cells(client.get(f"{ROOT}/unmet?region=SN02").text, UNMET_BY_AREA)
    assert {row[0] for row in region} == {"SN02"}


def test_a_bad_filter_is_told_and_left_out(client: TestClient) -> None:
    login(client, "ops")
    page = client.get(f"{ROOT}/unmet?period=December&dimension=spiritual")
    assert page.status_code == 400
    assert "a period is a month, e.g. 2026-12" in page.text
    assert "not one of the choices" in page.text
    assert len(_cells(page.text, UNMET_BY_AREA)) == 5


def test_every_other_table_has_its_page(client: TestClient) -> None:
    login(client, "ops")
    overview = client.get(f"{ROOT}/")
    assert f'href="{ROOT}/tables/handovers"' in overview.text
    assert _cells(client.get(f"{ROOT}/tables/handovers").text, "handovers") == [
        ["SN01", "2026-11", "6", "6"]
    ]
    assert client.get(f"{ROOT}/tables/nothing").status_code == 404


# ----- languages -----


def test_french_by_link_then_by_cookie_and_by_accept_language(client: TestClient) -> None:
    login(client, "ops")
    page = client.get(f"{ROOT}/unmet?lang=fr")
    assert '<html lang="fr">' in page.text
    assert "Besoins non satisfaits par zone" in page.text
    assert _cells(page.text, UNMET_BY_AREA)[1][2] == "masqué"
    assert '<html lang="fr">' in client.get(f"{ROOT}/providers").text  # the cookie
    scores = client.get(f"{ROOT}/providers").text
    assert "80,0" in scores  # French decimals
    fresh = TestClient(client.app, base_url="http://dashboard.test")
    login(fresh, "ops")
    assert (
        '<html lang="fr">'
        in fresh.get(f"{ROOT}/", headers={"accept-language": "fr-SN,fr;q=0.9"}).text
    )
    assert (
        '<html lang="en">'
        in fresh.get(f"{ROOT}/", headers={"accept-language": "de, en;q=0.5"}).text
    )


# ----- static files and headers -----


def test_static_files_are_served_from_the_package_with_long_cache_headers(
    client: TestClient,
) -> None:
    login(client, "ops")
    page = client.get(f"{ROOT}/pathways").text
    src = re.search(r'src="([^"]+chart\.umd\.min\.js)"', page)
    assert src
    script = client.get(src.group(1))
    assert script.status_code == 200
    assert script.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert script.content.startswith(b"/*!\n * Chart.js v4.6.1")
    assert script.headers["content-encoding"] == "gzip"  # 200 kB → 70 kB on a slow line
    stale = client.get(f"{ROOT}/static/0000000000000000/dashboard.css")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
    assert client.get(f"{ROOT}/static/x/other.js").status_code == 404


def test_pages_are_not_cached_and_refuse_inline_scripts_and_framing(client: TestClient) -> None:
    login(client, "ops")
    response = client.get(f"{ROOT}/")
    assert response.headers["cache-control"] == "private, no-store"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in response.text  # no inline script: the charts' data is JSON


def test_the_vendored_chart_js_is_the_recorded_release() -> None:
    # docs/decisions/0023 records this checksum; a changed file must change the record too.
    import hashlib

    body = StaticFiles("services.evidence.web", STATIC_FILES).files["chart.umd.min.js"].body
    assert (
        hashlib.sha256(body).hexdigest()
        == "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2"
    )


def test_a_failed_login_keeps_the_page_the_reader_came_for(client: TestClient) -> None:
    first = client.get(f"{ROOT}/unmet?country=SN", follow_redirects=True)
    wrong = client.post(
        f"{ROOT}/login",
        data={
            "username": "ops",
            "password": "wrong wrong wrong",
            "form_token": _token(first.text),
            "next": f"{ROOT}/unmet?country=SN",
        },
    )
    kept = re.search(r'name="next" value="([^"]+)"', wrong.text)
    assert kept and kept.group(1) == f"{ROOT}/unmet?country=SN"


def test_the_dashboard_lives_under_its_prefix_beside_the_services_routes(
    client: TestClient,
) -> None:
    bare = client.get(ROOT, follow_redirects=False)
    assert bare.status_code == 307 and bare.headers["location"].endswith(f"{ROOT}/")
    assert client.get(f"{ROOT}x").text == "the service's own routes"
    assert client.get("/health/ready").text == "the service's own routes"
