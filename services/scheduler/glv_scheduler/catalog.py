"""The catalog file: services, office calendars and officers (YAML), as domain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from glv_scheduler.calendar import Office, Officer, ServiceType, parse_week
from glv_scheduler.round_policy import RoundPolicy, check_round_service, parse_round
from glv_schemas.events import CATALOG_CLOCK_SKEW, OfficeCatalogUpdated, OfficeCatalogUpdatedV2, ServiceOfferingV2


@dataclass(frozen=True)
class ServiceInfo:
    service: ServiceType
    name_id: str
    name_en: str
    # Decided in rounds at every office offering it, unless an office says otherwise.
    rounds: RoundPolicy | None = None


@dataclass(frozen=True)
class OfficeInfo:
    office: Office
    name: str
    city: str


@dataclass(frozen=True)
class Catalog:
    services: dict[str, ServiceInfo]
    offices: dict[str, OfficeInfo]
    officers: list[Officer]
    collective_leave: dict[date, str]
    # (office, service) decided in rounds; every other pair is decided at once.
    rounds: dict[tuple[str, str], RoundPolicy] = field(default_factory=dict)

    def office_entries(self, now: datetime) -> list[OfficeCatalogUpdatedV2]:
        """What ticketing needs of each office, for the compacted catalog topic."""
        return [
            OfficeCatalogUpdatedV2(
                office_code=code,
                name=info.name,
                city=info.city,
                zone=info.office.zone,
                services=[
                    ServiceOfferingV2(
                        service_code=s,
                        kind=self.services[s].service.kind,
                        name_id=self.services[s].name_id,
                        name_en=self.services[s].name_en,
                        duration_minutes=int(self.services[s].service.duration.total_seconds() // 60),
                        min_notice_hours=int(self.services[s].service.min_notice.total_seconds() // 3600),
                        booking_horizon_days=self.services[s].service.horizon.days,
                    )
                    for s in sorted(info.office.services)
                ],
                updated_at=now,
            )
            for code, info in sorted(self.offices.items())
        ]


def _service(code: str, spec: dict[str, Any]) -> ServiceInfo:
    kind = spec.get("kind", "consultation")
    if int(spec.get("officers_required", 1)) < 1 or int(spec.get("capacity", 1)) < 1:
        raise ValueError(f"service {code}: officers_required and capacity must be at least 1")
    if kind not in ("consultation", "internal_meeting", "webinar"):
        raise ValueError(f"service {code}: unknown kind {kind!r}")
    return ServiceInfo(
        service=ServiceType(
            code=code,
            kind=kind,
            duration=timedelta(minutes=int(spec["duration_minutes"])),
            buffer=timedelta(minutes=int(spec.get("buffer_minutes", 0))),
            min_notice=timedelta(hours=int(spec.get("min_notice_hours", 24))),
            horizon=timedelta(days=int(spec.get("booking_horizon_days", 30))),
            officers_required=int(spec.get("officers_required", 1)),
            capacity=int(spec.get("capacity", 1)),
        ),
        name_id=spec["name_id"],
        name_en=spec["name_en"],
        rounds=parse_round(f"service {code}", spec.get("rounds")),
    )


def parse_catalog(data: dict[str, Any]) -> Catalog:
    services = {code: _service(code, spec) for code, spec in data["services"].items()}
    default_hours = parse_week(data["working_hours"])
    offices: dict[str, OfficeInfo] = {}
    officers: list[Officer] = []
    for entry in data["offices"]:
        code = entry["office_code"]
        unknown = [s for s in entry["services"] if s not in services]
        if unknown:
            raise ValueError(f"office {code}: unknown services {unknown}")
        office = Office(
            code=code,
            zone=entry["zone"],
            hours=parse_week(entry["working_hours"]) if "working_hours" in entry else default_hours,
            closures=frozenset(c["date"] for c in entry.get("closures", [])),
            services=frozenset(entry["services"]),
        )
        offices[code] = OfficeInfo(office=office, name=entry["name"], city=entry["city"])
        for person in entry.get("officers", []):
            if any(o.officer_id == person["officer_id"] for o in officers):
                raise ValueError(f"officer {person['officer_id']} is listed twice")
            skills = frozenset(person["skills"])
            if not skills <= office.services:
                raise ValueError(
                    f"officer {person['officer_id']}: skills {sorted(skills - office.services)} not offered"
                )
            officers.append(
                Officer(
                    officer_id=person["officer_id"],
                    office_code=code,
                    skills=skills,
                    roster=parse_week(person["roster"]) if "roster" in person else None,
                    leave=tuple((leave["from"], leave["to"]) for leave in person.get("leave", [])),
                    display_name=person.get("display_name", ""),
                )
            )
    return Catalog(
        services=services,
        offices=offices,
        officers=officers,
        collective_leave={item["date"]: item["name"] for item in data.get("collective_leave", [])},
        rounds=_rounds(data, services, offices),
    )


def _rounds(
    data: dict[str, Any], services: dict[str, ServiceInfo], offices: dict[str, OfficeInfo]
) -> dict[tuple[str, str], RoundPolicy]:
    """Each office's services decided in rounds: the service's setting, or the office's own."""
    rounds: dict[tuple[str, str], RoundPolicy] = {}
    for entry in data["offices"]:
        code = entry["office_code"]
        own = entry.get("rounds") or {}
        if unknown := sorted(set(own) - offices[code].office.services):
            raise ValueError(f"office {code}: rounds for services it does not offer: {unknown}")
        for service_code in sorted(offices[code].office.services):
            where = f"office {code}, service {service_code}"
            policy = parse_round(where, own[service_code]) if service_code in own else services[service_code].rounds
            if policy is not None:
                check_round_service(where, services[service_code].service)
                rounds[code, service_code] = policy
    return rounds


def read_catalog(path: Path) -> Catalog:
    return parse_catalog(yaml.safe_load(path.read_text(encoding="utf-8")))


class CatalogFromTheFuture(ValueError):
    """Entries dated ahead of the reference clock: publishing them would block later ones."""


def refuse_entries_from_the_future(entries: Sequence[OfficeCatalogUpdated], now: datetime) -> None:
    """Raise `CatalogFromTheFuture`, naming the offices, when an entry is dated more than
    CATALOG_CLOCK_SKEW after `now`. Readers keep an office's newest entry, so such an entry
    would win over every correct one published until its time comes (and readers ignore it)."""
    ahead = [e for e in entries if e.is_from_the_future(now)]
    if ahead:
        names = ", ".join(e.office_code for e in ahead[:10]) + (
            f" and {len(ahead) - 10} more" if len(ahead) > 10 else ""
        )
        raise CatalogFromTheFuture(
            f"office {names}: updated_at {ahead[0].updated_at.isoformat()} is more than "
            f"{int(CATALOG_CLOCK_SKEW.total_seconds() // 60)} minutes after {now.isoformat()}; "
            "check this host's clock (NTP) and load again"
        )
