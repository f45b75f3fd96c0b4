"""The HTTP API for agency systems that cannot speak Kafka (docs/integrators.md §16): CloudEvents
in (binary or structured mode) to the agency's own topics, the inbox out (pages with a cursor,
or Server-Sent Events). Its OpenAPI document is docs/openapi/gateway.json (make contracts).

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at run
time, including the ``Sender`` alias local to :meth:`Api.router`."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from shared.contracts import events as ev
from shared.contracts import topics
from shared.contracts.envelope import EnvelopeError
from shared.kafka.agency_input import Refusal
from shared.logging import get_logger
from shared.tracing import current_traceparent, http_ingress

from .agency_kafka import KafkaRefused, ProducerPool, follow, read_page
from .auth import Authenticated, Authenticator, Refused
from .inbox import BadCursor, Cursor
from .ingress import (
    STRUCTURED,
    Family,
    binary_record,
    check,
    incoming_traceparent,
    refusal_body,
    structured_record,
    with_traceparent,
)
from .intake_keys import IntakeKeys, KeysUnavailable, sealed_for_intake
from .kafka_login import LoginResult
from .sealing import current_key

log = get_logger(__name__)

KEEPALIVE_S = 15.0
RECHECK_LOGIN_S = 30.0  # a stream re-checks its credential this often
_basic = HTTPBasic(
    realm="referral-exchange",
    description="An agency principal (agency.<agency_id> or agency.<agency_id>.<user>) and "
    "its Kafka SCRAM password.",
)


class Accepted(BaseModel):
    """The message is on the agency's topic (every in-sync replica has it); its answer comes on
    the inbox, correlated by ``id``."""

    id: str = Field(description="The CloudEvents id: the inbox answer's submission_id.")
    type: str
    topic: str


class InboxPage(BaseModel):
    events: list[dict[str, Any]] = Field(
        description="Inbox messages as structured CloudEvents, oldest first."
    )
    cursor: str = Field(description="Pass as ?cursor= to read what comes after these.")


class Problem(BaseModel):
    detail: str


class IntakeKeyList(BaseModel):
    """Intake's submission keys, as intake.keys.v1 holds them (docs/integrators.md §3)."""

    current: ev.SubmissionKey | None = Field(
        description="Seal a submission's personal block for this key and name it by its "
        "key_sha256. null: intake publishes no key (it opens no sealed block and takes the "
        "block in clear)."
    )
    keys: list[ev.SubmissionKey] = Field(
        description="Every key on the topic: the current one first, then the previous ones "
        "(boxes for them still open during a rotation), then the retired ones (a box for one "
        "is rejected sealed_key_unknown)."
    )


KEYS_UNAVAILABLE = "intake's keys cannot be read right now; nothing was published: try again"


_STRUCTURED_SCHEMA = {
    "type": "object",
    "required": ["specversion", "id", "source", "type", "data"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string"},
        "source": {"type": "string"},
        "type": {"type": "string", "description": "One of the types this topic carries."},
        "time": {"type": "string", "format": "date-time"},
        "correlationid": {"type": "string"},
        "datacontenttype": {"const": "application/json"},
        "data": {"type": "object", "description": "The message's contract (docs/schemas)."},
    },
}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            STRUCTURED: {"schema": _STRUCTURED_SCHEMA},
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "Binary mode: the data; the attributes are ce-id, ce-type, "
                    "ce-source, ce-specversion (and optional ce-time, ce-correlationid) headers.",
                }
            },
        },
    }
}


