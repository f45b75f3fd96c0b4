"""The console's sealed disclosures opened in a real browser (Debian's chromium, driven by
Playwright) with the agency's private key file: the vendored libsodium and disclosure.js,
served by a tiny Starlette page of this test under the console's Content-Security-Policy, with
boxes sealed as intake seals them (services.intake.crypto.seal_for, PyNaCl).

What it shows: the agency's key (base64 text, or the raw 32 bytes) opens every disclosure of
the page and the fields appear as text; another key or a file that is no key shows the page's
message and no field; the browser reports no CSP violation; and the tiny app's request log
holds only GETs of the page and its static files, none carrying the key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from nacl.public import PrivateKey
from playwright.async_api import Browser, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.crypto import seal_for
from shared.contracts import events as ev
from tests.e2e.conftest import REPO

pytestmark = pytest.mark.e2e

STATIC = REPO / "services" / "gateway" / "console" / "static"
SCRIPTS = ("vendor/libsodium.js", "vendor/libsodium-wrappers.js", "disclosure.js")
# docs/decisions/0025 records these: a changed vendored file must change the record too.
VENDORED_SHA256 = {
    "vendor/libsodium.js": "9d9731995989ac2d7c73ba4fb6717e43cd2a4a4299c442b710c2d9e5065b14d1",
    "vendor/libsodium-wrappers.js": (
        "d015a93315140974698318d94274ff63c6d22530d8b0e3f3770d9bfeadc7eb60"
    ),
}
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
WRONG_KEY = "This key does not open this disclosure."
BAD_FILE = "This file is not a private key."
LABELS = {
    "given_name": "Given name",
    "family_name": "Family name",
    "contacts": "Contacts",
    "preferred_language": "Preferred language",
    "agency_case_ref": "Agency case reference",
    "area": "Area",
    "category": "Need",
    "people_affected": "People affected",
    "returnee_share": "Share of returnees",
    "description": "Description",
    "case_id": "Case",
}
MARKUP = '<img src="x" id="injected">'  # must stay text: the page never parses the box as HTML

CONTACT = ev.DisclosedContact(
    given_name="Aminata",
    family_name="Diallo",
    contacts=[
        ev.Contact(kind=ev.ContactKind.PHONE, value="+221 77 123 45 67", preferred=True),
        ev.Contact(kind=ev.ContactKind.EMAIL, value="aminata@example.org"),
    ],
    preferred_language="wol",
)
NEED = ev.CommunityNeedBrief(
    case_id="community-case-1",
    agency_case_ref="ref-77",
    area="SN0101",
    category="economic.business_startup_grant",
    people_affected=40,
    returnee_share=0.25,
    description=f"A well for the village {MARKUP}",
)


@dataclass
class SealedPage:
    """The tiny app: one page of two disclosures sealed for ``key``, and what it was asked."""

    key: PrivateKey
    requests: list[dict[str, Any]] = field(default_factory=list)

    def page(self, csp: str) -> Response:
        public = base64.b64encode(self.key.public_key.encode()).decode()
        sections = "".join(
            f"""
<section class="disclosure" data-sealed-box="{seal_for(public, content.model_dump_json().encode())}"
         data-content="{kind}">
  <label for="key-file-{kind}">Your agency's private key file</label>
  <input type="file" id="key-file-{kind}" class="key-file">
  <p class="disclosure-error" role="alert" hidden data-wrong-key="{WRONG_KEY}"
     data-bad-file="{BAD_FILE}"></p>
  <dl class="disclosure-fields" hidden></dl>
