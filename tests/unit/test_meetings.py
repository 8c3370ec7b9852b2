"""Meeting providers with plain values: room ids, Jitsi tokens, BigBlueButton checksums."""

from __future__ import annotations

import base64
import hashlib
import math
import string
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glv_scheduler.meetings import (
    BigBlueButton,
    JitsiMeet,
    MeetingPlan,
    Participant,
    new_room_id,
    provider_from_settings,
)
from glv_schemas.events import Meeting

STARTS = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
ENDS = STARTS + timedelta(minutes=45)
JITSI_SECRET = "j" * 40
BBB_SECRET = "bbb-shared-secret-0123456789abcdef"
OFFICER = Participant("officer-17", "Petugas", moderator=True)
STAKEHOLDER = Participant("stk-42", "Pemohon", moderator=False)
BASE64URL = set(string.ascii_letters + string.digits + "-_")
LOWER_BASE64URL = set(string.ascii_lowercase + string.digits + "-_")


def jitsi(**changes: Any) -> JitsiMeet:
    config: dict[str, Any] = {
        "domain": "meet.example.org",
        "app_id": "glv",
        "app_secret": JITSI_SECRET,
        "clock": lambda: STARTS - timedelta(days=1),
    }
    return JitsiMeet(**(config | changes))


def bbb(checksum: str = "sha256") -> BigBlueButton:
    return BigBlueButton("https://bbb.example.org/bigbluebutton/", BBB_SECRET, checksum=checksum)  # type: ignore[arg-type]


def claims(token: str, secret: str = JITSI_SECRET) -> dict[str, Any]:
    # STARTS and the fixed clock may lie in the future; nbf/exp handling has its own test.
    return jwt.decode(
        token,
        secret,
        algorithms=["HS256"],
        audience="jitsi",
        options={"verify_nbf": False, "verify_exp": False, "verify_iat": False},
    )


def split_bbb(url: str) -> tuple[str, str, str]:
    """(call name, query as signed, checksum) of a BBB API URL."""
    parts = urlsplit(url)
    query, _, checksum = parts.query.rpartition("&checksum=")
    return parts.path.rsplit("/", 1)[1], query, checksum


# ------------------------------------------------------------------- room ids ->


