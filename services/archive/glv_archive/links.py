"""Signed, time-limited download links: an HMAC-SHA256 over the object, the expiry and the
recipient, checked in constant time. Pure: the HTTP route and the command use it."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from urllib.parse import urlencode

Refusal = Literal["malformed", "bad_signature", "expired"]

_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_EXPIRY = re.compile(r"[0-9]{1,12}")
# Who a link was issued to, as the audit shows it: an officer id or an operator's name.
RECIPIENT = re.compile(r"[A-Za-z0-9._@:-]{1,64}")


@dataclass(frozen=True)
class SignedLink:
    object_id: uuid.UUID
    expires: int  # unix seconds
    recipient: str
    signature: str

    def query(self) -> str:
        return urlencode({"exp": self.expires, "to": self.recipient, "sig": self.signature})


def _mac(secret: bytes, object_id: uuid.UUID, expires: int, recipient: str) -> str:
    if not secret:
        raise ValueError("link secret must not be empty")
    message = f"glv-archive-link\n{object_id}\n{expires}\n{recipient}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, object_id: uuid.UUID, expires_at: datetime, recipient: str) -> SignedLink:
    if not RECIPIENT.fullmatch(recipient):
        raise ValueError("recipient: 1-64 letters, digits or ._@:-")
    expires = int(expires_at.timestamp())
    return SignedLink(object_id, expires, recipient, _mac(secret, object_id, expires, recipient))


def check(
    secret: bytes,
    object_id: uuid.UUID,
    expires: str | None,
    recipient: str | None,
    signature: str | None,
    now: datetime,
) -> tuple[str, Refusal | None]:
    """(recipient as the audit should name it, why the link is refused or None).

    The signature is checked before the expiry, so that an expired link says "expired"
    only when it is genuine (a forged one says bad_signature, whatever its date)."""
    if expires is None or recipient is None or signature is None:
        return "unknown", "malformed"
    if not (_EXPIRY.fullmatch(expires) and RECIPIENT.fullmatch(recipient) and _SIGNATURE.fullmatch(signature)):
        return "unknown", "malformed"
    expected = _mac(secret, object_id, int(expires), recipient)
    if not hmac.compare_digest(expected, signature):
        return "unknown", "bad_signature"
    if int(expires) <= now.timestamp():
        return recipient, "expired"
    return recipient, None
