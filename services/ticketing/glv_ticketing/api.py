"""The status API portals read: a ticket by id or by code, with its history.

Each portal has its own bearer token (issued by `glv-ticketing portal onboard`,
stored only as a hash) and sees only its own tickets; another portal's ticket
answers 404, exactly like a ticket that does not exist. A missing, empty, unknown
or revoked token answers 401.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from glv_runtime.tokens import bearer_token, token_hash
from glv_ticketing import store


def status_routes(pool: asyncpg.Pool) -> Sequence[BaseRoute]:
    async def answer(request: Request, *, ticket_id: UUID | None = None, code: str | None = None) -> Response:
        token = bearer_token(request.headers.get("authorization"))
        async with pool.acquire() as conn:
            portal_id = await store.portal_for_token(conn, token_hash(token)) if token else None
            if portal_id is None:
                return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            # One snapshot: the status and the history it came from, never one without the other.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                ticket = await store.find_ticket(conn, ticket_id=ticket_id, code=code)
        if ticket is None or ticket["portal_id"] != portal_id:
            return JSONResponse({"error": "not_found"}, status_code=404)
        return JSONResponse(ticket)

    async def by_id(request: Request) -> Response:
        try:
            ticket_id = UUID(request.path_params["ticket_id"])
        except ValueError:
            return JSONResponse({"error": "ticket_id must be a UUID"}, status_code=400)
        return await answer(request, ticket_id=ticket_id)

    async def by_code(request: Request) -> Response:
        return await answer(request, code=request.path_params["code"])

    return [
        Route("/v1/tickets/by-code/{code}", by_code),
        Route("/v1/tickets/{ticket_id}", by_id),
    ]
