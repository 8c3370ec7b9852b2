"""The notifier's channel rules with plain values: which channel first, quiet hours in the three
Indonesian zones, and the pure parts of the senders (what a failure means, Retry-After, the
client-side rate limit's arithmetic on a fake clock)."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from uuid import uuid4
from zoneinfo import ZoneInfo

import aiosmtplib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glv_notifier.channels import PhoneChannel, channel_order, hold_until, quiet_until
from glv_notifier.email import message_id_for, smtp_failure
from glv_notifier.gateway import PhoneMessage, gateway_failure, request_body, retry_after_seconds
from glv_notifier.messages import Purpose, Rendered
from glv_notifier.ratelimit import TokenBucket

ZONES = ["Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"]
ADDRESS = "ani.wijaya@example.id"


def local(zone: str, year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time at an office, as the UTC instant the notifier would be handed."""
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).astimezone(UTC)


# --- channel order ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "phone", "phone_channel", "expected"),
    [
        (ADDRESS, "+6281234567890", "whatsapp", ["email", "whatsapp"]),
        (ADDRESS, "+6281234567890", "sms", ["email", "sms"]),
        (ADDRESS, None, "sms", ["email"]),
        (None, "+6281234567890", "sms", ["sms"]),
        (None, "+6281234567890", "whatsapp", ["whatsapp"]),
        ("", "", "sms", []),
        (None, None, "whatsapp", []),
    ],
)
def test_channel_order_puts_email_first_and_falls_back_only_to_an_existing_contact(
    email: str | None, phone: str | None, phone_channel: PhoneChannel, expected: list[str]
) -> None:
    assert channel_order(email, phone, phone_channel) == expected


# --- quiet hours --------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(
    ("hour", "minute", "quiet"),
    [
        (20, 59, False),  # the last minute before quiet hours
        (21, 0, True),  # quiet from 21:00 ...
        (23, 30, True),
        (0, 0, True),  # past midnight: the same morning's 06:00
        (5, 59, True),  # ... to 05:59
        (6, 0, False),  # 06:00 sharp is morning
        (12, 0, False),
    ],
)
def test_quiet_hours_edges_in_each_zone(zone: str, hour: int, minute: int, quiet: bool) -> None:
    # The evening of Thursday 3 December 2026, and the small hours of the 4th.
    day = 4 if hour < 6 else 3
    now = local(zone, 2026, 12, day, hour, minute)
    until = quiet_until(now, zone, None)
    if not quiet:
        assert until is None
    else:
        assert until == local(zone, 2026, 12, 4, 6)
        assert until is not None and until.tzinfo is UTC


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another() -> None:
    # 13:30 UTC is 20:30 WIB, 21:30 WITA, 22:30 WIT.
    now = datetime(2026, 12, 3, 13, 30, tzinfo=UTC)
    assert quiet_until(now, "Asia/Jakarta", None) is None
    assert quiet_until(now, "Asia/Makassar", None) == local("Asia/Makassar", 2026, 12, 4, 6)
    assert quiet_until(now, "Asia/Jayapura", None) == local("Asia/Jayapura", 2026, 12, 4, 6)


@pytest.mark.parametrize("zone", ZONES)
def test_a_session_tonight_or_before_six_overrides_quiet_hours(zone: str) -> None:
    now = local(zone, 2026, 12, 3, 21, 30)
    assert quiet_until(now, zone, local(zone, 2026, 12, 3, 22, 30)) is None  # tonight
    assert quiet_until(now, zone, local(zone, 2026, 12, 4, 5, 30)) is None  # before the morning
    morning = local(zone, 2026, 12, 4, 6)
    assert quiet_until(now, zone, morning) == morning  # at 06:00 itself: it can wait until 06:00
    assert quiet_until(now, zone, local(zone, 2026, 12, 4, 14, 0)) == morning  # tomorrow afternoon