</section>"""
            for kind, content in (("contact", CONTACT), ("community_need", NEED))
        )
        scripts = "".join(f'<script src="/static/{name}" defer></script>' for name in SCRIPTS)
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Referral</title>{scripts}</head>
<body><main>{sections}
<script type="application/json" id="disclosure-labels">{json.dumps(LABELS)}</script>
</main></body></html>"""
        return HTMLResponse(body, headers={"content-security-policy": csp})

    def app(self) -> ASGIApp:
        async def referral(request: Request) -> Response:
            return self.page(CONSOLE_CSP)

        async def referral_without_wasm(request: Request) -> Response:
            return self.page(CONSOLE_CSP.replace(" 'wasm-unsafe-eval'", ""))

        async def static(request: Request) -> Response:
            name = request.path_params["name"]
            if name not in SCRIPTS:
                return Response(status_code=404)
            return FileResponse(STATIC / name, media_type="text/javascript")

        inner = Starlette(
            routes=[
                Route("/referral", referral),
                Route("/referral-without-wasm", referral_without_wasm),
                Route("/static/{name:path}", static),
            ]
        )

        async def logged(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            entry: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode("latin-1"),
                "headers": [
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                ],
                "body": b"",
            }
            self.requests.append(entry)

            async def recorded() -> Message:
                message = await receive()
                if message["type"] == "http.request":
                    entry["body"] += message.get("body", b"")
                return message

            await inner(scope, recorded, send)

        return logged


