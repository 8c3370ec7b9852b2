"""Downloads through signed links: GET /v1/archive/objects/{object_id}?exp=&to=&sig=.

Every request is written to the audit before anything is sent: an allowed download with
its recipient, a refusal with its reason (malformed, bad_signature, expired, not_found,
shredded, key_unavailable). The object is decrypted as it streams (a thread reads the
store in ranges through Tink's decrypting stream); a blob that fails authentication stops
the response short of its Content-Length, so a client never takes a tampered file whole.
"""

from __future__ import annotations

import mimetypes
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from glv_archive import links, store
from glv_archive.keys import Keyring, KeyUnavailable, WrappedKey
from glv_archive.storage import ObjectStore
from glv_runtime.logs import get_logger
from glv_runtime.unit_of_work import Database

log = get_logger(__name__)

_STATUS = {"malformed": 403, "bad_signature": 403, "expired": 403, "not_found": 404, "shredded": 410}


def download_url(base_url: str, link: links.SignedLink) -> str:
    return f"{base_url.rstrip('/')}/v1/archive/objects/{link.object_id}?{link.query()}"


def download_routes(
    db: Database, keyring: Keyring, objects: ObjectStore, secret: bytes, clock: Callable[[], datetime]
) -> Sequence[BaseRoute]:
    async def refuse(actor: str, object_id: uuid.UUID | None, reason: str, status: int) -> Response:
        async with db.unit_of_work() as uow:
            await store.audit(
                uow.conn, action="download", outcome="refused", actor=actor, object_id=object_id, reason=reason
            )
        return JSONResponse({"error": reason}, status_code=status, headers={"Cache-Control": "no-store"})

    async def download(request: Request) -> Response:
        try:
            object_id = uuid.UUID(request.path_params["object_id"])
        except ValueError:
            return await refuse("unknown", None, "malformed", 403)
        q = request.query_params
        recipient, refusal = links.check(secret, object_id, q.get("exp"), q.get("to"), q.get("sig"), clock())
        if refusal is not None:
            return await refuse(recipient, object_id, refusal, _STATUS[refusal])
        async with db.pool.acquire() as conn:
            row = await store.get_object(conn, object_id)
        if row is None:
            return await refuse(recipient, object_id, "not_found", 404)
        if row["wrapped_key"] is None:
            return await refuse(recipient, object_id, "shredded", 410)
        try:
            data_key = keyring.unwrap(object_id, WrappedKey(row["key_id"], bytes(row["wrapped_key"])))
        except KeyUnavailable:
            log.error("an object's data key cannot be unwrapped", object_id=str(object_id), key_id=row["key_id"])
            return await refuse(recipient, object_id, "key_unavailable", 503)
        async with db.unit_of_work() as uow:
            await store.audit(
                uow.conn,
                action="download",
                outcome="allowed",
                actor=recipient,
                object_id=object_id,
                session_id=row["session_id"],
                detail={"expires": int(q["exp"])},
            )
        extension = mimetypes.guess_extension(row["content_type"].split(";")[0].strip()) or ".bin"
        filename = f"{row['session_id']}-{row['kind']}{extension}"
        return StreamingResponse(
            objects.open_decrypted(row["object_key"], data_key, object_id.bytes),
            media_type=row["content_type"],
            headers={
                "Content-Length": str(row["size_bytes"]),
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                # A record is HTML: never run anything in it, even if opened inline.
                "Content-Security-Policy": "sandbox; default-src 'none'",
                "X-Archive-SHA256": row["sha256"],
            },
        )

    return [Route("/v1/archive/objects/{object_id}", download, methods=["GET"])]