class Api:
    def __init__(
        self,
        authenticator: Authenticator,
        producers: ProducerPool,
        page_max: int,
        intake_keys: IntakeKeys,
    ):
        self.authenticator = authenticator
        self.producers = producers
        self.page_max = page_max
        self.intake_keys = intake_keys

    async def sender(
        self, credentials: Annotated[HTTPBasicCredentials, Depends(_basic)]
    ) -> Authenticated:
        result = await self.authenticator.authenticate(credentials.username, credentials.password)
        if isinstance(result, Refused):
            headers = {"WWW-Authenticate": 'Basic realm="referral-exchange"'}
            if result.retry_after_s is not None:
                headers["Retry-After"] = str(result.retry_after_s)
            raise HTTPException(result.status, result.reason, headers=headers)
        return result

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/v1", tags=["agency API"])
        Sender = Annotated[Authenticated, Depends(self.sender)]
        refusal = {"model": ev.SubmissionRejected, "description": "Refused: nothing published."}

        @router.post(
            "/{family}",
            status_code=202,
            response_model=Accepted,
            responses={
                400: refusal,
                401: {"model": Problem},
                403: {"model": Problem},
                503: {
                    "model": Problem,
                    "description": "A personal block in clear, and intake's keys could not be "
                    "read to seal it: nothing published; retry.",
                },
            },
            openapi_extra=_BODY,
            summary="Publish a message on the agency's own submissions, listings or responses",
            description="A case submission's or case update's `personal` block sent in clear "
            "is sealed by the gateway for intake's current key before it is published, so the "
            "broker never holds it readable (docs/integrators.md §15); a block the sender "
            "sealed is published as it came.",
        )
        async def publish(family: Family, request: Request, sender: Sender) -> Any:
            limit = topics.AGENCY_SUBMISSIONS.template.max_message_bytes or 256 * 1024
            body = await _read_body(request, 2 * limit)
            content_type = request.headers.get("content-type", "")
            try:
                if content_type.startswith(STRUCTURED):
                    headers, value = structured_record(body)
                else:
                    headers, value = binary_record(request.headers, body)
            except EnvelopeError as exc:
                refused = Refusal(
                    "(unknown)",
                    sender.principal.agency_id,
                    family.value,
                    "invalid CloudEvents envelope",
                    [ev.FieldError(field=f, message=m) for f, m in exc.errors],
                )
                return JSONResponse(refusal_body(refused), 400)
            # The request's span continues the sender's trace; the record carries it on.
            traced = incoming_traceparent(headers, request.headers.get("traceparent"))
            with http_ingress(f"POST /v1/{family.value}", traced):
                headers = with_traceparent(headers, current_traceparent())
                checked = check(family, sender.principal.agency_id, headers, value)
                if isinstance(checked, Refusal):
                    return JSONResponse(refusal_body(checked), 400)
                try:
                    # Checked in clear first, so that the 400 names the block's own fields.
                    checked = await sealed_for_intake(
                        checked,
                        family,
                        sender.principal.agency_id,
                        sender.connection,
                        self.intake_keys,
                    )
                except KeysUnavailable as exc:
                    raise HTTPException(
                        503, KEYS_UNAVAILABLE, headers={"Retry-After": "5"}
                    ) from exc
                if isinstance(checked, Refusal):
                    return JSONResponse(refusal_body(checked), 400)
                try:
                    await self.producers.publish(sender.connection, checked.record)
                except KafkaRefused as exc:
                    log.warning(
                        "gateway_publish_refused",
                        agency_id=sender.principal.agency_id,
                        error=str(exc),
                    )
                    raise HTTPException(
                        403, "the exchange refused to publish for this user"
                    ) from exc
            log.info(
                "gateway_published",
                agency_id=sender.principal.agency_id,
                ce_id=checked.record.event_id,
                ce_type=checked.record.ce_type,
            )
            record = checked.record
            return Accepted(id=record.event_id, type=record.ce_type, topic=record.topic)

        @router.delete(
            "/listings/{service_id}",
            status_code=202,
            responses={401: {"model": Problem}, 403: {"model": Problem}},
            summary="Withdraw one of the agency's service listings (a tombstone)",
        )
        async def withdraw(service_id: str, sender: Sender) -> Response:
            topic = topics.AGENCY_LISTINGS.name(sender.principal.agency_id)
            try:
                await self.producers.publish_tombstone(sender.connection, topic, service_id[:200])
            except KafkaRefused as exc:
                raise HTTPException(403, "the exchange refused to publish for this user") from exc
            return Response(status_code=202)

        @router.get(
            "/intake-keys",
            response_model=IntakeKeyList,
            responses={401: {"model": Problem}, 503: {"model": Problem}},
            summary="Intake's public keys, to seal a submission's personal block for",
            description="What intake.keys.v1 holds, read as the caller (any agency principal "
            "may read it) and kept by the gateway for a few minutes: the keys are public and "
            "the same for every agency.",
        )
        async def intake_keys(sender: Sender) -> IntakeKeyList:
            try:
                keys = await self.intake_keys.keys(sender.connection)
            except KeysUnavailable as exc:
                raise HTTPException(
                    503,
                    "intake's keys cannot be read right now; try again",
                    headers={"Retry-After": "5"},
                ) from exc
            return IntakeKeyList(current=current_key(keys), keys=keys)

        @router.get(
            "/inbox",
            response_model=InboxPage,
            responses={400: {"model": Problem}, 401: {"model": Problem}},
            summary="Read the agency's inbox after a cursor",
        )
        async def inbox(
            sender: Sender,
            cursor: Annotated[str | None, Query(max_length=4000)] = None,
            limit: Annotated[int, Query(ge=1, le=5000)] = 100,
        ) -> InboxPage:
            try:
                start = Cursor.decode(cursor)
            except BadCursor as exc:
                raise HTTPException(400, str(exc)) from exc
            try:
                messages, after = await read_page(
                    sender.connection, sender.principal.agency_id, start, min(limit, self.page_max)
                )
            except KafkaRefused as exc:
                raise HTTPException(403, "the exchange refused this user the inbox") from exc
            for message in messages:
                self.intake_keys.saw(message)
            return InboxPage(events=[m.as_cloudevent() for m in messages], cursor=after.encode())

        @router.get(
            "/inbox/stream",
            responses={
                200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
                400: {"model": Problem},
                401: {"model": Problem},
            },
            summary="Follow the agency's inbox as Server-Sent Events (id: the cursor after it)",
        )
        async def stream(
            sender: Sender,
            cursor: Annotated[str | None, Query(max_length=4000)] = None,
            last_event_id: Annotated[str | None, Header(max_length=4000)] = None,
        ) -> StreamingResponse:
            try:
                start = Cursor.decode(last_event_id or cursor)
            except BadCursor as exc:
                raise HTTPException(400, str(exc)) from exc
            events = self._events(sender, start)
            return StreamingResponse(
                events,
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )

        return router

    async def _events(self, sender: Authenticated, start: Cursor) -> AsyncIterator[bytes]:
        quiet_since = checked_at = time.monotonic()
        try:
            async for item in follow(sender.connection, sender.principal.agency_id, start):
                now = time.monotonic()
                if now - checked_at > RECHECK_LOGIN_S:
                    checked_at = now
                    if (
                        await self.authenticator.still_valid(sender.connection)
                        is LoginResult.REFUSED
                    ):
                        yield b'event: end\ndata: {"reason": "login no longer valid"}\n\n'
                        return
                if item is None:
                    if now - quiet_since > KEEPALIVE_S:
                        quiet_since = now
                        yield b": keep-alive\n\n"
                    continue
                message, after = item
                quiet_since = now
                self.intake_keys.saw(message)
                data = json.dumps(
                    message.as_cloudevent(), ensure_ascii=False, separators=(",", ":")
                )
                yield f"id: {after.encode()}\nevent: {message.ce_type}\ndata: {data}\n\n".encode()
        except KafkaRefused:
            yield b'event: end\ndata: {"reason": "the exchange refused this user the inbox"}\n\n'
        except asyncio.CancelledError:
            raise


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (before it is all in memory)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
