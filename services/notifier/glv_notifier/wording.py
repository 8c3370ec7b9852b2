"""How each language writes what a message states: a session's local day and time with its
zone's name, a lead time, and the plain-language reading of a reason code.

Pure: the calendar data (day and month names, time patterns, the zones' names) come from
CLDR through Babel, never from tables written here; the reason texts are handed in as TOML
text (they live in the templates folder, where an office can edit them)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime, format_skeleton, get_timezone_name
from babel.lists import format_list
from babel.units import format_unit

from glv_notifier.messages import Locale, Purpose


@dataclass(frozen=True)
class _Writing:
    """How one language writes a moment, as CLDR locales and patterns."""

    # The CLDR locale whose names and time pattern the language uses.
    cldr: str
    # The CLDR locale that names Indonesia's zones. Only the Indonesian-region locales carry
    # the short names WIB/WITA/WIT (plain `en` writes "+0800"); the English of Indonesia
    # (en_ID) uses them too, and they are what people in the offices say.
    zone_cldr: str
    # The day: CLDR's full pattern for `id` pads the day ("03 Desember"), which letters from
    # an office do not; this is the full pattern with the day unpadded, CLDR's names inside.
    day: str
    # How a day and a time join: CLDR's "atTime" datetime pattern ("{1} 'pukul' {0}",
    # "{1} 'at' {0}"), which Babel 2.18 does not carry.
    at: str


_WRITING: Final[Mapping[Locale, _Writing]] = {
    "id": _Writing(cldr="id_ID", zone_cldr="id_ID", day="EEEE, d MMMM y", at="{date} pukul {time} {zone}"),
    # en_GB: day-month-year and a 24-hour clock ("Thursday, 3 December 2026", "09:00"),
    # as English is written in Indonesia's public services; US English would say "9:00 AM".
    "en": _Writing(cldr="en_GB", zone_cldr="en_ID", day="EEEE, d MMMM y", at="{date} at {time} {zone}"),
}


@dataclass(frozen=True)
class LocalWhen:
    """A moment as a person at the office reads it."""

    date: str  # "Kamis, 3 Desember 2026"
    time: str  # "09.00" / "09:00"
    zone: str  # "WITA"
    zone_long: str  # "Waktu Indonesia Tengah" / "Central Indonesia Time"
    text: str  # "Kamis, 3 Desember 2026 pukul 09.00 WITA"

    def __str__(self) -> str:
        return self.text


def _local(instant: datetime, zone: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        # Events carry UTC instants; a naive one would be read in the server's zone.
        raise ValueError("a moment to show must be timezone-aware (UTC)")
    return instant.astimezone(ZoneInfo(zone))


def local_time(instant: datetime, zone: str, locale: Locale) -> str:
    """The clock time at the office: "09.00" in Indonesian, "09:00" in English."""
    return format_skeleton("Hm", _local(instant, zone), locale=_WRITING[locale].cldr)


def local_date(instant: datetime, zone: str, locale: Locale) -> str:
    """The day without the weekday: "3 Desember 2026" / "3 December 2026"."""
    return format_date(_local(instant, zone), "long", locale=_WRITING[locale].cldr)


def zone_name(instant: datetime, zone: str, locale: Locale) -> str:
    """The zone's short name at that moment as CLDR writes it: WIB, WITA or WIT."""
    local = _local(instant, zone)
    return format_datetime(local, "z", tzinfo=local.tzinfo, locale=_WRITING[locale].zone_cldr)


def local_when(instant: datetime, zone: str, locale: Locale) -> LocalWhen:
    """The day, time and zone: "Kamis, 3 Desember 2026 pukul 09.00 WITA"."""
    writing = _WRITING[locale]
    local = _local(instant, zone)
    date = format_date(local, writing.day, locale=writing.cldr)
    time = local_time(instant, zone, locale)
    short = zone_name(instant, zone, locale)
    long = get_timezone_name(local, width="long", locale=writing.cldr)
    return LocalWhen(
        date=date,
        time=time,
        zone=short,
        zone_long=long,
        text=writing.at.format(date=date, time=time, zone=short),
    )


def duration(minutes: int, locale: Locale) -> str:
    """A lead time or a session's length: "24 jam", "1 hour", "1 jam, 30 menit", "30 minutes".

    Whole hours stay hours (24 hours, not "1 day"): a reminder says how far away the session is."""
    if minutes <= 0:
        raise ValueError("a duration is at least one minute")
    cldr = _WRITING[locale].cldr
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(format_unit(hours, "duration-hour", length="long", locale=cldr))
    if rest:
        parts.append(format_unit(rest, "duration-minute", length="long", locale=cldr))
    return format_list(parts, style="unit", locale=cldr)


# ------------------------------------------------------------------------ reasons

# The sections of a reasons file, by the purpose whose codes they explain.
REASON_SECTIONS: Final[Mapping[Purpose, str]] = {
    Purpose.REJECTION: "rejection",  # ticketing's reason codes for a refused filing
    Purpose.WAITLISTED: "scheduling",  # the scheduler's SchedulingFailed reasons
    Purpose.UNSCHEDULABLE: "scheduling",
    Purpose.MISSED: "missed",  # SessionMissed's missing party: stakeholder, officer, both
}
# Every section has this entry: the words for a code the file does not know yet, so that a
# new code upstream gives a sensible message rather than no message.
DEFAULT_CODE: Final = "default"


@dataclass(frozen=True)
class Reason:
    """A reason code in the stakeholder's words: what happened, and what they can do."""

    code: str
    text: str
    advice: str


ReasonBook = Mapping[str, Mapping[str, Reason]]


def parse_reasons(toml_text: str) -> ReasonBook:
    """Read a reasons file: `[<section>.<code>]` tables with `text` and `advice` strings.

    Raises ValueError naming what is wrong, so that an edited file is refused at start."""
    try:
        data = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"not valid TOML: {error}") from error
    book: dict[str, dict[str, Reason]] = {}
    for section in sorted(set(REASON_SECTIONS.values())):
        entries = data.get(section)
        if not isinstance(entries, dict):
            raise ValueError(f"section [{section}] is missing")
        book[section] = {}
        for code, entry in entries.items():
            if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("text", "advice")):
                raise ValueError(f"[{section}.{code}] needs the strings `text` and `advice`")
            book[section][code] = Reason(code=code, text=entry["text"].strip(), advice=entry["advice"].strip())
        if DEFAULT_CODE not in book[section]:
            raise ValueError(f"section [{section}] has no [{section}.{DEFAULT_CODE}] entry")
    return book


def explain(purpose: Purpose, codes: Iterable[str], book: ReasonBook) -> list[Reason]:
    """The reasons a message gives, in order, each once (an unknown code reads as the default)."""
    section = REASON_SECTIONS.get(purpose)
    if section is None:
        return []
    entries = book[section]
    explained: list[Reason] = []
    for code in dict.fromkeys(codes):
        entry = entries.get(code, entries[DEFAULT_CODE])
        if entry not in explained:
            explained.append(entry)
    return explained


def advice(reasons: Iterable[Reason]) -> list[str]:
    """What to do, each piece of advice once (several window codes share one)."""
    return list(dict.fromkeys(reason.advice for reason in reasons if reason.advice))