@dataclass(frozen=True)
class Served:
    sealed: SealedPage
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    sealed = SealedPage(PrivateKey.generate())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # any free port: this page is the test's own
    server = uvicorn.Server(uvicorn.Config(sealed.app(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test page did not start"
        time.sleep(0.05)
    try:
        yield Served(sealed, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Opened:
    page: Page
    problems: list[str]  # CSP violations and script errors the browser reported


# Runs before the page's own scripts, outside its CSP: collects what the browser reports.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


async def opened_with(
    browser: Browser, served: Served, key_file: Path, path: str = "/referral"
) -> Opened:
    page = await (await browser.new_context()).new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" or "Content Security Policy" in m.text
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    await page.add_init_script(WATCH_VIOLATIONS)
    await page.goto(served.url(path))
    await page.wait_for_selector("html[data-disclosure-ready=true]", timeout=15_000)
    await page.set_input_files("#key-file-contact", str(key_file))
    for section in ("contact", "community_need"):
        await page.wait_for_selector(
            f'section[data-content="{section}"] .disclosure-fields:not([hidden]),'
            f' section[data-content="{section}"] .disclosure-error:not([hidden])',
            state="attached",
        )
    problems += await page.evaluate("window.__violations")
    return Opened(page, problems)


async def fields(page: Page, content: str) -> list[tuple[str, str]]:
    """Each (tag, text) of the section's field list, in order."""
    shown = await page.eval_on_selector_all(
        f'section[data-content="{content}"] .disclosure-fields > *',
        "els => els.map(e => [e.tagName.toLowerCase(), e.textContent])",
    )
    return [(tag, text) for tag, text in shown]


async def error_of(page: Page, content: str) -> str | None:
    """The section's error message, or None while it is hidden."""
    return await page.eval_on_selector(  # type: ignore[no-any-return]
        f'section[data-content="{content}"] .disclosure-error',
        "e => e.hidden ? null : e.textContent",
    )


def key_file(tmp_path: Path, key: PrivateKey, *, raw: bool = False) -> Path:
    path = tmp_path / "agency-private-key.b64"
    if raw:
        path.write_bytes(key.encode())
    else:  # as docs/integrators.md §7 writes it, a final newline included
        path.write_text(base64.b64encode(key.encode()).decode() + "\n")
    return path


def assert_the_key_was_never_sent(served: Served, key: PrivateKey) -> None:
    allowed = {"/referral", "/referral-without-wasm", "/favicon.ico"} | {
        f"/static/{name}" for name in SCRIPTS
    }
    encoded = base64.b64encode(key.encode()).decode()
    forms = (
        encoded,
        encoded.rstrip("="),
        key.encode().hex(),
        base64.urlsafe_b64encode(key.encode()).decode(),
    )
    assert served.sealed.requests, "the request log saw the page"
    for request in served.sealed.requests:
        assert request["method"] == "GET", request
        assert request["path"] in allowed, request
        assert request["body"] == b"", request
        carried = request["path"] + request["query"] + repr(request["headers"])
        assert not any(form in carried for form in forms), request
        assert key.encode() not in request["body"]


def test_the_vendored_libsodium_is_the_recorded_release() -> None:
    for name, digest in VENDORED_SHA256.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    assert (STATIC / "vendor" / "libsodium.js-LICENSE").read_text().startswith("Copyright")


async def test_the_agency_key_opens_every_disclosure_of_the_page_as_text(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    opened = await opened_with(browser, served, key_file(tmp_path, served.sealed.key))
    page = opened.page
    assert await fields(page, "contact") == [
        ("dt", "Given name"),
        ("dd", "Aminata"),
        ("dt", "Family name"),
        ("dd", "Diallo"),
        ("dt", "Contacts"),
        ("dd", "phone: +221 77 123 45 67"),
        ("dd", "email: aminata@example.org"),
        ("dt", "Preferred language"),
        ("dd", "wol"),
    ]
    texts = [text for _, text in await fields(page, "community_need")]
    need = dict(zip(texts[::2], texts[1::2], strict=True))  # one dd per dt here
    assert need["Area"] == "SN0101" and need["People affected"] == "40"
    assert need["Description"] == f"A well for the village {MARKUP}"
    assert await page.locator("#injected").count() == 0, "the box's text was parsed as HTML"
    assert await error_of(page, "contact") is None
    assert await error_of(page, "community_need") is None
    # the input forgot the file (the page keeps no handle on it)
    assert await page.eval_on_selector("#key-file-contact", "i => i.value") == ""
    assert opened.problems == []
    assert_the_key_was_never_sent(served, served.sealed.key)


async def test_a_raw_32_byte_key_file_opens_them_too(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    opened = await opened_with(browser, served, key_file(tmp_path, served.sealed.key, raw=True))
    assert ("dd", "Aminata") in await fields(opened.page, "contact")
    assert opened.problems == []


async def test_another_agencys_key_shows_the_wrong_key_message_and_no_field(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    other = PrivateKey.generate()
    opened = await opened_with(browser, served, key_file(tmp_path, other))
    for content in ("contact", "community_need"):
        assert await error_of(opened.page, content) == WRONG_KEY
        assert await fields(opened.page, content) == []
        assert await opened.page.is_hidden(f'section[data-content="{content}"] .disclosure-fields')
    assert opened.problems == []
    assert_the_key_was_never_sent(served, other)


async def test_a_file_that_is_no_key_shows_the_bad_file_message(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    notes, large = tmp_path / "notes.txt", tmp_path / "photo.jpg"
    notes.write_text("this is not a key at all\n")
    # a key's base64 and then much more: chosen by mistake, not read
    large.write_text(base64.b64encode(served.sealed.key.encode()).decode() + " " * 5000)
    for path in (notes, large):
        opened = await opened_with(browser, served, path)
        assert await error_of(opened.page, "contact") == BAD_FILE, path.name
        assert await fields(opened.page, "contact") == []
        assert opened.problems == []


async def test_the_browser_reports_the_missing_wasm_unsafe_eval(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    """The watch for CSP violations works, and the record's consequence holds: without
    'wasm-unsafe-eval' chromium refuses to compile libsodium's WebAssembly, says so, and the
    page never becomes able to open a box."""
    page = await (await browser.new_context()).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text))
    await page.add_init_script(WATCH_VIOLATIONS)
    await page.goto(served.url("/referral-without-wasm"))
    await page.wait_for_timeout(2_000)
    problems += await page.evaluate("window.__violations")
    assert await page.get_attribute("html", "data-disclosure-ready") is None
    assert any("wasm" in p.lower() or "WebAssembly" in p for p in problems), problems
