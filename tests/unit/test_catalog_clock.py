"""Catalog entries from the future: refused at load, ignored by readers, never blocking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from glv_scheduler.catalog import CatalogFromTheFuture, refuse_entries_from_the_future
from glv_schemas.events import CATALOG_CLOCK_SKEW, OfficeCatalogUpdated, OfficeCatalogUpdatedV2

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def entry(office_code: str, updated_at: datetime, name: str = "KPKNL Uji") -> OfficeCatalogUpdatedV2:
    return OfficeCatalogUpdatedV2(
        office_code=office_code, name=name, city="Palopo", zone="Asia/Makassar", services=[], updated_at=updated_at
    )


def test_the_skew_is_five_minutes_and_its_bound_is_inclusive() -> None:
    assert timedelta(minutes=5) == CATALOG_CLOCK_SKEW
    assert not entry("TNY", NOW + CATALOG_CLOCK_SKEW).is_from_the_future(NOW)
    assert entry("TNY", NOW + CATALOG_CLOCK_SKEW + timedelta(seconds=1)).is_from_the_future(NOW)
    assert not entry("TNY", NOW - timedelta(days=300)).is_from_the_future(NOW)


def test_the_rule_compares_instants_whatever_the_zone() -> None:
    # 11:04 WITA is 03:04 UTC: four minutes ahead, not eight hours.
    assert not entry("TNY", datetime(2026, 12, 1, 11, 4, tzinfo=ZoneInfo("Asia/Makassar"))).is_from_the_future(NOW)
    assert entry("TNY", datetime(2026, 12, 1, 11, 6, tzinfo=ZoneInfo("Asia/Makassar"))).is_from_the_future(NOW)


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        entry("TNY", NOW).is_from_the_future(NOW.replace(tzinfo=None))


def test_the_loader_refuses_entries_from_the_future_naming_the_offices() -> None:
    refuse_entries_from_the_future([entry("TNY", NOW), entry("PLP", NOW + timedelta(minutes=4))], NOW)
    with pytest.raises(CatalogFromTheFuture, match=r"office PLP, JKT: .*more than 5 minutes"):
        refuse_entries_from_the_future(
            [entry("TNY", NOW), entry("PLP", NOW + timedelta(hours=1)), entry("JKT", NOW + timedelta(days=1))], NOW
        )


def _latest_wins(entries: list[OfficeCatalogUpdated], now: datetime) -> dict[str, OfficeCatalogUpdated]:
    """A reader as ticketing's is: an office's newest entry wins; with the rule applied."""
    kept: dict[str, OfficeCatalogUpdated] = {}
    for e in entries:
        if e.is_from_the_future(now):
            continue  # a reader logs a warning naming the office, and ignores the entry
        if e.office_code not in kept or kept[e.office_code].updated_at <= e.updated_at:
            kept[e.office_code] = e
    return kept


def test_a_future_entry_cannot_block_a_later_correct_entry() -> None:
    # A loader whose clock ran a day ahead published first; a correct one published later.
    skewed = entry("TNY", NOW + timedelta(days=1), name="from a wrong clock")
    correct = entry("TNY", NOW + timedelta(minutes=1), name="KPKNL Palopo")
    kept = _latest_wins([skewed, correct], NOW + timedelta(minutes=1))
    assert kept["TNY"].name == "KPKNL Palopo"
    # Without the rule the skewed entry would have won until tomorrow.
    assert max([skewed, correct], key=lambda e: e.updated_at) is skewed
