"""GLV on the secure broker: SASL_SSL (SCRAM-SHA-512) with ACLs, PostgreSQL over verify-full TLS.

Ticketing and the scheduler run in production mode with their own Kafka users; two
portals are onboarded with `glv-ticketing portal onboard`'s function. One portal's
ticket goes all the way to a slot with a join link on its own updates topic, and every
way past the trust boundaries that a stranger, the other portal or a forged body might
try is refused by the broker (or, for a body naming another portal, dead-lettered).
The error each refused client saw is printed (run with -s to read them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)

from glv_devtools.catalog import CATALOG_FILE
from glv_devtools.portal import PortalClient, record_for, ticket
from glv_runtime.kafka_admin import KafkaAdmin
from glv_runtime.onboarding import AdminSettings, ensure_service_access
from glv_runtime.service import RunningService
from glv_scheduler.__main__ import load_catalog
from glv_scheduler.app import build_spec as build_scheduler
from glv_scheduler.catalog import read_catalog
from glv_scheduler.settings import SchedulerSettings
from glv_schemas import EVENTS_BY_TYPE
from glv_schemas.events import CancellationRequested
from glv_schemas.topics import PORTAL_TICKETS, PORTAL_UPDATES, intake_dead_letter_topic
from glv_ticketing import portals
from glv_ticketing.app import build_spec as build_ticketing
from glv_ticketing.settings import TicketingSettings
from tests.conftest import create_database, drop_database, free_port
from tests.infra import Infra
from tests.integration.conftest import wait_for_offices
from tests.secure_infra import SecureInfra, make_untrusted_ca, secure_infra

PARTITIONS = 2
REFUSALS: dict[str, str] = {}


def refused(what: str, error: BaseException) -> None:
    """Keep what the client saw, for the record (printed at the end of the test)."""
    REFUSALS[what] = f"{type(error).__name__}: {error}"


def sasl(secure: SecureInfra, user: str, password: str, cafile: str | None = None) -> dict[str, Any]:
    """aiokafka's options for a client of the secure broker."""
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "ssl_context": ssl.create_default_context(cafile=cafile or secure.cafile),
    }


@dataclass
class SecureGlv:
    secure: SecureInfra
    prefix: str
    admin: AdminSettings
    ticketing: RunningService
    ticketing_settings: TicketingSettings
    # Each onboarded portal's Kafka password and status token.
    credentials: dict[str, tuple[str, str]]

    def portal(self, portal_id: str, password: str | None = None) -> dict[str, Any]:
        return sasl(self.secure, f"portal-{portal_id}", password or self.credentials[portal_id][0])

    def status_headers(self, portal_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials[portal_id][1]}"}


def production(settings_type: type[Any], name: str, secure: SecureInfra, password: str, **more: Any) -> Any:
    return settings_type(
        environment="production",
        kafka_bootstrap_servers=secure.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=secure.cafile,
        kafka_sasl_username=f"glv-{name}",
        kafka_sasl_password=password,
        database_ssl_mode="verify-full",
        database_ssl_root_cert=secure.pg_cafile,
        topic_partitions=PARTITIONS,
        http_port=free_port(),
        retry_backoff_s=0.05,
        relay_poll_interval_s=0.2,
        kafka_metadata_max_age_ms=2000,
        log_level="WARNING",
        **more,
    )