@pytest.mark.parametrize("zone", ZONES)
def test_email_is_never_held_back(zone: str) -> None:
    now = local(zone, 2026, 12, 3, 23, 0)
    tomorrow = local(zone, 2026, 12, 4, 14, 0)
    assert hold_until("email", now, zone, tomorrow) is None
    assert hold_until("sms", now, zone, tomorrow) == local(zone, 2026, 12, 4, 6)
    assert hold_until("whatsapp", now, zone, None) == local(zone, 2026, 12, 4, 6)


def test_quiet_hours_are_configurable() -> None:
    zone = "Asia/Makassar"
    assert quiet_until(local(zone, 2026, 12, 3, 21, 30), zone, None, start_hour=22, end_hour=7) is None
    late = local(zone, 2026, 12, 3, 22, 0)
    assert quiet_until(late, zone, None, start_hour=22, end_hour=7) == local(zone, 2026, 12, 4, 7)
    assert quiet_until(late, zone, None, start_hour=6, end_hour=6) is None  # an empty window
    # A window that does not cross midnight (a siesta, say).
    assert quiet_until(local(zone, 2026, 12, 3, 13), zone, None, start_hour=12, end_hour=14) == local(
        zone, 2026, 12, 3, 14
    )


def test_quiet_hours_refuse_naive_times_and_impossible_hours() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        quiet_until(datetime(2026, 12, 3, 22), "Asia/Jakarta", None)
    with pytest.raises(ValueError, match="timezone-aware"):
        quiet_until(datetime(2026, 12, 3, 22, tzinfo=UTC), "Asia/Jakarta", datetime(2026, 12, 4, 9))
    with pytest.raises(ValueError, match=r"0\.\.23"):
        quiet_until(datetime(2026, 12, 3, 22, tzinfo=UTC), "Asia/Jakarta", None, start_hour=24)


instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC))


@given(now=instants, zone=st.sampled_from(ZONES), session=st.none() | instants)
def test_quiet_until_is_always_the_next_six_oclock_and_never_quiet(
    now: datetime, zone: str, session: datetime | None
) -> None:
    until = quiet_until(now, zone, session)
    local_now = now.astimezone(ZoneInfo(zone))
    in_quiet_hours = local_now.hour >= 21 or local_now.hour < 6
    if until is None:
        # Sent now: it is daytime, or the session comes before the morning (at most 9 h away).
        assert not in_quiet_hours or (session is not None and session < now + timedelta(hours=9))
        return
    local_until = until.astimezone(ZoneInfo(zone))
    assert in_quiet_hours
    assert (local_until.hour, local_until.minute, local_until.second, local_until.microsecond) == (6, 0, 0, 0)
    assert until - timedelta(days=1) <= now < until  # the *next* 06:00, not a later one
    assert until - now <= timedelta(hours=9)  # quiet hours last nine hours at most
    assert quiet_until(until, zone, session) is None  # 06:00 itself is not quiet
    assert session is None or session >= until  # a session before the morning is never made to wait


# --- what a failed send means ---------------------------------------------------------------------


