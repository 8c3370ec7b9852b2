"""HTTP routes of the scheduler: the meeting platform's signed webhook."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from pydantic import SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from glv_runtime.logs import get_logger
from glv_runtime.unit_of_work import Database
from glv_scheduler import sessions
from glv_scheduler.webhooks import WebhookRejected, parse_meeting_ended, verify

log = get_logger(__name__)


def webhook_routes(
    db: Database,
    secrets: Sequence[SecretStr],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Sequence[BaseRoute]:
    keys = [s.get_secret_value().encode() for s in secrets]

    async def meeting_ended(request: Request) -> Response:
        body = await request.body()
        now = clock()
        if not keys:
            return JSONResponse({"error": "webhook secrets are not configured"}, status_code=503)
        try:
            verify(keys, request.headers, body, now)
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
