"""Office calendars: zones, breaks, holidays, cuti bersama, closures, rosters, leave."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

from glv_scheduler.calendar import Closures, Office, Officer, parse_week, working_intervals
from glv_scheduler.catalog import read_catalog

CATALOG = read_catalog(Path(__file__).resolve().parents[2] / "deploy" / "catalog" / "catalog.yaml")
HOURS = parse_week(
    {
        "mon": ["08:00-12:00", "13:00-16:00"],
        "fri": ["08:00-11:30", "13:30-16:30"],
    }
)
PALOPO = Office("PLP", "Asia/Makassar", HOURS, closures=frozenset({date(2026, 12, 31)}), services=frozenset({"lelang"}))
JAYAPURA = Office("JYP", "Asia/Jayapura", HOURS, services=frozenset({"lelang"}))
ANDI = Officer("PLP-01", "PLP", frozenset({"lelang"}))
NONE = Closures()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_local_hours_become_utc_instants_per_zone() -> None:
    monday = date(2026, 11, 30)
    assert working_intervals(PALOPO, ANDI, monday, NONE) == [
        (utc(2026, 11, 30, 0), utc(2026, 11, 30, 4)),  # 08:00-12:00 WITA
        (utc(2026, 11, 30, 5), utc(2026, 11, 30, 8)),
    ]
    officer = Officer("JYP-01", "JYP", frozenset({"lelang"}))
    assert working_intervals(JAYAPURA, officer, monday, NONE)[0] == (utc(2026, 11, 29, 23), utc(2026, 11, 30, 3))


def test_friday_prayer_break_is_longer() -> None:
    friday = date(2026, 12, 4)
    (first_end, second_start) = (working_intervals(PALOPO, ANDI, friday, NONE)[0][1],
                                 working_intervals(PALOPO, ANDI, friday, NONE)[1][0])  # fmt: skip
    assert (second_start - first_end).total_seconds() == 2 * 3600


def test_weekends_holidays_cuti_bersama_closures_and_leave_are_closed() -> None:
    assert working_intervals(PALOPO, ANDI, date(2026, 12, 5), NONE) == []  # Saturday
    assert working_intervals(PALOPO, ANDI, date(2026, 12, 25), NONE) == []  # Christmas (Friday)
    assert working_intervals(PALOPO, ANDI, date(2026, 12, 31), NONE) == []  # office closure
    cuti = Closures(collective_leave=frozenset({date(2026, 11, 30)}))
    assert working_intervals(PALOPO, ANDI, date(2026, 11, 30), cuti) == []
    on_leave = Officer("PLP-02", "PLP", frozenset({"lelang"}), leave=((date(2026, 11, 30), date(2026, 12, 1)),))
    assert working_intervals(PALOPO, on_leave, date(2026, 11, 30), NONE) == []
    assert working_intervals(PALOPO, on_leave, date(2026, 12, 4), NONE) != []


def test_a_roster_narrows_the_office_hours() -> None:
    part_time = Officer("PLP-03", "PLP", frozenset({"lelang"}), roster=parse_week({"mon": ["10:00-14:00"]}))
    assert working_intervals(PALOPO, part_time, date(2026, 11, 30), NONE) == [
        (utc(2026, 11, 30, 2), utc(2026, 11, 30, 4)),  # 10:00-12:00 WITA
        (utc(2026, 11, 30, 5), utc(2026, 11, 30, 6)),  # 13:00-14:00 WITA
    ]
    assert working_intervals(PALOPO, part_time, date(2026, 12, 4), NONE) == []  # not rostered on Fridays


def test_the_shipped_catalog_reads_and_covers_three_zones() -> None:
    zones = {info.office.zone for info in CATALOG.offices.values()}
    assert zones == {"Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"}
    assert CATALOG.offices["JKT"].office.hours[4][0] == (time(8), time(11, 30))
    assert all(o.skills for o in CATALOG.officers)
    assert {e.office_code for e in CATALOG.office_entries(utc(2026, 11, 29))} == set(CATALOG.offices)
