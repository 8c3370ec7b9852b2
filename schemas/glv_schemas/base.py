"""Base classes shared by every GLV event model."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

_ZERO = timedelta(0)


def _in_utc(value: datetime) -> datetime:
    # Events carry UTC instants; an offset-aware time in another zone is the
    # same instant, so it is normalised instead of refused. Already UTC (nearly
    # always): returned as it is, since this runs for every instant of every event.
    if value.utcoffset() == _ZERO:
        return value if value.tzinfo is UTC else value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcInstant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An offset-aware instant, stored and emitted in UTC."""

# A stakeholder_ref travels into meeting join URLs and the scheduler's database, so the
# services keep it to characters that need no escaping anywhere: 128 emoji once pushed a
# join URL past 2,083 characters, and a NUL broke an insert. A domain rule (ticketing
# refuses at intake, the scheduler again on receipt), not a schema constraint: narrowing
# the released field would break its older readers. Use with fullmatch (no `$` gap).
STAKEHOLDER_REF_PATTERN = re.compile(r"[A-Za-z0-9._:@-]{1,64}")

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
OfficeCode = Annotated[str, Field(pattern=r"^[A-Z]{2,6}$", description="Short office code, e.g. PLP")]
TicketCode = Annotated[
    str, Field(pattern=r"^[A-Z]{2,6}-\d{6}-\d{4,}$", description="Human ticket code, e.g. PLP-261129-0042")
]


class Model(BaseModel):
    """A value inside an event: immutable, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(Model):
    """One event's data (the Kafka value); its CloudEvents attributes travel in headers.

    `event_name` and `version` make up the CloudEvents `type` (e.g. ``glv.TicketFiled.v1``).
    A change that an older reader cannot read gets a new version, never an edit in place.
    """

    event_name: ClassVar[str] = ""
    version: ClassVar[int] = 1

    ticket_id: UUID

    @classmethod
    def event_type(cls) -> str:
        return f"glv.{cls.event_name}.v{cls.version}"


class TimeWindow(Model):
    """A half-open interval [start, end) of UTC instants."""

    start: UtcInstant
    end: UtcInstant

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        # Shape only; whether a window is sensible for a booking is a domain rule.
        if self.end <= self.start:
            raise ValueError("window end must be after its start")
        return self
