"""Meeting providers: unguessable rooms and per-participant join links, with no network I/O.

A provider turns a booked slot into a `MeetingPlan` (room + validity window) and the plan
into join links. Calling the platform (BigBlueButton `create`/`end`) is the caller's job;
this module only builds and signs the URLs, so it can be tested without a server.

Privacy: a join link carries the participant's display name (Jitsi puts it in the token,
which is signed but not encrypted; BigBlueButton puts it in the query). GLV events carry
ids only, so a link meant for an event should be built with a role label ("Petugas",
"Pemohon") as the display name, not the person's name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import quote, urlencode

from glv_schemas.events import Meeting

ProviderName = Literal["jitsi", "bigbluebutton"]
ChecksumAlgorithm = Literal["sha1", "sha256"]

DEFAULT_EARLY_JOIN = timedelta(minutes=15)
DEFAULT_GRACE = timedelta(minutes=30)

# Same floor as Meeting.room_id; token_urlsafe(24) always gives 32 characters.
_MIN_ROOM_ID_LENGTH = 22
# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
_MIN_HS256_KEY_BYTES = 32


def new_room_id() -> str:
    """A fresh room id: 24 random bytes (192 bits) from the OS CSPRNG, base64url, 32 characters.

    Knowing a room id is enough to find (and, on an open deployment, enter) a meeting, so it
    must be impossible to guess or enumerate: at least 128 random bits is the usual bar for
    bearer secrets; 192 leaves margin for providers that fold case (see `JitsiMeet.plan`).
    """
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Participant:
    participant_ref: str
    display_name: str
    moderator: bool


@dataclass(frozen=True)
class MeetingPlan:
    provider: ProviderName
    room_id: str
    valid_from: datetime
    valid_until: datetime

    def __post_init__(self) -> None:
        if len(self.room_id) < _MIN_ROOM_ID_LENGTH:
            raise ValueError("room_id is too short to be unguessable")
        if self.valid_from.tzinfo is None or self.valid_until.tzinfo is None:
            raise ValueError("validity bounds must be timezone-aware")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")


class MeetingProvider(Protocol):
    @property
    def name(self) -> ProviderName: ...

    def plan(self, starts_at: datetime, ends_at: datetime) -> MeetingPlan:
        """A new unguessable room, valid from `starts_at - early_join` to `ends_at + grace`."""
        ...

    def join_url(self, plan: MeetingPlan, who: Participant) -> str:
        """The link for one participant; moderator rights follow `who.moderator`."""
        ...

    def meeting(self, plan: MeetingPlan, who: Participant) -> Meeting:
        """The `Meeting` value for an event, with `who`'s join link."""
        ...


def _window(
    starts_at: datetime, ends_at: datetime, early_join: timedelta, grace: timedelta
) -> tuple[datetime, datetime]:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("starts_at and ends_at must be timezone-aware")
    if ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    return (starts_at - early_join).astimezone(UTC), (ends_at + grace).astimezone(UTC)


def _check_margins(early_join: timedelta, grace: timedelta) -> None:
    if early_join < timedelta(0) or grace < timedelta(0):
        raise ValueError("early_join and grace must not be negative")


def _meeting(plan: MeetingPlan, url: str) -> Meeting:
    # model_validate so that the URL and the bounds go through the event's own checks.
    return Meeting.model_validate(
        {
            "provider": plan.provider,
            "room_id": plan.room_id,
            "join_url": url,
            "valid_from": plan.valid_from,
            "valid_until": plan.valid_until,
        }
    )


def _b64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


# RFC 7519 compact serialisation, byte for byte what PyJWT's jwt.encode(claims, key, "HS256")
# gives (sorted header, compact JSON), without its per-call key checks: a token per SlotAssigned.
_HS256_HEADER = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


