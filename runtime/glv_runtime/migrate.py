"""Apply a service's SQL migrations at start-up, each once, in file-name order."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from glv_runtime.db import DbConnection
from glv_runtime.logs import get_logger

log = get_logger(__name__)

# Any fixed number: replicas starting together take turns instead of racing.
_MIGRATION_LOCK = 7_266_411


def _sql_files(package: str) -> list[Traversable]:
    folder = resources.files(package)
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


async def apply_migrations(conn: DbConnection, packages: list[str]) -> list[str]:
    """Apply pending files from each package (e.g. ``glv_runtime.migrations``); return their ids."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS glv_schema_migrations ("
            " id text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["id"] for r in await conn.fetch("SELECT id FROM glv_schema_migrations")}
        for package in packages:
            for file in _sql_files(package):
                migration_id = f"{package}:{file.name}"
                if migration_id in done:
                    continue
                async with conn.transaction():
                    await conn.execute(file.read_text(encoding="utf-8"))
                    await conn.execute("INSERT INTO glv_schema_migrations (id) VALUES ($1)", migration_id)
                applied_now.append(migration_id)
                log.info("migration applied", migration=migration_id)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied_now