def test_room_ids_are_unique_and_carry_at_least_128_random_bits() -> None:
    ids = [new_room_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    for room in ids:
        assert len(room) == 32
        assert set(room) <= BASE64URL
        assert len(base64.urlsafe_b64decode(room + "=" * (-len(room) % 4))) == 24
    assert 32 * math.log2(len(BASE64URL)) >= 128
    # A generator that used only part of the alphabet (hex, digits) would show here.
    assert len(set("".join(ids))) == len(BASE64URL)


def test_jitsi_rooms_are_folded_to_lower_case_and_still_unguessable() -> None:
    provider = jitsi()
    ids = [provider.plan(STARTS, ENDS).room_id for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(len(room) == 32 and set(room) <= LOWER_BASE64URL for room in ids)
    assert 32 * math.log2(len(LOWER_BASE64URL)) >= 128
    assert len(set("".join(ids))) == len(LOWER_BASE64URL)


def test_bbb_rooms_keep_their_case() -> None:
    ids = [bbb().plan(STARTS, ENDS).room_id for _ in range(200)]
    assert any(room != room.lower() for room in ids)


# ---------------------------------------------------------------------- plans ->


@pytest.mark.parametrize("provider", [jitsi(), bbb()], ids=["jitsi", "bigbluebutton"])
def test_plan_window_defaults_to_15_minutes_early_and_30_minutes_grace(provider: JitsiMeet | BigBlueButton) -> None:
    plan = provider.plan(STARTS, ENDS)
    assert plan.provider == provider.name
    assert plan.valid_from == STARTS - timedelta(minutes=15)
    assert plan.valid_until == ENDS + timedelta(minutes=30)


def test_plan_window_margins_are_configurable_and_normalised_to_utc() -> None:
    provider = jitsi(early_join=timedelta(minutes=5), grace=timedelta(0))
    plan = provider.plan(STARTS.astimezone(ZoneInfo("Asia/Makassar")), ENDS)
    assert plan.valid_from == STARTS - timedelta(minutes=5)
    assert plan.valid_until == ENDS
    assert plan.valid_from.tzinfo == UTC


@pytest.mark.parametrize(
    ("starts", "ends"),
    [(STARTS.replace(tzinfo=None), ENDS), (STARTS, ENDS.replace(tzinfo=None)), (STARTS, STARTS), (ENDS, STARTS)],
)
def test_plan_refuses_naive_or_empty_slots(starts: datetime, ends: datetime) -> None:
    with pytest.raises(ValueError):
        jitsi().plan(starts, ends)


def test_plan_refuses_a_short_room_id() -> None:
    with pytest.raises(ValueError, match="unguessable"):
        MeetingPlan("jitsi", "short", STARTS, ENDS)


def test_a_plan_is_only_used_by_its_own_provider() -> None:
    with pytest.raises(ValueError, match="bigbluebutton"):
        jitsi().join_url(bbb().plan(STARTS, ENDS), OFFICER)
    with pytest.raises(ValueError, match="jitsi"):
        bbb().join_url(jitsi().plan(STARTS, ENDS), OFFICER)


# --------------------------------------------------------------------- Jitsi ->


def test_jitsi_token_follows_the_token_auth_spec() -> None:
    provider = jitsi()
    plan = provider.plan(STARTS, ENDS)
    url = urlsplit(provider.join_url(plan, STAKEHOLDER))
    assert (url.scheme, url.netloc, url.path) == ("https", "meet.example.org", f"/{plan.room_id}")
    token = parse_qs(url.query)["jwt"][0]

    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    got = claims(token)
    assert got["iss"] == "glv"
    assert got["aud"] == "jitsi"
    assert got["sub"] == "meet.example.org"
    assert got["room"] == plan.room_id
    assert got["nbf"] == int(plan.valid_from.timestamp())
    assert got["exp"] == int(plan.valid_until.timestamp())
    assert got["iat"] == int((STARTS - timedelta(days=1)).timestamp())
    assert got["context"]["user"] == {
        "id": "stk-42",
        "name": "Pemohon",
        "moderator": False,
        "affiliation": "member",
    }


def test_jitsi_moderator_only_for_the_officer() -> None:
    provider = jitsi()
    plan = provider.plan(STARTS, ENDS)
    officer = claims(provider.token(plan, OFFICER))
    stakeholder = claims(provider.token(plan, STAKEHOLDER))
    assert officer["moderator"] is True
    assert officer["context"]["user"]["moderator"] is True
    assert officer["context"]["user"]["affiliation"] == "owner"
    assert stakeholder["moderator"] is False
    assert stakeholder["context"]["user"]["moderator"] is False
    assert stakeholder["context"]["user"]["affiliation"] == "member"


def test_jitsi_token_does_not_verify_with_another_secret() -> None:
    provider = jitsi()
    token = provider.token(provider.plan(STARTS, ENDS), OFFICER)
    with pytest.raises(jwt.InvalidSignatureError):
        claims(token, secret="x" * 40)


def test_jitsi_token_is_refused_outside_its_window() -> None:
    # PyJWT checks nbf/exp against the wall clock, so these plans are placed around now.
    now = datetime.now(UTC)
    provider = jitsi(clock=lambda: now)

    def decode(plan: MeetingPlan) -> dict[str, Any]:
        return jwt.decode(provider.token(plan, OFFICER), JITSI_SECRET, algorithms=["HS256"], audience="jitsi")

    with pytest.raises(jwt.ImmatureSignatureError):
        decode(provider.plan(now + timedelta(hours=1), now + timedelta(hours=2)))
    with pytest.raises(jwt.ExpiredSignatureError):
        decode(provider.plan(now - timedelta(hours=2), now - timedelta(hours=1)))
    current = provider.plan(now, now + timedelta(minutes=30))
    assert decode(current)["room"] == current.room_id


@pytest.mark.parametrize(
    "changes",
    [{"app_secret": "too-short"}, {"domain": ""}, {"domain": "meet.example.org/x"}, {"app_id": ""}],
)
def test_jitsi_refuses_bad_settings(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        jitsi(**changes)


@given(name=st.text(min_size=1, max_size=200), ref=st.text(min_size=1, max_size=64))
def test_jitsi_token_carries_any_name_exactly(name: str, ref: str) -> None:
    provider = jitsi()
    plan = provider.plan(STARTS, ENDS)
    user = claims(provider.token(plan, Participant(ref, name, moderator=False)))["context"]["user"]
    assert (user["id"], user["name"]) == (ref, name)


# -------------------------------------------------------------- BigBlueButton ->


def recompute(algorithm: str, call: str, query: str) -> str:
    return hashlib.new(algorithm, (call + query + BBB_SECRET).encode()).hexdigest()


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_bbb_join_checksum_matches_an_independent_computation(algorithm: str) -> None:
    provider = bbb(algorithm)
    plan = provider.plan(STARTS, ENDS)
    url = provider.join_url(plan, STAKEHOLDER)
    assert url.startswith("https://bbb.example.org/bigbluebutton/api/join?")
    call, query, checksum = split_bbb(url)
    assert call == "join"
    assert checksum == recompute(algorithm, "join", query)
    assert len(checksum) == {"sha1": 40, "sha256": 64}[algorithm]
    assert provider.verify_checksum("join", query, checksum)
    assert parse_qsl(query) == [
        ("fullName", "Pemohon"),
        ("meetingID", plan.room_id),
        ("role", "VIEWER"),
        ("userID", "stk-42"),
        ("redirect", "true"),
    ]


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_bbb_tampered_query_fails_the_checksum(algorithm: str) -> None:
    provider = bbb(algorithm)
    _, query, checksum = split_bbb(provider.join_url(provider.plan(STARTS, ENDS), STAKEHOLDER))
    assert not provider.verify_checksum("join", query.replace("role=VIEWER", "role=MODERATOR"), checksum)
    assert not provider.verify_checksum("create", query, checksum)
    assert not provider.verify_checksum("join", query, "0" * len(checksum))
    assert not provider.verify_checksum("join", query, "é" + checksum[1:])
    other = BigBlueButton("https://bbb.example.org/bigbluebutton", "another-secret", checksum=algorithm)  # type: ignore[arg-type]
    assert not other.verify_checksum("join", query, checksum)


def test_bbb_role_follows_moderator() -> None:
    provider = bbb()
    plan = provider.plan(STARTS, ENDS)
    assert parse_qs(split_bbb(provider.join_url(plan, OFFICER))[1])["role"] == ["MODERATOR"]
    assert parse_qs(split_bbb(provider.join_url(plan, STAKEHOLDER))[1])["role"] == ["VIEWER"]


def test_bbb_create_url_lists_its_parameters_in_order() -> None:
    provider = bbb()
    plan = provider.plan(STARTS, ENDS)
    call, query, checksum = split_bbb(provider.create_url(plan, "Konsultasi lelang"))
    assert call == "create"
    assert checksum == recompute("sha256", "create", query)
    assert parse_qsl(query) == [
        ("meetingID", plan.room_id),
        ("name", "Konsultasi lelang"),
        ("record", "true"),
        ("autoStartRecording", "false"),
        ("allowStartStopRecording", "true"),
        ("meta_glv-valid-until", plan.valid_until.isoformat()),
        # 15 early + 45 slot + 30 grace, counted from valid_from.
        ("duration", "90"),
    ]


def test_bbb_create_duration_runs_out_at_valid_until() -> None:
    provider = bbb()
    plan = provider.plan(STARTS, ENDS)
    created = plan.valid_from - timedelta(minutes=2, seconds=30)
    params = dict(parse_qsl(split_bbb(provider.create_url(plan, "x y", "mod-pw", created_at=created))[1]))
    assert params["duration"] == "93"  # rounded up: never cut the grace short
    assert params["moderatorPW"] == "mod-pw"
    with pytest.raises(ValueError, match="over"):
        provider.create_url(plan, "late", created_at=plan.valid_until)


def test_bbb_end_url_is_signed() -> None:
    provider = bbb("sha1")
    plan = provider.plan(STARTS, ENDS)
    call, query, checksum = split_bbb(provider.end_url(plan))
    assert (call, parse_qsl(query)) == ("end", [("meetingID", plan.room_id)])
    assert checksum == recompute("sha1", "end", query)
    _, query, _ = split_bbb(provider.end_url(plan, moderator_pw="mod-pw"))
    assert parse_qsl(query) == [("meetingID", plan.room_id), ("password", "mod-pw")]


@given(name=st.text(min_size=1, max_size=200), ref=st.text(min_size=1, max_size=64))
def test_bbb_checksum_holds_for_any_name(name: str, ref: str) -> None:
    provider = bbb()
    plan = provider.plan(STARTS, ENDS)
    _, query, checksum = split_bbb(provider.join_url(plan, Participant(ref, name, moderator=True)))
    assert checksum == recompute("sha256", "join", query)
    params = parse_qs(query, keep_blank_values=True)
    assert (params["fullName"], params["userID"]) == ([name], [ref])


@pytest.mark.parametrize(
    ("base_url", "secret", "algorithm"),
    [
        ("http://bbb.example.org/bigbluebutton", "s", "sha256"),
        ("https://bbb.example.org", "", "sha256"),
        ("https://bbb.example.org", "s", "md5"),
    ],
)
def test_bbb_refuses_bad_settings(base_url: str, secret: str, algorithm: str) -> None:
    with pytest.raises(ValueError):
        BigBlueButton(base_url, secret, checksum=algorithm)  # type: ignore[arg-type]


# ------------------------------------------------------------------ Meeting ->


@pytest.mark.parametrize("provider", [jitsi(), bbb()], ids=["jitsi", "bigbluebutton"])
def test_meeting_is_a_valid_event_value(provider: JitsiMeet | BigBlueButton) -> None:
    plan = provider.plan(STARTS, ENDS)
    meeting = provider.meeting(plan, STAKEHOLDER)
    assert isinstance(meeting, Meeting)
    assert Meeting.model_validate_json(meeting.model_dump_json()) == meeting
    assert meeting.provider == provider.name
    assert meeting.room_id == plan.room_id
    assert len(meeting.room_id) >= 22
    assert (meeting.valid_from, meeting.valid_until) == (plan.valid_from, plan.valid_until)
    url = str(meeting.join_url)
    assert url == provider.join_url(plan, STAKEHOLDER)
    # The random id is what finds the room; nothing in the link is derived from the slot.
    parts = urlsplit(url)
    room_in_link = parts.path.rsplit("/", 1)[1] if provider.name == "jitsi" else parse_qs(parts.query)["meetingID"][0]
    assert room_in_link == plan.room_id
    assert STARTS.isoformat() not in url
    assert str(int(STARTS.timestamp())) not in url


def test_each_participant_gets_a_different_link() -> None:
    for provider in (jitsi(), bbb()):
        plan = provider.plan(STARTS, ENDS)
        assert provider.join_url(plan, OFFICER) != provider.join_url(plan, STAKEHOLDER)


# ------------------------------------------------------------------ settings ->


def test_provider_from_settings() -> None:
    made = provider_from_settings(
        "Jitsi", domain="meet.example.org", app_id="glv", app_secret=JITSI_SECRET, early_join="10", grace=20
    )
    assert isinstance(made, JitsiMeet)
    assert (made.early_join, made.grace) == (timedelta(minutes=10), timedelta(minutes=20))
    made = provider_from_settings("bigbluebutton", base_url="https://bbb.example.org/bigbluebutton", shared_secret="s")
    assert isinstance(made, BigBlueButton)
    assert made.checksum_algorithm == "sha256"


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        ("zoom", {}),
        ("jitsi", {"domain": "meet.example.org", "app_id": "glv", "app_secret": JITSI_SECRET, "colour": "red"}),
        ("jitsi", {"domain": "meet.example.org", "app_id": "glv"}),
        ("bigbluebutton", {"base_url": "https://bbb.example.org", "shared_secret": "s", "grace": True}),
    ],
)
def test_provider_from_settings_refuses_bad_settings(kind: str, config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        provider_from_settings(kind, **config)