@pytest.fixture
async def secure_glv(infra: Infra) -> AsyncIterator[SecureGlv]:
    secure = secure_infra()
    prefix = f"s{uuid.uuid4().hex[:10]}."
    admin = AdminSettings(
        kafka_bootstrap_servers=secure.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=secure.cafile,
        kafka_sasl_username=secure.admin_user,
        kafka_sasl_password=secure.admin_password,
        topic_prefix=prefix,
        topic_partitions=PARTITIONS,
    )
    kafka_admin = KafkaAdmin(admin)
    passwords = {}
    for service in ("ticketing", "scheduler"):
        access = await asyncio.to_thread(ensure_service_access, kafka_admin, service, prefix=prefix, rotate=True)
        assert access.password is not None and access.grants > 0
        passwords[service] = access.password
    ticketing_db, scheduler_db = await create_database(infra), await create_database(infra)
    ticketing_settings = production(
        TicketingSettings,
        "ticketing",
        secure,
        passwords["ticketing"],
        database_url=ticketing_db,
        topic_prefix=prefix,
        consumer_group=f"glv-ticketing.{prefix}",
    )
    scheduler_settings = production(
        SchedulerSettings,
        "scheduler",
        secure,
        passwords["scheduler"],
        database_url=scheduler_db,
        topic_prefix=prefix,
        consumer_group=f"glv-scheduler.{prefix}",
        jitsi_app_secret=uuid.uuid4().hex + uuid.uuid4().hex,
        webhook_secrets=[uuid.uuid4().hex + uuid.uuid4().hex],
    )
    credentials = {}
    for portal_id in ("alpha", "beta"):
        onboarded = await portals.onboard(ticketing_settings, admin, portal_id)
        assert onboarded.kafka_password is not None and onboarded.status_token is not None
        credentials[portal_id] = (onboarded.kafka_password, onboarded.status_token)
    scheduler = RunningService(build_scheduler(scheduler_settings))
    ticketing = RunningService(build_ticketing(ticketing_settings))
    await scheduler.start()
    try:
        await load_catalog(scheduler_settings, CATALOG_FILE)
        await ticketing.start()
        try:
            await wait_for_offices(ticketing, len(read_catalog(CATALOG_FILE).offices))
            yield SecureGlv(secure, prefix, admin, ticketing, ticketing_settings, credentials)
        finally:
            await ticketing.stop()
    finally:
        await scheduler.stop()
        for url in (ticketing_db, scheduler_db):
            await drop_database(infra, url)
        await asyncio.to_thread(_delete_topics, kafka_admin, prefix)
        for portal_id in ("alpha", "beta"):
            await asyncio.to_thread(_forget_user, kafka_admin, f"portal-{portal_id}")


def _delete_topics(admin: KafkaAdmin, prefix: str) -> None:
    client = admin._client  # the test's own clean-up: no command deletes topics
    mine = [t for t in client.list_topics(timeout=10).topics if t.startswith(prefix)]
    if mine:
        for future in client.delete_topics(mine).values():
            future.result(timeout=30)


def _forget_user(admin: KafkaAdmin, user: str) -> None:
    admin.revoke_everything_of(user)
    admin.delete_user(user)


