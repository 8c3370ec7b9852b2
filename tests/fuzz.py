"""Records for the fuzzer: valid events, byte-level garbage and mutated valid events.

Hypothesis draws the garbage and the mutations (it is used as a generator here:
generation phase only, no shrinking, a fixed seed); valid events come from the
portal simulator. Every record is classified by the consuming service's own
decoder before it is sent, so the test knows which ones must be applied and which
dead-lettered, and can account for every single one afterwards.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from pydantic import BaseModel

from glv_devtools.catalog import office_entries
from glv_devtools.portal import accepted_for, record_for, slot_for, ticket
from glv_runtime.consumer import Delivery, Inbound, PermanentFailure
from glv_schemas import events as ev
from glv_schemas import new_cloud_event
from glv_schemas.topics import ARCHIVE_EVENTS, CATALOG, PORTAL_TICKETS, SCHEDULER_EVENTS, TICKETING_EVENTS

# The fuzzing portal's own intake topic (what it may write).
FUZZ_PORTAL = "fuzz-portal"
FUZZ_INTAKE = PORTAL_TICKETS.for_portal(FUZZ_PORTAL)
# What a body may name instead of the fuzzing portal: onboarded portals, and any id the schema allows.
OTHER_PORTALS = ["sim-portal", "other-portal", "fuzz-portal-2", "fuzz_portal"]
PORTAL_ID_SCHEMA = next(m.pattern for m in ev.TicketFiled.model_fields["portal_id"].metadata if hasattr(m, "pattern"))

CE_HEADERS = [b"ce_id", b"ce_source", b"ce_type", b"ce_specversion", b"ce_time", b"ce_subject", b"traceparent"]


@dataclass
class FuzzRecord:
    topic: str  # without the test's prefix
    key: bytes | None
    value: bytes | None
    headers: list[tuple[bytes, bytes]]
    origin: str  # "valid", "garbage" or "mutated:<how>"
    partition: int = 0
    # Filled by classify(): the decoded event, or the code it must be dead-lettered with.
    event: BaseModel | None = None
    expected_code: str | None = None
    offset: int = -1
    identity: tuple[str, str] | None = field(default=None)

    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"") + sum(len(n) + len(v) for n, v in self.headers)


def _record(event: BaseModel, topic: str, source: str, origin: str = "valid") -> FuzzRecord:
    raw = record_for(event, source=source)
    return FuzzRecord(topic, raw.key, raw.value, [(n.encode(), v) for n, v in raw.headers], origin)


# --------------------------------------------------------------- valid events


def valid_event(topic: str, rng: random.Random) -> FuzzRecord:  # also a hypothesis Random
    """A well-formed event for the topic, with fresh ids (so that nothing collides)."""
    offices = office_entries()
    office = rng.choice(offices)
    service = rng.choice(office.services)
    filed = ticket(rng, portal_id=FUZZ_PORTAL, office_code=office.office_code, service_code=service.service_code)
    # A fresh id whatever the seed (hypothesis draws small seeds often): the test counts
    # decisions per ticket, and a resubmitted id would rightly get more than one.
    filed = filed.model_copy(update={"ticket_id": uuid.uuid4()})
    now = datetime.now(UTC)
    if topic == FUZZ_INTAKE:
        roll = rng.random()
        if roll < 0.8:
            return _record(filed, topic, "/portal/fuzz")
        if roll < 0.9:
            request = ev.CancellationRequested(ticket_id=filed.ticket_id, portal_id=FUZZ_PORTAL, requested_at=now)
            return _record(request, topic, "/portal/fuzz")
        request_r = ev.RescheduleRequested(
            ticket_id=filed.ticket_id,
            portal_id=FUZZ_PORTAL,
            preferred_windows=filed.preferred_windows,
            requested_at=now,
        )
        return _record(request_r, topic, "/portal/fuzz")
    if topic == TICKETING_EVENTS.name:
        code = f"{office.office_code}-{now:%y%m%d}-{rng.randrange(10_000, 99_999)}"
        if rng.random() < 0.85:
            return _record(accepted_for(filed, code), topic, "/glv/ticketing")
        cancelled = ev.TicketCancelled(
            ticket_id=filed.ticket_id,
            ticket_code=code,
            portal_id=FUZZ_PORTAL,
            office_code=office.office_code,
            cancelled_at=now,
        )
        return _record(cancelled, topic, "/glv/ticketing")
    if topic == SCHEDULER_EVENTS.name:
        slot = slot_for(filed, office.zone, now + timedelta(days=2))
        if rng.random() < 0.8:
            return _record(slot, topic, "/glv/scheduler")
        # A held session whose recordings are on a host the archive may not fetch from: it is
        # recorded and its artifacts refused (forbidden_host) without any network call.
        held = ev.SessionHeld(
            ticket_id=filed.ticket_id,
            session_id=uuid.uuid4(),
            slot_id=slot.slot_id,
            office_code=office.office_code,
            started_at=now - timedelta(hours=1),
            ended_at=now,
            attendance=[ev.Attendance(role="officer", participant_ref=slot.officer_id, joined_at=now)],
            artifacts=[
                ev.Artifact(
                    kind="video",
                    url=f"https://recordings.fuzz.invalid/{uuid.uuid4().hex}.mp4",
                    content_type="video/mp4",
                    size_bytes=rng.randrange(1, 1 << 30),
                )
            ],
        )
        return _record(held, topic, "/glv/scheduler")
    if topic == ARCHIVE_EVENTS.name:
        failed = ev.ArchiveFailed(
            ticket_id=filed.ticket_id, session_id=uuid.uuid4(), reason="missing_video", retryable=False, failed_at=now
        )
        return _record(failed, topic, "/glv/archive")
    # The catalog: an entry older than the one loaded, so it changes nothing.
    stale = office.model_copy(update={"updated_at": office.updated_at - timedelta(days=rng.randrange(1, 400))})
    return _record(stale, topic, "/glv/scheduler")


# ------------------------------------------------------------ hypothesis parts

header_names = st.one_of(st.sampled_from(CE_HEADERS), st.binary(max_size=24))
header_values = st.one_of(
    st.binary(max_size=48),
    st.text(max_size=32).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"\x00", b"1.0", b"glv.TicketFiled.v1", b"\xff\xfe", b"2026-13-45T99:99:99Z"]),
)
garbage_values = st.one_of(
    st.none(),
    st.binary(max_size=400),
    st.sampled_from([b"", b"null", b"{}", b"[]", b"{" * 3000, b"1e999999", b"\xef\xbb\xbf{}", b'{"a":"\\u0000"}']),
)

# Replaced by a number of thousands of digits after json.dumps (Python refuses to print one).
HUGE_NUMBER = "__huge_number__"
JSON_MUTATIONS: dict[str, Callable[[dict[str, object], random.Random], object]] = {
    "nul-in-string": lambda _, rng: "a\u0000b",
    "huge-number": lambda _, rng: HUGE_NUMBER,
    "deep-nesting": lambda _, rng: json.loads("[" * 900 + "]" * 900),
    "long-text": lambda _, rng: "x" * rng.randrange(20_001, 60_000),
    "null": lambda _, rng: None,
    "object": lambda _, rng: {"nested": {"deeper": [1, 2, 3]}},
    "emoji": lambda _, rng: "\U0001f600" * rng.randrange(1, 300),
    "lone-surrogate-escape": lambda _, rng: "\ud800",
}


@st.composite
def mutated(draw: st.DrawFn, topic: str) -> FuzzRecord:
    rng = draw(st.randoms(use_true_random=False))
    record = valid_event(topic, rng)
    how = draw(
        st.sampled_from(
            [
                "drop-header",
                "header-bytes",
                "type-confusion",
                "truncate",
                "flip-byte",
                "json-field",
                "unknown-field",
                "new-key",
                "no-key",
                "no-value",
                "oversize",
                "key-and-value-gone",
                "another-portal",
            ]
        )
    )
    record.origin = f"mutated:{how}"
    headers = dict(record.headers)
    body = json.loads(record.value or b"{}")
    if how == "drop-header":
        headers.pop(draw(st.sampled_from(CE_HEADERS[:4])), None)
    elif how == "header-bytes":
        headers[draw(st.sampled_from(CE_HEADERS))] = draw(header_values)
    elif how == "type-confusion":
        headers[b"ce_type"] = draw(st.sampled_from(sorted(ev.EVENTS_BY_TYPE))).encode()
    elif how == "truncate" and record.value:
        record.value = record.value[: draw(st.integers(0, max(0, len(record.value) - 1)))]
    elif how == "flip-byte" and record.value:
        at = draw(st.integers(0, len(record.value) - 1))
        record.value = record.value[:at] + bytes([draw(st.integers(0, 255))]) + record.value[at + 1 :]
    elif how == "json-field":
        name = draw(st.sampled_from(sorted(body)))
        kind = draw(st.sampled_from(sorted(JSON_MUTATIONS)))
        record.origin += f":{kind}"
        body[name] = JSON_MUTATIONS[kind](body, rng)
        digits = "9" * rng.randrange(20, 20_000) + ("e99999" if rng.random() < 0.3 else "")
        record.value = json.dumps(body).replace(f'"{HUGE_NUMBER}"', digits).encode("utf-8", "surrogatepass")
    elif how == "unknown-field":
        body[draw(st.text(min_size=1, max_size=12))] = draw(st.text(max_size=12))
        record.value = json.dumps(body).encode("utf-8", "surrogatepass")
    elif how == "new-key":
        record.key = draw(st.one_of(st.binary(max_size=40), st.uuids().map(lambda u: str(u).encode())))
    elif how == "no-key":
        record.key = None
    elif how == "no-value":
        record.value = None
    elif how == "oversize":
        record.value = (record.value or b"") + b" " * (600 * 1024)
    elif how == "another-portal" and "portal_id" in body:
        # A portal speaking for another: on its own intake topic, the service refuses it
        # (portal_mismatch); elsewhere the portal_id is just a field.
        body["portal_id"] = draw(
            st.one_of(st.sampled_from(OTHER_PORTALS), st.from_regex(PORTAL_ID_SCHEMA, fullmatch=True))
        )
        record.value = json.dumps(body).encode()
    else:  # key-and-value-gone
        record.key, record.value = None, None
    record.headers = list(headers.items())
    return record


@st.composite
def garbage(draw: st.DrawFn, topic: str) -> FuzzRecord:
    return FuzzRecord(
        topic=topic,
        key=draw(st.one_of(st.none(), st.binary(max_size=40))),
        value=draw(garbage_values),
        headers=draw(st.lists(st.tuples(header_names, header_values), max_size=8)),
        origin="garbage",
    )


def forged(count: int, seed: int) -> list[FuzzRecord]:
    """Sound filings and requests on the fuzzing portal's own topic whose body names another
    portal: the broker let only the fuzzing portal write there, so each is refused as
    portal_mismatch. (The "another-portal" mutation draws some too, but not surely.)"""
    rng = random.Random(seed)
    records: list[FuzzRecord] = []
    for n in range(count):
        record = valid_event(FUZZ_INTAKE, rng)
        body = json.loads(record.value or b"{}")
        body["portal_id"] = OTHER_PORTALS[n % len(OTHER_PORTALS)]
        record.value = json.dumps(body).encode()
        record.origin = "forged"
        records.append(record)
    return records


def draw_records(topics: Sequence[str], count: int, seed: int, valid_share: float = 0.4) -> list[FuzzRecord]:
    """`count` records spread over `topics`, valid ones interleaved with bad ones.

    Every choice is drawn from hypothesis (the per-record generators get a drawn
    seed), so that generation is reproducible from `seed`."""
    drawn: list[FuzzRecord] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        topic = data.draw(st.sampled_from(list(topics)))
        record_seed = data.draw(st.integers(0, 2**32 - 1))
        if data.draw(st.floats(0, 1)) < valid_share:
            drawn.append(valid_event(topic, random.Random(record_seed)))
        elif data.draw(st.booleans()):
            drawn.append(data.draw(mutated(topic)))
        else:
            drawn.append(data.draw(garbage(topic)))

    rounds = 0
    while len([r for r in drawn if sendable(r)]) < count:
        collect()
        rounds += 1
        seed += rounds  # hypothesis may stop early once it has seen enough distinct cases
        collect = hypothesis_seed(seed)(collect)
    return [r for r in drawn if sendable(r)][:count]


def sendable(record: FuzzRecord) -> bool:
    """The broker itself refuses a record without a key on a compacted topic (the catalog):
    no client can make a service read one."""
    return record.key is not None or record.topic != CATALOG.name


# ------------------------------------------------------------ classification


def classify(record: FuzzRecord, decoder: Callable[[Delivery], Inbound]) -> None:
    """What the service must do with it: apply the decoded event, or dead-letter it with a code.

    Header names that are not UTF-8 make the client library refuse the record (the
    fetch guard hands it over as unreadable)."""
    try:
        headers = tuple((name.decode("utf-8"), value) for name, value in record.headers)
    except UnicodeDecodeError:
        record.expected_code = "unreadable_record"
        return
    delivery = Delivery(record.topic, record.partition, 0, record.key, headers, record.value)
    try:
        inbound = decoder(delivery)
    except PermanentFailure as failure:
        record.expected_code = failure.code
        return
    record.event = inbound.event
    record.identity = (inbound.cloud_event.source, inbound.cloud_event.id)


def fresh_cloud_event_headers(model: type[BaseModel], key: str) -> list[tuple[bytes, bytes]]:
    cloud_event = new_cloud_event(model, source="/portal/fuzz", subject=key)  # type: ignore[arg-type]
    return [(n.encode(), v) for n, v in cloud_event.to_headers()]


TOPICS_OF = {
    "ticketing": [FUZZ_INTAKE, SCHEDULER_EVENTS.name, ARCHIVE_EVENTS.name, CATALOG.name],
    "scheduler": [TICKETING_EVENTS.name],
    "archive": [SCHEDULER_EVENTS.name, TICKETING_EVENTS.name, CATALOG.name],
}
