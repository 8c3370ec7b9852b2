"""When an office decides a service: at once (`immediate`, the default) or in rounds.

A round every N minutes runs at the office's local times N, 2N, ... after midnight (N divides
a day). With a cut-off, a ticket accepted after it waits for the next day's first round: the
office decides the day's requests together before it closes. Pure rules, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from glv_runtime.jobs_store import JobRequest
from glv_scheduler.calendar import ServiceType

DAY = timedelta(days=1)


@dataclass(frozen=True)
class RoundPolicy:
    every: timedelta
    cutoff: time | None = None

    def __post_init__(self) -> None:
        minutes = self.every.total_seconds() / 60
        if minutes < 1 or minutes != int(minutes) or 1440 % int(minutes):
            raise ValueError(f"a round every {minutes:g} minutes: it must be whole minutes dividing a day")

    @property
    def every_minutes(self) -> int:
        return int(self.every.total_seconds() // 60)

    def next_round(self, after: datetime, zone: str) -> datetime:
        """The first round strictly after `after` (UTC), on the office's local grid."""
        local = after.astimezone(ZoneInfo(zone))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        steps = (local - midnight) // self.every + 1
        candidate = midnight + steps * self.every
        if self.cutoff is not None and candidate.time() > self.cutoff and candidate.date() == local.date():
            candidate = midnight + DAY  # after the cut-off: the next day's first round (its midnight)
        return candidate.astimezone(UTC)


def parse_round(where: str, spec: Any) -> RoundPolicy | None:
    """`immediate`, or {every_minutes: N, cutoff: "HH:MM"}; None means immediate."""
    if spec is None or spec == "immediate":
        return None
    if not isinstance(spec, Mapping) or "every_minutes" not in spec:
        raise ValueError(f"{where}: rounds must be 'immediate' or {{every_minutes: N, cutoff: 'HH:MM'}}")
    cutoff = spec.get("cutoff")
    try:
        return RoundPolicy(
            every=timedelta(minutes=int(spec["every_minutes"])),
            cutoff=time.fromisoformat(str(cutoff)) if cutoff is not None else None,
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def check_round_service(where: str, service: ServiceType) -> None:
    """Rounds place one stakeholder with one officer (the optimizer's model): consultations."""
    if service.kind != "consultation" or service.officers_required != 1 or service.capacity != 1:
        raise ValueError(f"{where}: rounds are for consultations with one officer and one seat")


ROUND_JOB = "scheduling-round"


def round_job(office_code: str, round_at: datetime) -> JobRequest:
    """The one job that decides an office's round: its key is the office and instant, so that
    every replica and every ticket enqueueing it makes the same single job."""
    return JobRequest(
        ROUND_JOB,
        f"{office_code}@{round_at.astimezone(UTC).isoformat()}",
        {"office_code": office_code, "round_at": round_at.isoformat()},
        run_at=round_at,
    )