def hs256_token(claims: dict[str, Any], secret: bytes) -> str:
    """A JWT signed with HMAC-SHA256."""
    signing_input = _HS256_HEADER + b"." + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode("ascii")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class JitsiMeet:
    """Jitsi Meet with token authentication (prosody mod_auth_token, HS256 shared secret).

    The token is what enforces the window: prosody refuses it before `nbf` and after `exp`,
    and only for the room named in it. It gates joining; it does not end a running meeting.
    """

    name: ClassVar[ProviderName] = "jitsi"

    def __init__(
        self,
        domain: str,
        app_id: str,
        app_secret: str,
        early_join: timedelta = DEFAULT_EARLY_JOIN,
        grace: timedelta = DEFAULT_GRACE,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not domain or "/" in domain:
            raise ValueError("domain must be a bare host name, e.g. meet.example.org")
        if not app_id:
            raise ValueError("app_id must not be empty")
        if len(app_secret.encode()) < _MIN_HS256_KEY_BYTES:
            raise ValueError(f"app_secret must be at least {_MIN_HS256_KEY_BYTES} bytes for HS256")
        _check_margins(early_join, grace)
        # prosody compares `sub` with the lower-cased domain.
        self.domain = domain.lower()
        self.app_id = app_id
        self._secret = app_secret.encode()
        self.early_join = early_join
        self.grace = grace
        self._clock = clock

    def plan(self, starts_at: datetime, ends_at: datetime) -> MeetingPlan:
        valid_from, valid_until = _window(starts_at, ends_at, self.early_join, self.grace)
        # Jitsi room names are XMPP node names, which are case-insensitive (prosody lower-cases
        # both the room and the token's `room` claim). Storing the folded id keeps our id equal to
        # the one Jitsi reports back; [a-z0-9_-] x 32 characters is still about 168 bits.
        return MeetingPlan("jitsi", new_room_id().lower(), valid_from, valid_until)

    def token(self, plan: MeetingPlan, who: Participant) -> str:
        self._check(plan)
        claims: dict[str, Any] = {
            "iss": self.app_id,
            "aud": "jitsi",
            "sub": self.domain,
            "room": plan.room_id,
            "iat": int(self._clock().timestamp()),
            "nbf": int(plan.valid_from.timestamp()),
            "exp": int(plan.valid_until.timestamp()),
            "context": {
                "user": {
                    "id": who.participant_ref,
                    "name": who.display_name,
                    "moderator": who.moderator,
                    # Read by the token_affiliation style plugins ("owner" grants moderator).
                    "affiliation": "owner" if who.moderator else "member",
                },
            },
            # Read by the token_moderation style plugins on self-hosted deployments.
            "moderator": who.moderator,
        }
        return hs256_token(claims, self._secret)

    def join_url(self, plan: MeetingPlan, who: Participant) -> str:
        return f"https://{self.domain}/{quote(plan.room_id, safe='')}?jwt={self.token(plan, who)}"

    def meeting(self, plan: MeetingPlan, who: Participant) -> Meeting:
        return _meeting(plan, self.join_url(plan, who))

    def _check(self, plan: MeetingPlan) -> None:
        if plan.provider != self.name:
            raise ValueError(f"plan is for {plan.provider}, not {self.name}")


class BigBlueButton:
    """BigBlueButton through its checksum-signed HTTP API (2.6+, 3.x).

    A BBB join link cannot carry an expiry, so the window is enforced on our side: the links are
    issued for the window, the meeting is created (`create_url`) shortly before `valid_from` (a join
    before that fails with "meeting not found"), its `duration` runs out at `valid_until`, and we
    call `end_url` at `valid_until` as well. A link used after the meeting ended opens nothing,
    because each plan has a fresh meetingID that is never created again.
    """

    name: ClassVar[ProviderName] = "bigbluebutton"

    def __init__(
        self,
        base_url: str,
        shared_secret: str,
        checksum: ChecksumAlgorithm = "sha256",
        early_join: timedelta = DEFAULT_EARLY_JOIN,
        grace: timedelta = DEFAULT_GRACE,
    ) -> None:
        if not base_url.startswith("https://"):
            raise ValueError("base_url must be an https URL, e.g. https://bbb.example.org/bigbluebutton")
        if not shared_secret:
            raise ValueError("shared_secret must not be empty")
        if checksum not in ("sha1", "sha256"):
            raise ValueError("checksum must be sha1 or sha256")
        _check_margins(early_join, grace)
        self.base_url = base_url.rstrip("/")
        self._secret = shared_secret
        self.checksum_algorithm: ChecksumAlgorithm = checksum
        self.early_join = early_join
        self.grace = grace

    def plan(self, starts_at: datetime, ends_at: datetime) -> MeetingPlan:
        valid_from, valid_until = _window(starts_at, ends_at, self.early_join, self.grace)
        # BBB meetingIDs are case-sensitive, so the full 192 bits count.
        return MeetingPlan("bigbluebutton", new_room_id(), valid_from, valid_until)

    def checksum(self, call_name: str, query: str) -> str:
        """BBB's checksum: hex(hash(callName + queryString + sharedSecret))."""
        return hashlib.new(self.checksum_algorithm, (call_name + query + self._secret).encode()).hexdigest()

    def verify_checksum(self, call_name: str, query: str, checksum: str) -> bool:
        expected = self.checksum(call_name, query).encode()
        # Bytes so that a non-ASCII forgery is a mismatch rather than a TypeError.
        return hmac.compare_digest(expected, checksum.lower().encode("utf-8", "replace"))

    def create_url(
        self,
        plan: MeetingPlan,
        name: str,
        moderator_pw: str | None = None,
        created_at: datetime | None = None,
    ) -> str:
        """The `create` call for the plan's meeting.

        `duration` (minutes) makes BBB end the meeting itself at `valid_until` even if our
        `end` call is lost. BBB counts it from creation: pass `created_at` when the call is
        made; without it creation is assumed at `valid_from`, which can only end the meeting
        early by however long before `valid_from` it was created, never late.
        """
        self._check(plan)
        start = plan.valid_from if created_at is None else created_at
        minutes = math.ceil((plan.valid_until - start).total_seconds() / 60)
        if minutes <= 0:
            raise ValueError("the plan's window is already over")
        params: list[tuple[str, str]] = [
            ("meetingID", plan.room_id),
            ("name", name),
            ("record", "true"),
            ("autoStartRecording", "false"),
            ("allowStartStopRecording", "true"),
            ("meta_glv-valid-until", plan.valid_until.isoformat()),
            ("duration", str(minutes)),
        ]
        if moderator_pw is not None:
            # Only for servers before 2.6, which grant moderator by password rather than `role`.
            params.append(("moderatorPW", moderator_pw))
        return self._url("create", params)

    def join_url(self, plan: MeetingPlan, who: Participant) -> str:
        self._check(plan)
        return self._url(
            "join",
            [
                ("fullName", who.display_name),
                ("meetingID", plan.room_id),
                ("role", "MODERATOR" if who.moderator else "VIEWER"),
                ("userID", who.participant_ref),
                ("redirect", "true"),
            ],
        )

    def end_url(self, plan: MeetingPlan, moderator_pw: str | None = None) -> str:
        self._check(plan)
        params = [("meetingID", plan.room_id)]
        if moderator_pw is not None:
            # Required by `end` before BBB 3.0.
            params.append(("password", moderator_pw))
        return self._url("end", params)

    def meeting(self, plan: MeetingPlan, who: Participant) -> Meeting:
        return _meeting(plan, self.join_url(plan, who))

    def _url(self, call_name: str, params: list[tuple[str, str]]) -> str:
        # The checksum covers the query exactly as sent; BBB recomputes it over the raw string.
        query = urlencode(params)
        return f"{self.base_url}/api/{call_name}?{query}&checksum={self.checksum(call_name, query)}"

    def _check(self, plan: MeetingPlan) -> None:
        if plan.provider != self.name:
            raise ValueError(f"plan is for {plan.provider}, not {self.name}")


def _minutes(value: object) -> timedelta:
    # Settings usually arrive as strings or numbers of minutes.
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return timedelta(minutes=float(value))
    raise ValueError(f"expected minutes or a timedelta, got {value!r}")


def provider_from_settings(kind: str, **config: Any) -> MeetingProvider:
    """Build the provider named by `kind` ("jitsi" or "bigbluebutton") from its settings.

    `early_join` and `grace` may be given as minutes (number or string) or as timedeltas.
    """
    for key in ("early_join", "grace"):
        if key in config:
            config[key] = _minutes(config[key])
    factories: dict[str, Callable[..., MeetingProvider]] = {
        "jitsi": JitsiMeet,
        "bigbluebutton": BigBlueButton,
    }
    factory = factories.get(kind.strip().lower())
    if factory is None:
        raise ValueError(f"unknown meeting provider {kind!r}; expected one of {sorted(factories)}")
    try:
        return factory(**config)
    except TypeError as exc:  # an unknown or missing setting
        raise ValueError(f"bad settings for meeting provider {kind!r}: {exc}") from exc
