"""Which channels a message goes through, and when a phone message may go. Pure rules: no I/O,
no clock of their own (the caller passes `now`), so every edge is testable with plain values."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from glv_notifier.messages import Channel

PhoneChannel = Literal["sms", "whatsapp"]

QUIET_START_HOUR = 21
QUIET_END_HOUR = 6


def channel_order(email: str | None, phone: str | None, phone_channel: PhoneChannel) -> list[Channel]:
    """The channels to try, in order: e-mail when there is an address, else the phone channel;
    the other one after it as the fallback for a permanent failure, only if that contact exists.
    Empty when the stakeholder left no contact at all."""
    order: list[Channel] = []
    if email:
        order.append("email")
    if phone:
        order.append(phone_channel)
    return order


def quiet_until(
    now: datetime,
    zone: str,
    session_starts_at: datetime | None,
    *,
    start_hour: int = QUIET_START_HOUR,
    end_hour: int = QUIET_END_HOUR,
) -> datetime | None:
    """None when an SMS or WhatsApp message may go now; else the instant (UTC) the office's quiet
    hours end, the next `end_hour`:00 in `zone`.

    Quiet hours are [start_hour:00, end_hour:00) local time, across midnight when start > end.
    A session that starts before they end overrides them: waking someone at 05:00 is better than
    telling them about a 05:30 session at 06:00."""
    if now.tzinfo is None or (session_starts_at is not None and session_starts_at.tzinfo is None):
        raise ValueError("quiet_until needs timezone-aware datetimes")
    for hour in (start_hour, end_hour):
        if not 0 <= hour <= 23:
            raise ValueError(f"an hour of the day is 0..23, not {hour}")
    office = ZoneInfo(zone)
    local = now.astimezone(office)
    if not _in_window(local.hour, start_hour, end_hour):
        return None
    # Wall-clock arithmetic on the local date, not `now + n hours`: the instant is "06:00 at the
    # office", whatever the offset (the three Indonesian zones have no DST, other zones might).
    ends = datetime.combine(local.date(), time(end_hour), tzinfo=office)
    if ends <= local:
        ends = datetime.combine(local.date() + timedelta(days=1), time(end_hour), tzinfo=office)
    if session_starts_at is not None and session_starts_at < ends:
        return None
    return ends.astimezone(UTC)


def hold_until(
    channel: Channel,
    now: datetime,
    zone: str,
    session_starts_at: datetime | None,
    *,
    start_hour: int = QUIET_START_HOUR,
    end_hour: int = QUIET_END_HOUR,
) -> datetime | None:
    """When a message on `channel` may go: None for now. E-mail is never held back (it waits in an
    inbox without waking anyone); phone channels wait for the end of quiet hours."""
    if channel == "email":
        return None
    return quiet_until(now, zone, session_starts_at, start_hour=start_hour, end_hour=end_hour)


def _in_window(hour: int, start_hour: int, end_hour: int) -> bool:
    if start_hour == end_hour:  # an empty window: quiet hours switched off
        return False
    if start_hour < end_hour:
        return start_hour <= hour < end_hour
    return hour >= start_hour or hour < end_hour
