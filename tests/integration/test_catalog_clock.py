"""`glv-scheduler load-catalog` on a host whose clock runs ahead: refused, nothing stored or
published, so that a later correct load is not blocked by entries from the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from glv_scheduler.__main__ import load_catalog
from glv_scheduler.catalog import CatalogFromTheFuture
from glv_scheduler.settings import SchedulerSettings
from tests.integration.conftest import tiny_catalog


async def test_a_loader_clock_ahead_of_the_database_is_refused_and_a_correct_load_follows(
    scheduler_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in scheduler_env.items():
        monkeypatch.setenv(name, value)
    settings = SchedulerSettings()
    catalog = tiny_catalog(tmp_path / "tiny.yaml")

    with pytest.raises(CatalogFromTheFuture, match=r"office TNY: updated_at .* more than 5 minutes"):
        await load_catalog(settings, catalog, clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    conn = await asyncpg.connect(settings.dsn())
    try:
        assert await conn.fetchval("SELECT count(*) FROM office") == 0
        assert await conn.fetchval("SELECT count(*) FROM glv_outbox") == 0

        # A clock a little ahead (within the skew) is a correct one.
        await load_catalog(settings, catalog, clock=lambda: datetime.now(UTC) + timedelta(minutes=4))
        assert await conn.fetchval("SELECT count(*) FROM office") == 1
        assert await conn.fetchval("SELECT count(*) FROM glv_outbox WHERE sent_at IS NOT NULL") == 1
    finally:
        await conn.close()
