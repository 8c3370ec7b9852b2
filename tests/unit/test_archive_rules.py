"""The archive's pure rules: when a session is complete, what a failure says, signed links,
and how a chat log becomes lines of the session record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glv_archive import links
from glv_archive.completeness import ArtifactState, after_attempts, problems, retryable, split_error, verdict
from glv_archive.record import chat_lines

SECRET = b"k" * 32
NOW = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)


def test_a_session_waits_while_a_transfer_is_on_then_is_complete_or_not() -> None:
    stored, pending = ArtifactState("video", "stored"), ArtifactState("chat", "pending")
    late = ArtifactState("chat", "late", "not_found", "answered 404")
    failed = ArtifactState("audio", "failed", "oversized", "larger than 4 GiB")
    assert verdict([stored, pending]) == "waiting"
    assert verdict([stored, stored]) == "complete"
    assert verdict([stored, late]) == verdict([stored, failed]) == "incomplete"
    assert verdict([]) == "complete"  # an officer's report: nothing was recorded
    assert [(p.kind, p.reason) for p in problems([stored, late, failed])] == [
        ("chat", "not_found"),
        ("audio", "oversized"),
    ]
    assert retryable([stored, late]) and not retryable([stored, failed])


def test_what_a_failed_transfer_becomes() -> None:
    assert split_error("checksum_mismatch: has SHA-256 ab, expected cd") == (
        "checksum_mismatch",
        "has SHA-256 ab, expected cd",
    )
    assert split_error("TimeoutError: timed out") == ("transfer_failed", "TimeoutError: timed out")
    assert split_error("timed out after 10800 s") == ("transfer_failed", "timed out after 10800 s")
    assert after_attempts("not_found", past_give_up=False) == "late"
    assert after_attempts("not_found", past_give_up=True) == "failed"
    assert after_attempts("forbidden_address", past_give_up=False) == "failed"


def test_a_signed_link_is_checked_in_full() -> None:
    object_id = uuid.uuid4()
    link = links.sign(SECRET, object_id, NOW + timedelta(minutes=15), "officer-7")
    exp, to, sig = str(link.expires), link.recipient, link.signature
    assert links.check(SECRET, object_id, exp, to, sig, NOW) == ("officer-7", None)
    assert links.check(SECRET, object_id, exp, to, sig, NOW + timedelta(minutes=16)) == ("officer-7", "expired")
    assert links.check(SECRET, uuid.uuid4(), exp, to, sig, NOW)[1] == "bad_signature"
    assert links.check(SECRET, object_id, str(link.expires + 60), to, sig, NOW)[1] == "bad_signature"
    assert links.check(SECRET, object_id, exp, "officer-8", sig, NOW)[1] == "bad_signature"
    assert links.check(b"x" * 32, object_id, exp, to, sig, NOW)[1] == "bad_signature"
    assert links.check(SECRET, object_id, None, to, sig, NOW)[1] == "malformed"
    assert links.check(SECRET, object_id, "-1", to, sig, NOW)[1] == "malformed"
    with pytest.raises(ValueError):
        links.sign(SECRET, object_id, NOW, "officer 7; drop")


@given(exp=st.text(max_size=20), to=st.text(max_size=80), sig=st.text(max_size=80))
def test_any_query_a_client_sends_is_refused_or_checked_never_an_error(exp: str, to: str, sig: str) -> None:
    _, refusal = links.check(SECRET, uuid.uuid4(), exp, to, sig, NOW)
    assert refusal in ("malformed", "bad_signature", "expired")


def test_a_chat_log_becomes_lines_whatever_its_shape() -> None:
    document = (
        b'{"messages": [{"at": "2026-12-01T02:00:00Z", "name": "Siti", "role": "stakeholder", "text": "<b>hi</b>"}]}'
    )
    assert chat_lines("application/json", document) == [
        {"at": "2026-12-01T02:00:00Z", "name": "Siti", "role": "stakeholder", "text": "<b>hi</b>"}
    ]
    assert chat_lines("application/json", b"[1, 2]") == []
    assert chat_lines("application/json", b"not json")[0]["text"] == "not json"
    assert [line["text"] for line in chat_lines("text/plain", b"a\nb")] == ["a", "b"]
    assert chat_lines("application/json", b'{"messages": [7, {"text": 3}]}') == [
        {"at": "", "name": "", "role": "", "text": "3"}
    ]
