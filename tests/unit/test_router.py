"""The typed router refuses to start when its declarations and the topic registry disagree."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from glv_archive.app import build_spec as archive_spec
from glv_notifier.app import build_spec as notifier_spec
from glv_runtime.consumer import Inbound
from glv_runtime.router import Router, RouterMismatch
from glv_runtime.unit_of_work import UnitOfWork
from glv_scheduler.app import build_spec as scheduler_spec
from glv_scheduler.settings import SchedulerSettings
from glv_schemas import events as ev
from glv_schemas.topics import TICKETING_EVENTS, consumed_by
from glv_ticketing.app import build_spec as ticketing_spec


async def nothing(uow: UnitOfWork, items: Sequence[Inbound]) -> None:
    return None


async def handle(uow: UnitOfWork, context: None, item: Inbound) -> None:
    return None


def router() -> Router[None]:
    return Router("test", prepare=nothing)  # type: ignore[arg-type]


def test_every_event_type_handled_or_ignored_passes() -> None:
    declared = router().handle(ev.TicketAccepted, handle).handle(ev.TicketCancelled, handle)
    declared.ignore(
        ev.TicketRejected, ev.CancellationRefused, ev.RescheduleApproved, ev.RescheduleRefused, ev.ErasureApproved
    )
    declared.check([TICKETING_EVENTS])


def test_a_type_neither_handled_nor_ignored_is_refused() -> None:
    declared = router().handle(ev.TicketAccepted, handle).ignore(ev.TicketRejected)
    with pytest.raises(RouterMismatch, match="TicketCancelled"):
        declared.check([TICKETING_EVENTS])


def test_ignoring_a_type_no_consumed_topic_carries_is_refused() -> None:
    declared = router()
    declared.on(*TICKETING_EVENTS.events)(handle)
    declared.ignore(ev.SessionHeld)
    with pytest.raises(RouterMismatch, match="SessionHeld"):
        declared.check([TICKETING_EVENTS])


def test_a_type_declared_twice_is_refused() -> None:
    with pytest.raises(RouterMismatch):
        router().handle(ev.TicketAccepted, handle).ignore(ev.TicketAccepted)


@pytest.mark.parametrize(
    "spec", [ticketing_spec, lambda: scheduler_spec(SchedulerSettings()), notifier_spec, archive_spec]
)
def test_the_services_declare_what_the_registry_says_they_consume(spec) -> None:  # type: ignore[no-untyped-def]
    built = spec()
    built.router.check(consumed_by(built.name))
