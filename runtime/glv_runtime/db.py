"""The database connection type every store function takes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A plain connection or one lent by the pool: store code works with either.
if TYPE_CHECKING:
    DbConnection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]
else:  # asyncpg's classes are generic only in its type stubs
    DbConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
