"""SMS and WhatsApp through an HTTP gateway, in one of two formats: a generic JSON POST
({"to", "channel", "text", "reference"}) or the WhatsApp Cloud API's template message. Every
attempt carries the delivery key as its Idempotency-Key, so a gateway can recognise a repeat
after a crash; every failure becomes the runtime's JobFailed.

The phone number is personal data: errors carry HTTP status codes only, never a response body
(gateways echo the number back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Literal

import httpx

from glv_notifier.channels import PhoneChannel
from glv_notifier.messages import Locale, Purpose, Rendered
from glv_notifier.ratelimit import TokenBucket
from glv_runtime.jobs import JobFailed

GatewayFormat = Literal["generic", "whatsapp_cloud"]
IDEMPOTENCY_HEADER = "Idempotency-Key"

# 408: the gateway gave up waiting for us. 409: the Idempotency-Key draft's answer while a request
# with the same key is still in progress. Both are worth another try; other 4xx are not.
_TRANSIENT_4XX = frozenset({408, 409})


@dataclass(frozen=True)
class GatewaySettings:
    """One gateway endpoint. Defaults reach the local gateway sink (glv_devtools.gatewaysink)."""

    # generic: the endpoint itself; whatsapp_cloud: .../v17.0/<phone-number-id>/messages
    url: str = "http://127.0.0.1:8099/v1/messages"
    format: GatewayFormat = "generic"
    token: str = field(default="", repr=False)  # bearer token; empty sends no Authorization
    timeout_s: float = 10.0
    # Client-side limit shared by all sends through this gateway (see ratelimit.TokenBucket).
    rate_per_s: float = 20.0


@dataclass(frozen=True)
class PhoneMessage:
    to: str  # the phone number, international form (+62...)
    channel: PhoneChannel
    purpose: Purpose
    locale: Locale
    rendered: Rendered
    # (ticket, purpose, slot version): the same on every attempt of this message.
    delivery_key: str


@dataclass(frozen=True)
class GatewaySent:
    status: int
    provider_id: str | None  # the gateway's message id, when it gave one


def request_body(wire_format: GatewayFormat, message: PhoneMessage) -> dict[str, Any]:
    """The JSON a gateway in `wire_format` expects for `message`."""
    if wire_format == "generic":
        return {
            "to": message.to,
            "channel": message.channel,
            "text": message.rendered.short,
            "reference": message.delivery_key,
        }
    if message.channel != "whatsapp":
        raise ValueError("the WhatsApp Cloud API carries WhatsApp messages only")
    # Business-initiated WhatsApp messages must be pre-approved templates: one per purpose and
    # language, its body variables filled in order.
    template: dict[str, Any] = {"name": message.purpose.value, "language": {"code": message.locale}}
    if message.rendered.template_parameters:
        parameters = [{"type": "text", "text": value} for value in message.rendered.template_parameters]
        template["components"] = [{"type": "body", "parameters": parameters}]
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to,
        "type": "template",
        "template": template,
    }


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (RFC 9110: delay-seconds or an HTTP date) as seconds from `now`;
    None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def gateway_failure(status: int, retry_after: float | None = None) -> JobFailed:
    """What a non-2xx answer means for the job."""
    if status == 429:
        return JobFailed("gateway rate limit (429)", retry_after_s=retry_after)
    if status >= 500 or status in _TRANSIENT_4XX:
        return JobFailed(f"gateway answered {status}")
    return JobFailed(f"gateway refused the message ({status})", permanent=True)


class GatewaySender:
    """Sends phone messages to one gateway over a pooled HTTP client; `async with` closes it.
    Pass one `limiter` to every sender that shares the gateway's rate limit."""

    def __init__(
        self,
        settings: GatewaySettings,
        limiter: TokenBucket | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter or TokenBucket(settings.rate_per_s)
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s)
        self._owns_client = client is None

    async def __aenter__(self) -> GatewaySender:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def send(self, message: PhoneMessage) -> GatewaySent:
        body = request_body(self.settings.format, message)
        headers = {IDEMPOTENCY_HEADER: message.delivery_key}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        await self.limiter.acquire()
        try:
            response = await self._client.post(self.settings.url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise JobFailed("gateway timed out") from None
        except httpx.HTTPError as exc:
            # `from None`: httpx's exception chain is of no use to the job and keeps the request.
            raise JobFailed(f"cannot reach the gateway ({type(exc).__name__})") from None
        if response.is_success:
            return GatewaySent(status=response.status_code, provider_id=_provider_id(response))
        retry_after = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
        if response.status_code == 429 and retry_after:
            # Every send in this process waits, not just this one: they all go to the same gateway.
            self.limiter.hold(retry_after)
        raise gateway_failure(response.status_code, retry_after)


def _provider_id(response: httpx.Response) -> str | None:
    """The gateway's id for the message: {"id": ...} (generic) or {"messages": [{"id": ...}]}
    (Cloud API). A 2xx without one is still a success."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("id"), str):
        return str(body["id"])
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        found = messages[0].get("id")
        return found if isinstance(found, str) else None
    return None
