"""HTTP routes of the scheduler: the meeting platform's signed webhook, officers' agenda and feed.

Nothing here logs a request's path or query: the feed's path carries the officer's token
(uvicorn's access log is off, see glv_runtime.service).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from glv_runtime.logs import get_logger
from glv_runtime.tokens import bearer_token
from glv_runtime.unit_of_work import Database
from glv_scheduler import agenda, officer_tokens, sessions, store
from glv_scheduler.meetings import MeetingProvider
from glv_scheduler.webhooks import (
    BadContentLength,
    BodyTooLarge,
    WebhookRejected,
    check_headers,
    check_signature,
    declared_length,
    parse_meeting_ended,
    read_body,
)

log = get_logger(__name__)
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _too_large(limit: int) -> Response:
    # The connection is closed after the answer: the rest of the body is never read.
    return JSONResponse({"error": f"body over {limit} bytes"}, status_code=413, headers={"Connection": "close"})


def webhook_routes(
    db: Database, secrets: Sequence[SecretStr], clock: Clock = _utc_now, max_body_bytes: int = 256 * 1024
) -> Sequence[BaseRoute]:
    keys = [key for key in (s.get_secret_value().encode() for s in secrets) if key]

    async def meeting_ended(request: Request) -> Response:
        if not keys:
            return JSONResponse({"error": "webhook secrets are not configured"}, status_code=503)
        # Size and headers before the body, signature before parsing: see glv_scheduler.webhooks.
        try:
            declared = declared_length(request.headers)
        except BadContentLength:
            return JSONResponse({"error": "invalid Content-Length"}, status_code=400)
        if declared is not None and declared > max_body_bytes:
            log.warning("webhook refused", reason="body_too_large", declared=declared)
            return _too_large(max_body_bytes)
        now = clock()
        try:
            signed = check_headers(request.headers, now)
            body = await read_body(request.stream(), declared, max_body_bytes)
            check_signature(keys, signed, body)
        except BodyTooLarge:
            log.warning("webhook refused", reason="body_too_large")
            return _too_large(max_body_bytes)
        except WebhookRejected as rejected:
            log.warning("webhook refused", reason=rejected.reason)
            return JSONResponse({"error": rejected.reason}, status_code=401)
        try:
            report = parse_meeting_ended(body)
        except ValidationError as exc:
            # Where and what, never the values sent (they may carry names).
            problems = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['type']}" for e in exc.errors()[:20]]
            return JSONResponse({"error": "invalid payload", "problems": problems}, status_code=400)
        except ValueError:
            return JSONResponse({"error": "invalid payload", "problems": ["body is not JSON"]}, status_code=400)
        try:
            async with db.unit_of_work() as uow:
                messages = await sessions.meeting_ended(uow.conn, report, now)
                uow.publish_messages(messages or [])
        except sessions.UnknownSlot:
            # Raised inside the transaction, so the delivery id is not kept: a retry may succeed.
            return JSONResponse({"error": "unknown room"}, status_code=404)
        if messages is None:
            return JSONResponse({"status": "duplicate"})
        return JSONResponse({"status": "recorded", "events": len(messages)})

    return [Route("/v1/webhooks/meetings", meeting_ended, methods=["POST"])]


def officer_routes(db: Database, provider: MeetingProvider, clock: Clock = _utc_now) -> Sequence[BaseRoute]:
    """`GET /v1/officers/me/agenda` (Bearer agenda token) and `GET /v1/officers/feed/{token}.ics`."""

    async def slots_of(
        token: str | None, purpose: officer_tokens.Purpose, window: tuple[datetime, datetime], limit: int
    ) -> tuple[str, list[agenda.OfficerSlot]] | None:
        async with db.pool.acquire() as conn:
            officer_id = await officer_tokens.officer_of(conn, token, purpose)
            if officer_id is None:
                return None
            return officer_id, await store.officer_slots(conn, officer_id, *window, limit)

    def link_for(officer_id: str) -> Callable[[agenda.OfficerSlot], str]:
        return lambda slot: agenda.moderator_link(provider, slot.plan, officer_id)

    async def officer_agenda(request: Request) -> Response:
        raw_days = request.query_params.get("recent_days", "0")
        if not (raw_days.isascii() and raw_days.isdigit()) or int(raw_days) > agenda.MAX_RECENT_DAYS:
            return JSONResponse(
                {"error": f"recent_days must be a whole number from 0 to {agenda.MAX_RECENT_DAYS}"}, status_code=400
            )
        now = clock()
        found = await slots_of(
            bearer_token(request.headers.get("authorization")),
            "agenda",
            agenda.agenda_window(now, int(raw_days)),
            agenda.MAX_AGENDA_SESSIONS,
        )
        if found is None:
            # One answer for a missing, empty, unknown or revoked token: nothing to tell them apart.
            return JSONResponse(
                {"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="glv-officer"'}
            )
        officer_id, slots = found
        body = agenda.agenda_json(officer_id, slots, link_for(officer_id), now)
        return JSONResponse(body, headers={"Cache-Control": agenda.CACHE_CONTROL})

    async def officer_feed(request: Request) -> Response:
        now = clock()
        found = await slots_of(request.path_params["token"], "feed", agenda.feed_window(now), agenda.MAX_FEED_EVENTS)
        if found is None:
            # An unknown and a revoked token get the same answer, which is Starlette's for no route.
            return PlainTextResponse("Not Found", status_code=404)
        officer_id, slots = found
        return Response(
            agenda.feed_calendar(officer_id, slots, link_for(officer_id), now),
            media_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": agenda.CACHE_CONTROL},
        )

    return [
        Route("/v1/officers/me/agenda", officer_agenda, methods=["GET"]),
        Route("/v1/officers/feed/{token}.ics", officer_feed, methods=["GET"]),
    ]
