"""The console's pages of the agency's own cases: the list, the new-case form, one case and what
its owner does with it (replace its needs, withdraw consent, end its assistance, close it, offer
it to another agency), and the handovers waiting on the agency's answer.

Every case page is looked up in the session's own agency's view (cases it registered or was
handed, handovers its inbox was told of), so another agency's case is 404 whatever the URL.
Each action is one message on the agency's own topic (publishing.py), answered on its inbox:
the Answers page shows what the exchange made of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from shared.contracts import events as ev
from shared.kafka.agency_input import Refusal

from ..ingress import Family
from ..sessions import Session
from . import case_form
from .publishing import ConsolePublisher, now
from .rendering import Renderer

Page = Callable[[Request, Session], Awaitable[Response]]
Guard = Callable[[Page], Callable[[Request], Awaitable[Response]]]

NO_CASE = "Your agency has no case with this reference."
NO_HANDOVER = "No handover waits on your agency's answer under this id."


class CasePages:
    def __init__(self, renderer: Renderer, publisher: ConsolePublisher) -> None:
        self.renderer = renderer
        self.publisher = publisher

    async def cases(self, request: Request, session: Session) -> Response:
        cases = sorted(session.view.cases.values(), key=lambda c: c["time"], reverse=True)
        return self.renderer.page(
            request,
            "cases.html",
            {"session": session, "cases": cases, "handovers": session.view.handovers_to_answer()},
        )

    def _case_form(
        self,
        request: Request,
        session: Session,
        values: dict[str, Any],
        refusal: Refusal | None = None,
    ) -> Response:
        return self.renderer.page(
            request,
            "case_form.html",
            {
                "session": session,
                "values": values,
                "refusal": refusal,
                "sexes": case_form.SEXES,
                "age_bands": case_form.AGE_BANDS,
                "return_types": case_form.RETURN_TYPES,
                "purposes": case_form.PURPOSES,
                "methods": case_form.METHODS,
                "categories": case_form.categories(),
                "needs": range(1, case_form.MAX_FORM_NEEDS + 1),
                "phone_pattern": case_form.PHONE_INPUT_PATTERN,
            },
            400 if refusal else 200,
        )

    async def new_case(self, request: Request, session: Session) -> Response:
        return self._case_form(request, session, {"purposes": ["referral", "follow_up"]})

    async def submit_case(self, request: Request, session: Session) -> Response:
        """A new case from the form: checked by intake's own rules here (a refusal shows the
        form again, as typed, with each field's reason), then published as the agency's."""
        form = await request.form()
        purposes = [str(p) for p in form.getlist("purposes")]
        data = case_form.case_submission(session.principal.agency_id, form, purposes, now())
        result = await self.publisher.publish(session, Family.SUBMISSIONS, ev.CASE_SUBMITTED, data)
        if isinstance(result, Refusal):
            values = {k: str(v) for k, v in form.items() if k != "form_token"}
            return self._case_form(request, session, {**values, "purposes": purposes}, result)
        ref = quote(data["agency_case_ref"])
        return RedirectResponse(f"/cases?sent={ref}", status_code=303)

    async def case(self, request: Request, session: Session) -> Response:
        case = session.view.cases.get(request.path_params["agency_case_ref"])
        if case is None:
            return self.renderer.error(request, 404, NO_CASE)
        return self.renderer.page(
            request,
            "case.html",
            {
                "session": session,
                "case": case,
                "handovers": session.view.handovers_of_case(case.get("case_id", "")),
                "end_reasons": [r.value for r in ev.AssistanceEndReason],
                "closure_reasons": [r.value for r in ev.ClosureReason],
                "handover_reasons": case_form.HANDOVER_REASONS,
                "categories": case_form.categories(),
                "urgencies": case_form.URGENCIES,
                "needs": range(1, case_form.MAX_FORM_NEEDS + 1),
                "sent": request.query_params.get("sent"),
            },
        )

    async def case_action(self, request: Request, session: Session) -> Response:
        """One act of the case's owner, as one message on its own topic: replace the needs,
        withdraw consent, end its assistance, close the case, or offer it to another agency."""
        ref = request.path_params["agency_case_ref"]
        case = session.view.cases.get(ref)
        if case is None:
            return self.renderer.error(request, 404, NO_CASE)
        form = await request.form()
        action = str(form.get("action", ""))
        agency_id = session.principal.agency_id
        base = {"agency_id": agency_id, "agency_case_ref": ref}
        at = now().isoformat()
        reason = str(form.get("reason", ""))
        built: dict[str, tuple[Family, str, dict[str, Any]]] = {
            "replace-needs": (
                Family.SUBMISSIONS,
                ev.CASE_UPDATE_SUBMITTED,
                case_form.needs_update(agency_id, ref, form),
            ),
            "withdraw-consent": (
                Family.SUBMISSIONS,
                ev.CONSENT_WITHDRAWN,
                {**base, "withdrawn_at": at},
            ),
            "end-assistance": (
                Family.SUBMISSIONS,
                ev.ASSISTANCE_END_SUBMITTED,
                {**base, "ended_at": at, "reason": reason},
            ),
            "close": (
                Family.SUBMISSIONS,
                ev.CASE_CLOSURE_SUBMITTED,
                {**base, "closed_at": at, "reason": reason},
            ),
            "propose-handover": (
                Family.RESPONSES,
                ev.HANDOVER_PROPOSAL_SUBMITTED,
                case_form.handover_proposal(agency_id, str(case.get("case_id", "")), form, now()),
            ),
        }
        if action not in built:
            return self.renderer.error(request, 400, "Unknown action.")
        family, ce_type, data = built[action]
        result = await self.publisher.publish(session, family, ce_type, data)
        back = f"/cases/{quote(ref)}"
        if isinstance(result, Refusal):
            return self.renderer.page(
                request, "refused.html", {"session": session, "refusal": result, "back": back}, 400
            )
        return RedirectResponse(f"{back}?sent={action}", status_code=303)

    async def handover(self, request: Request, session: Session) -> Response:
        handover = _waiting(request, session)
        if handover is None:
            return self.renderer.error(request, 404, NO_HANDOVER)
        return self.renderer.page(
            request,
            "handover.html",
            {
                "session": session,
                "handover": handover,
                "decline_reasons": case_form.DECLINE_REASONS,
            },
        )

    async def answer_handover(self, request: Request, session: Session) -> Response:
        """Accept or reject a handover waiting on the agency: an offer of another agency's case
        (accepted under the reference the agency will keep it under), or a request for one of
        its own cases."""
        handover = _waiting(request, session)
        if handover is None:
            return self.renderer.error(request, 404, NO_HANDOVER)
        form = await request.form()
        data = case_form.handover_answer(session.principal.agency_id, handover, form)
        result = await self.publisher.publish(
            session, Family.RESPONSES, ev.HANDOVER_ANSWER_SUBMITTED, data
        )
        if isinstance(result, Refusal):
            back = f"/handovers/{quote(handover['handover_id'])}"
            return self.renderer.page(
                request, "refused.html", {"session": session, "refusal": result, "back": back}, 400
            )
        return RedirectResponse(f"/cases?sent=handover-{quote(data['action'])}", status_code=303)

    def routes(self, router: APIRouter, guard: Guard) -> None:
        router.add_api_route("/cases", guard(self.cases), methods=["GET"])
        router.add_api_route("/cases/new", guard(self.new_case), methods=["GET"])
        router.add_api_route("/cases/new", guard(self.submit_case), methods=["POST"])
        router.add_api_route("/cases/{agency_case_ref}", guard(self.case), methods=["GET"])
        router.add_api_route(
            "/cases/{agency_case_ref}/act", guard(self.case_action), methods=["POST"]
        )
        router.add_api_route("/handovers/{handover_id}", guard(self.handover), methods=["GET"])
        router.add_api_route(
            "/handovers/{handover_id}", guard(self.answer_handover), methods=["POST"]
        )


def _waiting(request: Request, session: Session) -> dict[str, Any] | None:
    """The handover of this id if it waits on the session's agency's answer, else None."""
    handover_id = request.path_params["handover_id"]
    for handover in session.view.handovers_to_answer():
        if handover["handover_id"] == handover_id:
            return handover
    return None
