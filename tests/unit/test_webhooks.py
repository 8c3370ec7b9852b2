"""Webhook signatures, body limits and payloads with plain values."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from glv_scheduler.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadContentLength,
    BodyTooLarge,
    MeetingEnded,
    SignedHeaders,
    WebhookRejected,
    check_headers,
    check_signature,
    declared_length,
    parse_meeting_ended,
    read_body,
    sign,
    verify,
)
from glv_schemas.events import Artifact, Attendance, SessionHeld

SECRET = b"webhook-secret-0123456789abcdef!"
NEW_SECRET = b"rotated-secret-fedcba9876543210!"
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
TS = int(NOW.timestamp())
BODY = b'{"delivery_id":"d-1"}'


def headers(timestamp: int = TS, body: bytes = BODY, secret: bytes = SECRET) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def reason(secrets: bytes | list[bytes], hdrs: dict[str, str], body: bytes = BODY) -> str:
    with pytest.raises(WebhookRejected) as caught:
        verify(secrets, hdrs, body, NOW)
    return caught.value.reason


# ----------------------------------------------------------------- signature ->


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET, f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, TS, BODY) == f"sha256={expected}"


def test_sign_then_verify() -> None:
    verify(SECRET, headers(), BODY, NOW)
    verify([SECRET], headers(), BODY, NOW)


def test_header_names_are_case_insensitive_and_hex_case_is_ignored() -> None:
    hdrs = {k.lower(): v for k, v in headers().items()}
    hdrs["x-glv-signature"] = "sha256=" + hdrs["x-glv-signature"].removeprefix("sha256=").upper()
    verify(SECRET, hdrs, BODY, NOW)


def test_every_rejection_has_its_own_reason() -> None:
    good = headers()
    cases = {
        "wrong secret": reason(b"another-secret", good),
        "tampered body": reason(SECRET, good, BODY + b" "),
        "re-dated": reason(SECRET, good | {TIMESTAMP_HEADER: str(TS - 1)}),
        "no timestamp": reason(SECRET, {SIGNATURE_HEADER: good[SIGNATURE_HEADER]}),
        "no signature": reason(SECRET, {TIMESTAMP_HEADER: good[TIMESTAMP_HEADER]}),
        "bad timestamp": reason(SECRET, good | {TIMESTAMP_HEADER: "yesterday"}),
        "bad signature": reason(SECRET, good | {SIGNATURE_HEADER: "sha1=" + "0" * 40}),
        "stale": reason(SECRET, headers(TS - 301)),
        "future": reason(SECRET, headers(TS + 301)),
    }
    assert cases == {
        "wrong secret": "bad_signature",
        "tampered body": "bad_signature",
        "re-dated": "bad_signature",
        "no timestamp": "missing_timestamp",
        "no signature": "missing_signature",
        "bad timestamp": "malformed_timestamp",
        "bad signature": "malformed_signature",
        "stale": "stale_timestamp",
        "future": "future_timestamp",
    }


@pytest.mark.parametrize("value", ["", "+" + str(TS), f"{TS}.5", "1_700_000_000", "-1", "1" * 13, "١٧٠٠"])
def test_malformed_timestamps(value: str) -> None:
    assert reason(SECRET, headers() | {TIMESTAMP_HEADER: value}) == "malformed_timestamp"


@pytest.mark.parametrize(
    "value",
    ["", "sha256=", "sha256=" + "0" * 63, "sha256=" + "g" * 64, "0" * 64, "SHA256=" + "0" * 64, "sha256=" + "0" * 65],
)
def test_malformed_signatures(value: str) -> None:
    assert reason(SECRET, headers() | {SIGNATURE_HEADER: value}) == "malformed_signature"


def test_tolerance_bounds_are_inclusive_and_configurable() -> None:
    verify(SECRET, headers(TS - 300), BODY, NOW)
    verify(SECRET, headers(TS + 300), BODY, NOW)
    with pytest.raises(WebhookRejected, match="stale_timestamp"):
        verify(SECRET, headers(TS - 61), BODY, NOW, tolerance=timedelta(minutes=1))


def test_rotation_accepts_old_and_new_secret() -> None:
    verify([SECRET, NEW_SECRET], headers(secret=NEW_SECRET), BODY, NOW)
    verify([SECRET, NEW_SECRET], headers(secret=SECRET), BODY, NOW)
    assert reason([NEW_SECRET], headers(secret=SECRET)) == "bad_signature"


def _signed_with_the_empty_key() -> dict[str, str]:
    # Anyone can compute this: sign() refuses to, a forger does not.
    mac = hmac.new(b"", f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: str(TS), SIGNATURE_HEADER: f"sha256={mac}"}


@pytest.mark.parametrize("secrets", [b"", [], [b""], [b"", b""]])
def test_an_empty_secret_never_verifies(secrets: bytes | list[bytes]) -> None:
    assert reason(secrets, _signed_with_the_empty_key()) == "bad_signature"
    assert reason(secrets, headers()) == "bad_signature"
    with pytest.raises(ValueError):
        sign(b"", TS, BODY)


def test_an_empty_secret_beside_a_real_one_is_never_tried() -> None:
    assert reason([SECRET, b""], _signed_with_the_empty_key()) == "bad_signature"
    verify([SECRET, b""], headers(), BODY, NOW)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify(SECRET, headers(), BODY, NOW.replace(tzinfo=None))


def test_headers_are_checked_without_the_body_or_a_key() -> None:
    signed = check_headers(headers(), NOW)
    assert signed == SignedHeaders(TS, sign(SECRET, TS, BODY).removeprefix("sha256=").encode())
    check_signature(SECRET, signed, BODY)
    with pytest.raises(WebhookRejected, match="stale_timestamp"):
        check_headers(headers(TS - 301), NOW)


# ---------------------------------------------------------------------- body ->


async def _chunks(parts: list[bytes], taken: list[int]) -> AsyncIterator[bytes]:
    for part in parts:
        taken.append(len(part))
        yield part


async def test_a_declared_length_over_the_limit_is_refused_before_any_read() -> None:
    taken: list[int] = []
    with pytest.raises(BodyTooLarge):
        await read_body(_chunks([b"x" * 10], taken), declared=11, limit=10)
    assert taken == []


async def test_a_chunked_body_is_refused_at_the_first_chunk_past_the_limit() -> None:
    taken: list[int] = []
    with pytest.raises(BodyTooLarge):
        await read_body(_chunks([b"x" * 4] * 1000, taken), declared=None, limit=10)
    assert taken == [4, 4, 4]  # the third one passed 10 bytes: nothing after it is read


async def test_a_body_of_exactly_the_limit_is_read() -> None:
    assert await read_body(_chunks([b"ab", b"cd", b""], []), declared=None, limit=4) == b"abcd"
    assert await read_body(_chunks([b"abcd"], []), declared=4, limit=4) == b"abcd"


@pytest.mark.parametrize(("value", "length"), [("12", 12), (" 0 ", 0)])
def test_declared_length(value: str, length: int) -> None:
    assert declared_length({"content-length": value}) == length
    assert declared_length({}) is None


@pytest.mark.parametrize("value", ["abc", "+5", "-1", "1e3", "١٢", ""])
def test_a_malformed_content_length_is_refused(value: str) -> None:
    with pytest.raises(BadContentLength):
        declared_length({"Content-Length": value})


@given(body=st.binary(max_size=2048), skew=st.integers(min_value=-300, max_value=300))
def test_any_body_within_tolerance_verifies(body: bytes, skew: int) -> None:
    verify(SECRET, headers(TS + skew, body), body, NOW)


@given(body=st.binary(min_size=1, max_size=512), data=st.data())
def test_any_changed_byte_is_rejected(body: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    tampered = body[:at] + bytes([body[at] ^ flip]) + body[at + 1 :]
    assert reason(SECRET, headers(body=body), tampered) == "bad_signature"


# ------------------------------------------------------------------- payload ->


def artifact(**changes: Any) -> dict[str, Any]:
    base = {"kind": "video", "url": "https://x.org/v.webm", "content_type": "video/webm", "size_bytes": 1}
    return base | changes


def payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "delivery_id": "a1b2c3-delivery",
        "room_id": "ulxaum3rwj1swfoauj6ef6noamwicbhh",
        "started_at": "2026-12-01T02:01:00Z",
        "ended_at": "2026-12-01T02:44:00+00:00",
        "attendance": [
            {"role": "officer", "participant_ref": "officer-17", "joined_at": "2026-12-01T02:00:30Z"},
            {
                "role": "stakeholder",
                "participant_ref": "stk-42",
                "joined_at": "2026-12-01T10:01:00+08:00",
                "left_at": "2026-12-01T02:44:00Z",
            },
        ],
        "artifacts": [
            {
                "kind": "video",
                "url": "https://bbb.example.org/recordings/x.webm",
                "content_type": "video/webm",
                "size_bytes": 1024,
                "sha256": "0" * 64,
            },
            {
                "kind": "chat",
                "url": "https://bbb.example.org/chat.json",
                "content_type": "application/json",
                "size_bytes": 0,
            },
        ],
    }
    return base | changes


def test_payload_parses_into_the_event_models() -> None:
    ended = parse_meeting_ended(json.dumps(payload()).encode())
    assert ended.started_at == datetime(2026, 12, 1, 2, 1, tzinfo=UTC)
    assert ended.attendance[1].joined_at == datetime(2026, 12, 1, 2, 1, tzinfo=UTC)
    assert all(isinstance(a, Attendance) for a in ended.attendance)
    assert all(isinstance(a, Artifact) for a in ended.artifacts)
    # The webhook's parts go into SessionHeld unchanged.
    SessionHeld(
        ticket_id=uuid.uuid4(),
        session_id=uuid.uuid4(),
        slot_id=uuid.uuid4(),
        office_code="PLP",
        started_at=ended.started_at,
        ended_at=ended.ended_at,
        attendance=ended.attendance,
        artifacts=ended.artifacts,
    )


@pytest.mark.parametrize(
    "bad",
    [
        payload(extra="x"),
        payload(attendance=[{"role": "officer", "participant_ref": "o", "joined_at": "2026-12-01T02:00:00Z", "x": 1}]),
        payload(artifacts=[artifact(y=2)]),
        payload(delivery_id=""),
        payload(delivery_id="d" * 129),
        payload(delivery_id="has space"),
        payload(room_id="short"),
        payload(started_at="2026-12-01T02:01:00"),
        payload(ended_at="2026-12-01T02:00:00Z"),
        payload(attendance=[{"role": "visitor", "participant_ref": "o", "joined_at": "2026-12-01T02:00:00Z"}]),
        payload(artifacts=[{"kind": "video", "url": "not a url", "content_type": "v", "size_bytes": 1}]),
        payload(artifacts=[{"kind": "video", "url": "https://x.org/v", "content_type": "v", "size_bytes": -1}]),
        payload(
            artifacts=[
                {"kind": "video", "url": "https://x.org/v", "content_type": "v", "size_bytes": 1, "sha256": "AB"}
            ]
        ),
        {k: v for k, v in payload().items() if k != "delivery_id"},
    ],
)
def test_payload_refuses_what_does_not_fit(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MeetingEnded.model_validate(bad)


def test_delivery_id_of_128_characters_is_accepted() -> None:
    assert MeetingEnded.model_validate(payload(delivery_id="d" * 128)).delivery_id == "d" * 128
