"""The portals the tests file as: onboarded the way an operator does (`glv-ticketing portal onboard`)."""

from __future__ import annotations

from collections.abc import Sequence

from glv_runtime.onboarding import AdminSettings
from glv_ticketing import portals
from glv_ticketing.settings import TicketingSettings

TEST_PORTALS = ("sim-portal", "other-portal", "fuzz-portal", "p")


def admin_settings_for(settings: TicketingSettings) -> AdminSettings:
    """A plain-broker administrator with the service's topic layout."""
    return AdminSettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        topic_partitions=settings.topic_partitions,
    )


async def onboard_portals(settings: TicketingSettings, portal_ids: Sequence[str] = TEST_PORTALS) -> dict[str, str]:
    """Each portal's topics and status token; returns the tokens by portal."""
    tokens: dict[str, str] = {}
    for portal_id in portal_ids:
        onboarded = await portals.onboard(settings, admin_settings_for(settings), portal_id)
        assert onboarded.status_token is not None
        tokens[portal_id] = onboarded.status_token
    return tokens
