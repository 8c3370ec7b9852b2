"""Who may do what on Kafka, derived from the topic registry: each portal only its own topics."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glv_runtime.access import Grant, Operation, Resource, portal_grants, service_grants
from glv_schemas.topics import (
    PORTAL_ID_PATTERN,
    PORTAL_TICKETS,
    PORTAL_UPDATES,
    SERVICE_TOPICS,
    InvalidPortalId,
    check_portal_id,
    consumed_by,
    subscription_pattern,
)

portal_ids = st.from_regex(rf"\A{PORTAL_ID_PATTERN}\Z")


def of(grants: list[Grant], user: str) -> set[tuple[str, str]]:
    return {
        (g.name, g.operation.value) for g in grants if g.principal == f"User:{user}" and g.resource is Resource.TOPIC
    }


@given(portal_ids, portal_ids)
def test_a_portal_writes_only_its_intake_and_reads_only_its_updates(mine: str, other: str) -> None:
    grants = portal_grants(mine, "p.")
    assert of(grants, f"portal-{mine}") == {
        (f"p.glv.portal.{mine}.tickets", "WRITE"),
        (f"p.glv.portal.{mine}.tickets", "DESCRIBE"),
        (f"p.glv.portal.{mine}.updates", "READ"),
        (f"p.glv.portal.{mine}.updates", "DESCRIBE"),
    }
    if other != mine:
        assert not any(f".{other}." in g.name for g in grants)
    groups = {(g.name, g.prefixed, g.principal) for g in grants if g.resource is Resource.GROUP}
    user = f"User:portal-{mine}"
    assert groups == {(f"portal-{mine}", False, user), (f"portal-{mine}.", True, user)}


def test_a_portals_group_grant_does_not_cover_another_portal_whose_id_extends_it() -> None:
    covered = [
        g.name
        for g in portal_grants("lelang")
        if g.resource is Resource.GROUP
        and (g.name == "portal-lelang-2.readers" or (g.prefixed and "portal-lelang-2.readers".startswith(g.name)))
    ]
    assert covered == []


def test_the_services_get_what_the_registry_says_on_a_portals_topics() -> None:
    grants = portal_grants("alpha")
    assert of(grants, "glv-ticketing") == {
        ("glv.portal.alpha.tickets", "READ"),
        ("glv.portal.alpha.tickets", "DESCRIBE"),
        ("glv.portal.alpha.updates", "WRITE"),
        ("glv.portal.alpha.updates", "DESCRIBE"),
    }
    assert of(grants, "glv-notifier") == {
        ("glv.portal.alpha.tickets", "READ"),
        ("glv.portal.alpha.tickets", "DESCRIBE"),
    }


def test_no_portal_is_granted_anything_on_the_service_topics() -> None:
    service_topic_names = {t.name for t in SERVICE_TOPICS}
    assert not any(g.name in service_topic_names for g in portal_grants("alpha"))
    assert all("portals" not in t.consumers and "portals" not in t.producers for t in SERVICE_TOPICS)


def test_a_service_writes_only_what_it_produces() -> None:
    written = {g.name for g in service_grants("scheduler") if g.operation is Operation.WRITE}
    assert written == {"glv.scheduler.events", "glv.catalog", "glv.dlq.scheduler"}
    read = {
        g.name for g in service_grants("scheduler") if g.operation is Operation.READ and g.resource is Resource.TOPIC
    }
    assert read == {"glv.ticketing.events", "glv.dlq.scheduler"}


@given(portal_ids)
def test_ticketing_subscribes_to_every_portals_intake_and_nothing_else(portal_id: str) -> None:
    pattern = re.compile(subscription_pattern(consumed_by("ticketing"), "t1."))
    assert pattern.fullmatch("t1." + PORTAL_TICKETS.for_portal(portal_id))
    assert not pattern.fullmatch("t1." + PORTAL_UPDATES.for_portal(portal_id))
    assert not pattern.fullmatch(PORTAL_TICKETS.for_portal(portal_id))  # another environment's
    assert PORTAL_TICKETS.portal_of("t1." + PORTAL_TICKETS.for_portal(portal_id), "t1.") == portal_id
    assert PORTAL_TICKETS.portal_in("t1." + PORTAL_TICKETS.for_portal(portal_id)) == portal_id


@pytest.mark.parametrize("bad", ["", "Alpha", "a.b", "-a", "a_b", "a" * 64, "a b", "é"])
def test_a_portal_id_that_could_not_name_its_topics_unambiguously_is_refused(bad: str) -> None:
    with pytest.raises(InvalidPortalId):
        check_portal_id(bad)
