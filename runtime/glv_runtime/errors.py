"""Which failures say nothing about a message: the database or broker is unwell.

An outage is retried (the batch, the job, the relay's round) after a backoff and
never dead-letters anything; any other error belongs to the message or job in
hand. Classified by SQLSTATE, so that a new asyncpg exception class for the same
condition is still recognised.
"""

from __future__ import annotations

import asyncpg

# SQLSTATE classes: 08 connection exception, 40 transaction rollback (serialization,
# deadlock), 53 insufficient resources (too many connections, disk full, out of
# memory), 57 operator intervention (admin shutdown, query cancelled, statement
# timeout), 58 system error (I/O).
_OUTAGE_CLASSES = frozenset({"08", "40", "53", "57", "58"})
# Single states of other classes: lock timeout (55P03), a read-only server after a
# failover (25006), a database that cannot accept connections yet (57P03 is in 57).
_OUTAGE_STATES = frozenset({"55P03", "25006"})


def is_outage(exc: BaseException) -> bool:
    """True when retrying later, unchanged, may well succeed."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in _OUTAGE_CLASSES or state in _OUTAGE_STATES
    # A lost or refused connection, a pool that timed out, a closed connection.
    return isinstance(exc, OSError | ConnectionError | TimeoutError | asyncpg.InterfaceError)


class Outage(RuntimeError):
    """The database (or broker) is unwell; the caller must not acknowledge anything."""