async def read_until(
    consumer: AIOKafkaConsumer, done: Callable[[list[tuple[str, Any]]], bool], timeout_s: float = 90
) -> list[tuple[str, Any]]:
    """(event type, decoded event) of every record read, until `done` holds."""
    seen: list[tuple[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done(seen):
        assert asyncio.get_running_loop().time() < deadline, f"not seen in time: {[t for t, _ in seen]}"
        for records in (await consumer.getmany(timeout_ms=500)).values():
            for record in records:
                event_type = dict(record.headers)["ce_type"].decode()
                seen.append((event_type, EVENTS_BY_TYPE[event_type].model_validate_json(record.value)))
    return seen


async def reader(
    options: dict[str, Any], topic: str, group: str | None = None, partitions: int = PARTITIONS
) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=options.pop("bootstrap"),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )
    await consumer.start()
    if group is None:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
    else:
        consumer.subscribe([topic])
    return consumer


async def refusal(what: str, attempt: Awaitable[Any], *errors: type[BaseException], cause: str = "") -> None:
    """The attempt fails with one of `errors`; for a refused connection, the client's log
    says why (aiokafka reports only "Unable to bootstrap" and logs the cause), and it must
    contain `cause`."""
    handler = _LastClientError()
    logging.getLogger("aiokafka").addHandler(handler)
    try:
        with pytest.raises(errors) as caught:
            await asyncio.wait_for(attempt, timeout=60)
    finally:
        logging.getLogger("aiokafka").removeHandler(handler)
    refused(what, caught.value)
    if cause:
        assert cause in handler.last, (what, handler.last)
        REFUSALS[what] += f" (client log: {handler.last})"


class _LastClientError(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


async def start_producer(options: dict[str, Any]) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(request_timeout_ms=10_000, **options)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


async def test_portals_reach_only_their_own_topics_over_sasl_ssl(secure_glv: SecureGlv, tmp_path: Path) -> None:
    glv, secure, prefix = secure_glv, secure_glv.secure, secure_glv.prefix
    alpha_updates = prefix + PORTAL_UPDATES.for_portal("alpha")
    rng = random.Random(7)

    # Alpha files a ticket on its own topic and reads, on its own updates topic, the
    # decision and the slot with the stakeholder's join link.
    filed = ticket(rng, portal_id="alpha", office_code="JYP", service_code="piutang-negara")
    async with PortalClient(secure.bootstrap, prefix, **glv.portal("alpha")) as alpha:
        await alpha.file([filed])
    consumer = await reader({"bootstrap": secure.bootstrap, **glv.portal("alpha")}, alpha_updates)
    try:
        seen = await read_until(consumer, lambda s: "glv.SlotAssigned.v1" in [t for t, _ in s])
    finally:
        await consumer.stop()
    types = [t for t, _ in seen]
    assert types[:2] == ["glv.TicketAccepted.v1", "glv.SlotAssigned.v1"], types
    slot = seen[1][1]
    assert slot.ticket_id == filed.ticket_id and str(slot.meeting.join_url).startswith("https://")

    beta = {"bootstrap": secure.bootstrap, **glv.portal("beta")}

    # A client without TLS and SASL, a wrong password, a broker certificate from a CA the
    # client does not trust: none gets a connection.
    await refusal(
        "plaintext client",
        start_producer({"bootstrap_servers": secure.bootstrap, "security_protocol": "PLAINTEXT"}),
        KafkaConnectionError,
        cause="closed",
    )
    wrong = glv.portal("alpha", password="not-" + glv.credentials["alpha"][0])
    await refusal(
        "wrong password",
        start_producer({"bootstrap_servers": secure.bootstrap, **wrong}),
        KafkaConnectionError,
        cause="SaslAuthenticationFailed",
    )
    untrusted = sasl(secure, "portal-alpha", glv.credentials["alpha"][0], cafile=str(make_untrusted_ca(tmp_path)))
    await refusal(
        "untrusted broker certificate",
        start_producer({"bootstrap_servers": secure.bootstrap, **untrusted}),
        KafkaConnectionError,
        cause="CERTIFICATE_VERIFY_FAILED",
    )

    # Beta, authenticated, may not write alpha's intake, read alpha's updates, read or
    # write GLV's service topics, or join a consumer group named for alpha.
    producer = await start_producer({"bootstrap_servers": beta.pop("bootstrap"), **beta})
    try:
        forged = record_for(
            CancellationRequested(ticket_id=filed.ticket_id, portal_id="alpha", requested_at=datetime.now(UTC)),
            source="/portal/beta",
        )
        await refusal(
            "beta writes alpha's intake topic",
            producer.send_and_wait(prefix + forged.topic, forged.value, key=forged.key, headers=forged.headers),
            TopicAuthorizationFailedError,
        )
        await refusal(
            "beta writes glv.ticketing.events",
            producer.send_and_wait(prefix + "glv.ticketing.events", b"{}", key=forged.key),
            TopicAuthorizationFailedError,
        )
        # On its own topic, a body naming alpha is dead-lettered, not applied.
        mismatch = record_for(
            CancellationRequested(ticket_id=filed.ticket_id, portal_id="alpha", requested_at=datetime.now(UTC)),
            source="/portal/beta",
        )
        beta_intake = prefix + PORTAL_TICKETS.for_portal("beta")
        await producer.send_and_wait(beta_intake, mismatch.value, key=mismatch.key, headers=mismatch.headers)
        # And beta cancelling alpha's ticket in its own name hears "unknown ticket".
        own_name = record_for(
            CancellationRequested(ticket_id=filed.ticket_id, portal_id="beta", requested_at=datetime.now(UTC)),
            source="/portal/beta",
        )
        await producer.send_and_wait(beta_intake, own_name.value, key=own_name.key, headers=own_name.headers)
    finally:
        await producer.stop()

    beta_updates = prefix + PORTAL_UPDATES.for_portal("beta")
    for what, topic in (
        ("beta reads alpha's updates topic", alpha_updates),
        ("beta reads glv.scheduler.events (join links)", prefix + "glv.scheduler.events"),
    ):
        consumer = await reader({"bootstrap": secure.bootstrap, **glv.portal("beta")}, topic)
        try:
            # The broker answers a topic beta may not describe with TOPIC_AUTHORIZATION_FAILED
            # in metadata: nothing of it (partitions, leaders) reaches the client, so no fetch
            # can even be addressed. The client's own metadata wait (what its producer uses)
            # reports it as the error.
            await refusal(what, consumer._client._wait_on_metadata(topic), TopicAuthorizationFailedError)
            assert not any((await consumer.getmany(timeout_ms=1000)).values())
        finally:
            await consumer.stop()
    consumer = await reader({"bootstrap": secure.bootstrap, **glv.portal("beta")}, beta_updates, group="portal-alpha")
    try:
        await refusal(
            "beta joins alpha's consumer group", consumer.getmany(timeout_ms=20_000), GroupAuthorizationFailedError
        )
    finally:
        await consumer.stop()

    consumer = await reader({"bootstrap": secure.bootstrap, **glv.portal("beta")}, beta_updates)
    try:
        [(event_type, refusal_event)] = await read_until(consumer, lambda s: len(s) >= 1)
    finally:
        await consumer.stop()
    assert event_type == "glv.CancellationRefused.v1"
    assert [r.code for r in refusal_event.reasons] == ["unknown_ticket"]
    admin_options = sasl(secure, secure.admin_user, secure.admin_password)
    consumer = await reader(
        {"bootstrap": secure.bootstrap, **admin_options}, prefix + intake_dead_letter_topic("ticketing").name, None, 1
    )
    try:
        letters: list[dict[str, bytes]] = []
        deadline = asyncio.get_running_loop().time() + 60
        while not letters:
            assert asyncio.get_running_loop().time() < deadline, "no dead letter for the forged body"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                letters += [dict(r.headers) for r in records]
    finally:
        await consumer.stop()
    assert letters[0]["x-dlq-error-code"] == b"portal_mismatch"
    REFUSALS["beta's body names alpha, on beta's own topic"] = "dead-lettered: " + letters[0]["x-dlq-error"].decode()

    # The status API: alpha sees its ticket, beta's token finds nothing, an empty token is no token.
    url = f"http://127.0.0.1:{glv.ticketing_settings.http_port}/v1/tickets/{filed.ticket_id}"
    async with httpx.AsyncClient() as client:
        mine = await client.get(url, headers=glv.status_headers("alpha"))
        assert mine.status_code == 200 and mine.json()["status"] == "scheduled"
        assert (await client.get(url, headers=glv.status_headers("beta"))).status_code == 404
        assert (await client.get(url, headers={"Authorization": "Bearer"})).status_code == 401

        # Revoked, beta can no longer authenticate anywhere.
        revoked = await portals.revoke(glv.ticketing_settings, glv.admin, "beta")
        assert revoked["status_token_revoked"] and revoked["acls_deleted"] > 0
        assert (await client.get(url, headers=glv.status_headers("beta"))).status_code == 401
    await refusal(
        "revoked portal",
        start_producer({"bootstrap_servers": secure.bootstrap, **glv.portal("beta")}),
        KafkaConnectionError,
        cause="SaslAuthenticationFailed",
    )

    # PostgreSQL: a client that trusts another CA refuses the server (verify-full).
    untrusted_db = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        await asyncpg.connect(glv.ticketing_settings.dsn(), ssl=untrusted_db, timeout=10)
    refused("PostgreSQL certificate from an untrusted CA", caught.value)
    async with glv.ticketing.db.unit_of_work() as uow:  # type: ignore[union-attr]
        assert await uow.conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")

    print("\nrefused, with what each client saw:")
    print(json.dumps(REFUSALS, indent=2))
    assert len(REFUSALS) == 11, sorted(REFUSALS)
