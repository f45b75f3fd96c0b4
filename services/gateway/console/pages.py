"""The console's pages: login, the inbox of referrals received, one referral (its disclosure
opened in the browser, its answers), the referrals sent, the unmet needs, the follow-ups due
and the listings (the pages of the agency's cases are case_pages.py).

Every page is behind a session (sessions.py) whose credential the broker still accepts; every
referral page is looked up in the session's own agency's inbox, so another agency's referral is
404 whatever the URL; every form carries the session's form token (shared.web.form_tokens)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from shared.contracts import events as ev
from shared.contracts.outcomes import INDICATOR_SETS
from shared.contracts.taxonomy import TAXONOMY
from shared.kafka.agency_input import Refusal
from shared.logging import get_logger
from shared.web.form_tokens import new_form_token, token_ok

from ..agency_kafka import KafkaRefused, read_listings
from ..auth import Authenticator, Refused
from ..ingress import Family
from ..kafka_login import LoginResult
from ..sessions import Session, Sessions
from .case_pages import CasePages
from .publishing import ConsolePublisher
from .publishing import now as _now
from .rendering import Renderer

log = get_logger(__name__)

_SESSION = "session_id"
# The provider's answers the referral page offers, per current state (referral's lifecycle
# decides; the page offers only what it would accept).
ACTIONS_BY_STATE: dict[str, tuple[ev.ResponseAction, ...]] = {
    "requested": (ev.ResponseAction.ACCEPT, ev.ResponseAction.REJECT),
    "received": (ev.ResponseAction.ACCEPT, ev.ResponseAction.REJECT),
    "accepted": (ev.ResponseAction.START, ev.ResponseAction.COMPLETE, ev.ResponseAction.FAIL),
    "in_progress": (ev.ResponseAction.HOLD, ev.ResponseAction.COMPLETE, ev.ResponseAction.FAIL),
    "on_hold": (ev.ResponseAction.RESUME, ev.ResponseAction.FAIL),
}

Page = Callable[[Request, Session], Awaitable[Response]]
# The indicator set the console's assessment form asks (intake scores it).
ASSESSMENT_SET = "rss-v1"


def reasons_for(action: ev.ResponseAction) -> list[str]:
    return [r.value for r in TAXONOMY.reasons_for(ev.ACTION_TARGET[action].value)]


class Console:
    def __init__(
        self,
        authenticator: Authenticator,
        sessions: Sessions,
        publisher: ConsolePublisher,
        renderer: Renderer,
    ) -> None:
        self.authenticator = authenticator
        self.sessions = sessions
        self.publisher = publisher
        self.case_pages = CasePages(renderer, publisher)
        self.renderer = renderer

    # ----- the session -----

    async def _session(self, request: Request) -> Session | None:
        session = await self.sessions.get(request.session.get(_SESSION))
        if session is None:
            return None
        # The broker decides at every click: a removed user or changed password ends here.
        if await self.authenticator.still_valid(session.connection) is LoginResult.REFUSED:
            log.info("console_session_refused", agency_id=session.principal.agency_id)
            await self.sessions.end(session.session_id)
            request.session.clear()
            return None
        return session

    def guard(self, page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            session = await self._session(request)
            if session is None:
                target = quote(request.url.path)
                return RedirectResponse(f"/login?next={target}", status_code=303)
            if request.method == "POST":
                form = await request.form()
                if not token_ok(request, form.get("form_token")):
                    return self.renderer.error(request, 403, "The form has expired; try again.")
            return await page(request, session)

        return guarded

    async def login_page(self, request: Request) -> Response:
        if request.method == "GET":
            return self.renderer.page(
                request, "login.html", {"next": request.query_params.get("next", "")}
            )
        form = await request.form()
        if not token_ok(request, form.get("form_token")):
            return self.renderer.error(request, 403, "The form has expired; try again.")
        login, password = str(form.get("login", "")), str(form.get("password", ""))
        result = await self.authenticator.authenticate(login.strip(), password)
        if isinstance(result, Refused):
            status = result.status
            message = {
                401: "Unknown user or wrong password.",
                429: "Too many failed logins: wait a few minutes and try again.",
                503: "The exchange cannot be reached; try again shortly.",
            }[status]
            return self.renderer.page(
                request, "login.html", {"error": message, "next": form.get("next", "")}, status
            )
        session = self.sessions.open(result.principal, result.connection)
        request.session.clear()
        request.session[_SESSION] = session.session_id
        new_form_token(request)  # a new session, a new token (no fixation)
        log.info("console_login", agency_id=result.principal.agency_id)
        return RedirectResponse(_safe_next(str(form.get("next", ""))), status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if token_ok(request, form.get("form_token")):
            sid = request.session.get(_SESSION)
            if isinstance(sid, str):
                await self.sessions.end(sid)
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # ----- pages -----

    async def inbox(self, request: Request, session: Session) -> Response:
        view = session.view
        return self.renderer.page(
            request,
            "inbox.html",
            {"session": session, "referrals": view.received_in_order(), "now": _now()},
        )

    async def referral(self, request: Request, session: Session) -> Response:
        referral_id = request.path_params["referral_id"]
        referral = session.view.received.get(referral_id)
        if referral is None:
            # Not this agency's (or not arrived yet): the same answer either way.
            return self.renderer.error(request, 404, "No referral of your agency has this id.")
        actions = ACTIONS_BY_STATE.get(referral.state, ()) if referral.open else ()
        return self.renderer.page(
            request,
            "referral.html",
            {
                "session": session,
                "referral": referral,
                "actions": [(a.value, reasons_for(a)) for a in actions],
                "outcomes": [o.value for o in ev.Outcome],
                "sent": request.query_params.get("sent"),
            },
        )

    async def respond(self, request: Request, session: Session) -> Response:
        referral_id = request.path_params["referral_id"]
        referral = session.view.received.get(referral_id)
        if referral is None:
            return self.renderer.error(request, 404, "No referral of your agency has this id.")
        form = await request.form()
        data: dict[str, Any] = {
            "referral_id": referral_id,
            "agency_id": session.principal.agency_id,
            "action": str(form.get("action", "")),
            "responded_at": _now().isoformat(),
        }
        for name in ("reason_code", "outcome"):
            if form.get(name):
                data[name] = str(form.get(name))
        result = await self.publisher.publish(
            session, Family.RESPONSES, ev.RESPONSE_SUBMITTED, data
        )
        if isinstance(result, Refusal):
            return self.renderer.page(
                request,
                "refused.html",
                {"session": session, "refusal": result, "back": f"/referrals/{referral_id}"},
                400,
            )
        return RedirectResponse(f"/referrals/{referral_id}?sent={data['action']}", status_code=303)

    async def sent(self, request: Request, session: Session) -> Response:
        referrals = sorted(session.view.sent.values(), key=lambda r: r.changed_at, reverse=True)
        return self.renderer.page(
            request, "sent.html", {"session": session, "referrals": referrals}
        )

    async def unmet(self, request: Request, session: Session) -> Response:
        needs = sorted(session.view.unmet.values(), key=lambda n: n["time"], reverse=True)
        return self.renderer.page(request, "unmet.html", {"session": session, "needs": needs})

    async def follow_ups(self, request: Request, session: Session) -> Response:
        due = sorted(session.view.follow_ups.values(), key=lambda f: f.get("due_on", ""))
        return self.renderer.page(
            request,
            "follow_ups.html",
            {"session": session, "due": due, "sent": request.query_params.get("sent")},
        )

    async def listings(self, request: Request, session: Session) -> Response:
        try:
            listings = await read_listings(session.connection, session.principal.agency_id)
        except KafkaRefused:
            return self.renderer.error(request, 503, "Your listings cannot be read right now.")
        return self.renderer.page(
            request,
            "listings.html",
            {
                "session": session,
                "listings": sorted(listings.values(), key=lambda x: str(x.get("name", ""))),
                "statuses": [c.value for c in ev.CapacityStatus],
                "sent": request.query_params.get("sent"),
            },
        )

    async def set_capacity(self, request: Request, session: Session) -> Response:
        """A new capacity for one of the agency's listings: the listing as it stands, with the
        capacity changed and verified today, published again (referral applies it and tells
        the inbox)."""
        service_id = request.path_params["service_id"]
        try:
            listings = await read_listings(session.connection, session.principal.agency_id)
        except KafkaRefused:
            return self.renderer.error(request, 503, "Your listings cannot be read right now.")
        listing = listings.get(service_id)
        if listing is None:
            return self.renderer.error(request, 404, "Your agency has no listing with this id.")
        form = await request.form()
        slots = str(form.get("open_slots", "")).strip()
        capacity: dict[str, Any] = {"status": str(form.get("status", ""))}
        if slots:
            capacity["open_slots"] = int(slots) if slots.isdigit() else slots
        data = {**listing, "capacity": capacity, "assured_date": _now().date().isoformat()}
        result = await self.publisher.publish(session, Family.LISTINGS, ev.SERVICE_LISTED, data)
        if isinstance(result, Refusal):
            return self.renderer.page(
                request,
                "refused.html",
                {"session": session, "refusal": result, "back": "/listings"},
                400,
            )
        return RedirectResponse(f"/listings?sent={quote(service_id)}", status_code=303)

    async def assessment_form(self, request: Request, session: Session) -> Response:
        due = self._follow_up(request, session)
        if due is None:
            return self.renderer.error(request, 404, "No follow-up of your cases has this id.")
        return self.renderer.page(
            request,
            "assessment.html",
            {"session": session, "due": due, "indicators": INDICATOR_SETS[ASSESSMENT_SET]},
        )

    async def assess(self, request: Request, session: Session) -> Response:
        """The follow-up interview's answers, one option per indicator: an assessment on the
        agency's submissions topic (intake scores it and answers on the inbox)."""
        due = self._follow_up(request, session)
        if due is None:
            return self.renderer.error(request, 404, "No follow-up of your cases has this id.")
        form = await request.form()
        indicator_set = INDICATOR_SETS[ASSESSMENT_SET]
        answers = [
            {"indicator": i.id, "answer": str(form.get(f"answer-{i.id}", ""))}
            for i in indicator_set.indicators
            if form.get(f"answer-{i.id}")
        ]
        data = {
            "agency_id": session.principal.agency_id,
            "case_id": due["case_id"],
            "wave": due["wave"],
            "assessed_on": str(form.get("assessed_on") or _now().date().isoformat()),
            "indicator_set": indicator_set.id,
            "answers": answers,
        }
        result = await self.publisher.publish(
            session, Family.SUBMISSIONS, ev.ASSESSMENT_SUBMITTED, data
        )
        if isinstance(result, Refusal):
            back = f"/follow-ups/{quote(due['case_id'])}/{quote(due['wave'])}"
            return self.renderer.page(
                request, "refused.html", {"session": session, "refusal": result, "back": back}, 400
            )
        return RedirectResponse("/follow-ups?sent=assessment", status_code=303)

    @staticmethod
    def _follow_up(request: Request, session: Session) -> dict[str, Any] | None:
        key = (request.path_params["case_id"], request.path_params["wave"])
        return session.view.follow_ups.get(key)

    async def messages(self, request: Request, session: Session) -> Response:
        answers = list(reversed(session.view.answers))[:200]
        return self.renderer.page(
            request, "messages.html", {"session": session, "answers": answers}
        )

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/login", self.login_page, methods=["GET", "POST"])
        router.add_api_route("/logout", self.logout, methods=["POST"])
        router.add_api_route("/", self.guard(self.inbox), methods=["GET"])
        router.add_api_route("/inbox", self.guard(self.inbox), methods=["GET"])
        router.add_api_route("/referrals/{referral_id}", self.guard(self.referral), methods=["GET"])
        router.add_api_route(
            "/referrals/{referral_id}/respond", self.guard(self.respond), methods=["POST"]
        )
        router.add_api_route("/sent", self.guard(self.sent), methods=["GET"])
        router.add_api_route("/unmet", self.guard(self.unmet), methods=["GET"])
        router.add_api_route("/follow-ups", self.guard(self.follow_ups), methods=["GET"])
        router.add_api_route(
            "/follow-ups/{case_id}/{wave}", self.guard(self.assessment_form), methods=["GET"]
        )
        router.add_api_route(
            "/follow-ups/{case_id}/{wave}", self.guard(self.assess), methods=["POST"]
        )
        router.add_api_route("/messages", self.guard(self.messages), methods=["GET"])
        router.add_api_route("/listings", self.guard(self.listings), methods=["GET"])
        router.add_api_route(
            "/listings/{service_id}/capacity", self.guard(self.set_capacity), methods=["POST"]
        )
        self.case_pages.routes(router, self.guard)
        return router


def _safe_next(target: str) -> str:
    """Where to go after login: a path of this console only (never another site)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/inbox"
    if any(ord(c) < 32 for c in target):
        return "/inbox"
    return target