def test_smtp_codes_decide_permanence_and_the_address_stays_out() -> None:
    refused = aiosmtplib.SMTPRecipientRefused(550, f"5.1.1 <{ADDRESS}>: Recipient address rejected", ADDRESS)
    failure = smtp_failure(aiosmtplib.SMTPRecipientsRefused([refused]))
    assert failure.permanent and failure.reason == "SMTP recipient refused: 550 5.1.1"
    greylisted = aiosmtplib.SMTPRecipientRefused(450, f"4.2.0 <{ADDRESS}>: greylisted", ADDRESS)
    assert not smtp_failure(aiosmtplib.SMTPRecipientsRefused([greylisted])).permanent
    # Our sender, our login: configuration to fix, retried rather than a verdict on the message.
    assert not smtp_failure(aiosmtplib.SMTPSenderRefused(553, "5.7.1 no", "glv@notifier.glv")).permanent
    assert not smtp_failure(aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials")).permanent
    assert smtp_failure(aiosmtplib.SMTPDataError(554, "5.6.0 bad")).permanent
    assert not smtp_failure(aiosmtplib.SMTPDataError(451, "4.3.0 later")).permanent
    assert not smtp_failure(aiosmtplib.SMTPReadTimeoutError("timed out")).permanent
    assert not smtp_failure(aiosmtplib.SMTPServerDisconnected("gone")).permanent
    assert not smtp_failure(ConnectionRefusedError()).permanent
    assert smtp_failure(ValueError(f"{ADDRESS} cannot be sent without SMTPUTF8")).permanent
    assert not smtp_failure(ssl.SSLCertVerificationError()).permanent  # a ValueError too, but fixable
    for exc in (refused, greylisted):
        assert ADDRESS not in smtp_failure(aiosmtplib.SMTPRecipientsRefused([exc])).reason


def test_message_ids_are_fixed_by_the_notification() -> None:
    notification = uuid4()
    assert message_id_for(notification) == message_id_for(notification) == f"<{notification}@notifier.glv>"


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (401, True), (404, True), (408, False), (409, False), (500, False)]
)
def test_gateway_status_decides_permanence(status: int, permanent: bool) -> None:
    failure = gateway_failure(status)
    assert failure.permanent is permanent and str(status) in failure.reason


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds(" 120 ", now) == 120.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    failure = gateway_failure(429, 7.0)
    assert not failure.permanent and failure.retry_after_s == 7.0


def test_whatsapp_cloud_format_is_a_template_and_carries_whatsapp_only() -> None:
    rendered = Rendered("s", "t", "<p>t</p>", "short", template_parameters=("Ani", "GLV-7K2M"))
    message = PhoneMessage("+6281234567890", "whatsapp", Purpose.ACKNOWLEDGEMENT, "id", rendered, "k1")
    body = request_body("whatsapp_cloud", message)
    assert body["template"] == {
        "name": "acknowledgement",
        "language": {"code": "id"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ani"}, {"type": "text", "text": "GLV-7K2M"}]}
        ],
    }
    assert request_body("generic", message) == {
        "to": "+6281234567890",
        "channel": "whatsapp",
        "text": "short",
        "reference": "k1",
    }
    sms = PhoneMessage("+6281234567890", "sms", Purpose.ACKNOWLEDGEMENT, "id", rendered, "k1")
    with pytest.raises(ValueError, match="WhatsApp"):
        request_body("whatsapp_cloud", sms)


# --- the client-side rate limit ----------------------------------------------------------------


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_token_bucket_spaces_sends_after_its_burst() -> None:
    time = FakeTime()
    bucket = TokenBucket(4.0, burst=2, clock=time.clock, sleep=time.sleep)
    starts = []
    for _ in range(6):
        await bucket.acquire()
        starts.append(time.now)
    assert starts == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0]


async def test_token_bucket_reserves_turns_for_concurrent_callers() -> None:
    waits: list[float] = []

    async def record(seconds: float) -> None:  # the clock stands still: all arrive at once
        waits.append(seconds)

    bucket = TokenBucket(10.0, clock=lambda: 0.0, sleep=record)
    await asyncio.gather(*(bucket.acquire() for _ in range(4)))
    # Each caller took its turn before waiting: the first goes, the others one interval apart.
    assert sorted(waits) == pytest.approx([0.1, 0.2, 0.3])


async def test_token_bucket_hold_pauses_the_next_send() -> None:
    time = FakeTime()
    bucket = TokenBucket(10.0, clock=time.clock, sleep=time.sleep)
    await bucket.acquire()
    bucket.hold(3.0)
    await bucket.acquire()
    assert time.now == pytest.approx(3.0)
    bucket.hold(0.01)  # shorter than what is owed anyway: changes nothing
    await bucket.acquire()
    assert time.now == pytest.approx(3.1)
