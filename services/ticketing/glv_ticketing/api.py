"""The status API portals read: a ticket by id or by code, with its history.

Each portal has its own bearer token and sees only its own tickets; another
portal's ticket answers 404, exactly like a ticket that does not exist.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from uuid import UUID

import asyncpg
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from glv_ticketing import store


def portal_for_token(header: str | None, tokens: Mapping[str, SecretStr]) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    offered = header.removeprefix("Bearer ").strip().encode()
    found: str | None = None
    for portal_id, token in tokens.items():
        # Compare against every token, in constant time each, whatever matches.
        if hmac.compare_digest(offered, token.get_secret_value().encode()):
            found = portal_id
    return found


def status_routes(pool: asyncpg.Pool, tokens: Mapping[str, SecretStr]) -> Sequence[BaseRoute]:
    async def answer(request: Request, *, ticket_id: UUID | None = None, code: str | None = None) -> Response:
        portal_id = portal_for_token(request.headers.get("authorization"), tokens)
        if portal_id is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        async with pool.acquire() as conn:
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
