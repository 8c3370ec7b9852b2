"""When an office's round runs, and how the catalog says which services are decided in rounds."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from glv_scheduler.catalog import parse_catalog
from glv_scheduler.round_policy import RoundPolicy, round_job

MAKASSAR = "Asia/Makassar"  # UTC+8


def at(hour: int, minute: int = 0, second: int = 0, day: int = 2) -> datetime:
    """A UTC instant given in WITA."""
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC) - timedelta(hours=8)


def test_rounds_run_on_the_offices_local_grid_strictly_after_now() -> None:
    quarter = RoundPolicy(timedelta(minutes=15))
    assert quarter.next_round(at(9, 7), MAKASSAR) == at(9, 15)
    assert quarter.next_round(at(9, 15), MAKASSAR) == at(9, 30)  # strictly after
    assert quarter.next_round(at(23, 50), MAKASSAR) == at(0, 0, day=3)
    hourly = RoundPolicy(timedelta(minutes=60))
    assert hourly.next_round(at(9, 0, 1), MAKASSAR) == at(10)


def test_after_the_cutoff_a_ticket_waits_for_the_next_days_first_round() -> None:
    policy = RoundPolicy(timedelta(minutes=60), cutoff=time(15, 0))
    assert policy.next_round(at(14, 10), MAKASSAR) == at(15)
    assert policy.next_round(at(15, 0), MAKASSAR) == at(0, 0, day=3)
    assert policy.next_round(at(0, 0, 30, day=3), MAKASSAR) == at(1, 0, day=3)


@pytest.mark.parametrize("minutes", [0, 7, 100, 2000])
def test_a_round_must_divide_the_day_in_whole_minutes(minutes: int) -> None:
    with pytest.raises(ValueError, match="dividing a day"):
        RoundPolicy(timedelta(minutes=minutes))


def test_one_job_per_office_and_round_instant() -> None:
    first = round_job("PLP", at(9, 15))
    again = round_job("PLP", at(9, 15).astimezone(datetime.now().astimezone().tzinfo))
    assert first.key == again.key and first.run_at == at(9, 15)
    assert round_job("MKS", at(9, 15)).key != first.key


def catalog(service_rounds: Any = None, office_rounds: Any = None, kind: str = "consultation") -> dict[str, Any]:
    lelang: dict[str, Any] = {"name_id": "Lelang", "name_en": "Auctions", "kind": kind, "duration_minutes": 45}
    if service_rounds is not None:
        lelang["rounds"] = service_rounds
    offices = []
    for code in ("PLP", "MKS"):
        entry: dict[str, Any] = {"office_code": code, "name": code, "city": code, "zone": MAKASSAR,
                                 "services": ["lelang", "penilaian"]}  # fmt: skip
        if office_rounds is not None and code == "PLP":
            entry["rounds"] = office_rounds
        offices.append(entry)
    return {
        "working_hours": {"mon": ["08:00-16:00"]},
        "services": {
            "lelang": lelang,
            "penilaian": {"name_id": "Penilaian", "name_en": "Valuation", "duration_minutes": 30},
        },
        "offices": offices,
    }


def test_the_catalog_says_which_services_each_office_decides_in_rounds() -> None:
    assert parse_catalog(catalog()).rounds == {}  # immediate by default
    by_service = parse_catalog(catalog({"every_minutes": 60, "cutoff": "15:00"})).rounds
    assert by_service == {
        ("MKS", "lelang"): RoundPolicy(timedelta(minutes=60), time(15, 0)),
        ("PLP", "lelang"): RoundPolicy(timedelta(minutes=60), time(15, 0)),
    }
    overridden = parse_catalog(
        catalog({"every_minutes": 60}, {"lelang": "immediate", "penilaian": {"every_minutes": 15}})
    ).rounds
    assert overridden == {
        ("MKS", "lelang"): RoundPolicy(timedelta(minutes=60)),
        ("PLP", "penilaian"): RoundPolicy(timedelta(minutes=15)),
    }


@pytest.mark.parametrize(
    ("service_rounds", "office_rounds", "kind", "error"),
    [
        ({"every_minutes": 60}, None, "webinar", "consultations"),
        ("hourly", None, "consultation", "immediate"),
        (None, {"lelang": {"every_minutes": 50}}, "consultation", "dividing a day"),
        (None, {"piutang": {"every_minutes": 15}}, "consultation", "does not offer"),
        ({"every_minutes": 60, "cutoff": "late"}, None, "consultation", "Invalid isoformat"),
    ],
)
def test_a_round_setting_that_cannot_work_is_refused(
    service_rounds: Any, office_rounds: Any, kind: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        parse_catalog(catalog(service_rounds, office_rounds, kind))
