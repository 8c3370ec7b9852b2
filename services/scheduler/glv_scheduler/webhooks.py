"""Signed webhooks from the meeting platform (or our adapter in front of it), checked without I/O.

The sender POSTs JSON with

    X-GLV-Timestamp: <unix seconds>
    X-GLV-Signature: sha256=<hex HMAC-SHA256(secret, b"<timestamp>." + raw body)>

Signing the timestamp together with the body stops an attacker from re-dating a captured
delivery, so the tolerance bounds how long a capture can be replayed; inside that window a
replay is a duplicate `delivery_id`, which the handler ignores. Verification must run on the
raw bytes as received, before any JSON parsing.

The route's order, so that an unauthenticated sender costs as little as possible: a declared
length over the limit is refused (413) before anything is read, the headers are checked
(401) before the body is, the body is read counting (413 as soon as it passes the limit),
the signature is checked on those bytes (401), and only then is the JSON parsed (400).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator

from glv_schemas.base import Model, UtcInstant
from glv_schemas.events import Artifact, Attendance

TIMESTAMP_HEADER = "X-GLV-Timestamp"
SIGNATURE_HEADER = "X-GLV-Signature"
DEFAULT_TOLERANCE = timedelta(minutes=5)

RejectReason = Literal[
    "missing_timestamp",
    "missing_signature",
    "malformed_timestamp",
    "malformed_signature",
    "stale_timestamp",
    "future_timestamp",
    "bad_signature",
]

# Plain digits only: int() would also take "+1", " 1" and "1_0", which a signer never sends.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


class WebhookRejected(Exception):
    """The delivery is not authentic or not fresh; answer 401 and do not act on it."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(reason)
        self.reason: RejectReason = reason


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-GLV-Signature` value for `body` sent at `timestamp` (unix seconds)."""
    if not secret:
        raise ValueError("webhook secret must not be empty")
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


@dataclass(frozen=True)
class SignedHeaders:
    """What the signature headers say, syntax and freshness checked."""

    timestamp: int
    signature: bytes  # lower-case hex digits


def check_headers(headers: Mapping[str, str], now: datetime, tolerance: timedelta = DEFAULT_TOLERANCE) -> SignedHeaders:
    """The signature headers, or `WebhookRejected`: checked before the body is read, since
    they need no key and no body, so that an unsigned or stale delivery costs no read."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    if raw_timestamp is None:
        raise WebhookRejected("missing_timestamp")
    raw_signature = _header(headers, SIGNATURE_HEADER)
    if raw_signature is None:
        raise WebhookRejected("missing_signature")
    raw_timestamp = raw_timestamp.strip()
    if not _TIMESTAMP.fullmatch(raw_timestamp):
        raise WebhookRejected("malformed_timestamp")
    match = _SIGNATURE.fullmatch(raw_signature.strip())
    if match is None:
        raise WebhookRejected("malformed_signature")
    age = now.timestamp() - int(raw_timestamp)
    if age > tolerance.total_seconds():
        raise WebhookRejected("stale_timestamp")
    if -age > tolerance.total_seconds():
        raise WebhookRejected("future_timestamp")
    return SignedHeaders(int(raw_timestamp), match.group(1).lower().encode())


def check_signature(secrets: bytes | Sequence[bytes], signed: SignedHeaders, body: bytes) -> None:
    """Accept the raw body's signature or raise `WebhookRejected("bad_signature")`.

    An empty key is never tried: anyone can compute an HMAC with it. With no other key,
    nothing verifies."""
    keys = [k for k in ([secrets] if isinstance(secrets, bytes) else secrets) if k]
    # Every key is tried, so the time taken does not tell which one matched.
    matched = False
    for key in keys:
        expected = sign(key, signed.timestamp, body).removeprefix("sha256=").encode()
        matched |= hmac.compare_digest(expected, signed.signature)
    if not matched:
        raise WebhookRejected("bad_signature")


def verify(
    secrets: bytes | Sequence[bytes],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Accept the delivery or raise `WebhookRejected` with the reason.

    `secrets` may list several keys so that a secret can be rotated: the sender switches to
    the new key while both are accepted here, then the old one is dropped. Freshness is
    checked first: it is cheap and needs no key.
    """
    check_signature(secrets, check_headers(headers, now, tolerance), body)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # HTTP header names are case-insensitive, and frameworks differ in how they store them.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


# ---------------------------------------------------------------------- body ->


class BodyTooLarge(Exception):
    """The body is over the limit; answer 413 and read no more of it."""


class BadContentLength(Exception):
    """The Content-Length header is not a plain number."""


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The Content-Length the sender declared; None when it sends chunks instead."""
    raw = _header(headers, "Content-Length")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit():
        raise BadContentLength(raw[:40])
    return int(raw)


async def read_body(chunks: AsyncIterable[bytes], declared: int | None, limit: int) -> bytes:
    """The body, read chunk by chunk, refused with `BodyTooLarge` as soon as it passes `limit`.

    A declared length over the limit is refused before the first chunk is read; without one
    (chunked transfer), or when the sender says less than it sends, the count of what
    arrived decides: at most `limit` bytes plus one chunk are ever held."""
    if declared is not None and declared > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in chunks:
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge
        body += chunk
    return bytes(body)


# ------------------------------------------------------------------ payloads ->


class MeetingEnded(Model):
    """A meeting ended: who attended and what was recorded.

    Attendance and artifacts are the event models themselves, so what the webhook accepts
    is exactly what SessionHeld can carry.
    """

    delivery_id: Annotated[
        str,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^[!-~]+$",
            description="The platform's unique id of this delivery; a repeated id is a duplicate and is ignored",
        ),
    ]
    room_id: Annotated[str, Field(min_length=22, max_length=256)]
    started_at: UtcInstant
    ended_at: UtcInstant
    # Caps bound the memory one delivery can take; real meetings are far smaller.
    attendance: Annotated[list[Attendance], Field(max_length=1000)]
    artifacts: Annotated[list[Artifact], Field(max_length=100)]

    @model_validator(mode="after")
    def _ordered(self) -> MeetingEnded:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at must not be before started_at")
        return self


def parse_meeting_ended(body: bytes) -> MeetingEnded:
    """Parse a verified body; raises pydantic.ValidationError when it does not fit."""
    return MeetingEnded.model_validate_json(body)
