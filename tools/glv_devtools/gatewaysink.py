"""A real HTTP gateway for SMS and WhatsApp on 127.0.0.1, for the demo and the tests. It takes
the two formats the notifier speaks, records every request (headers, Idempotency-Key, body,
answer) in memory and as one JSON line each in a file, and counts accepted messages per
Idempotency-Key, so that a test can count repeats. It can check a bearer token and fail on
purpose: 429 with Retry-After for the first N requests, or 400 for some recipients (for good).

    POST /v1/messages                         {"to", "channel": "sms"|"whatsapp", "text", "reference"}
    POST /v17.0/<phone-number-id>/messages    the WhatsApp Cloud API's template message

    python -m glv_devtools.gatewaysink --log /var/tmp/glv/gateway.jsonl --port 8099

In a test:

    async with GatewaySink(tmp_path / "gateway.jsonl") as gateway:   # a free port
        ... gateway.generic_url, gateway.whatsapp_url("1234") ...
        assert gateway.count("delivery-key") == 1
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from glv_devtools.localserver import LocalHttpServer

Format = Literal["generic", "whatsapp_cloud"]

_API_VERSION = re.compile(r"v\d+\.\d+")
# Recorded as they came; Authorization only as whether it was present (the log is not a vault).
_RECORDED_HEADERS = ("content-type", "idempotency-key", "user-agent")


@dataclass(frozen=True)
class GatewayRequest:
    seq: int
    received_at: str  # ISO 8601, UTC
    monotonic_s: float  # the server's time.monotonic(): spacing between requests
    path: str
    format: Format | None
    idempotency_key: str | None
    authorized: bool
    headers: dict[str, str]
    body: Any  # the JSON, or the raw text when it was not JSON
    status: int


class _Refusal(Exception):
    def __init__(self, status: int, message: str, code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class GatewaySink(LocalHttpServer):
    """The gateway. `async with` runs it on the caller's event loop; `serve()` until stopped."""

    def __init__(
        self,
        log_file: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        throttle_first: int = 0,
        retry_after: str = "1",
        reject_recipients: str | None = None,
    ) -> None:
        self.log_file = log_file
        self._token = token
        self._throttle_left = throttle_first
        self.retry_after = retry_after  # the header's value: seconds or an HTTP date
        self._reject = re.compile(reject_recipients) if reject_recipients else None
        self.requests: list[GatewayRequest] = []
        self.counts: Counter[str] = Counter()  # accepted, per Idempotency-Key
        # The first answer per key, given again to a repeat: what an idempotent gateway does.
        self._answers: dict[str, str] = {}
        app = Starlette(
            routes=[
                Route("/v1/messages", self._generic, methods=["POST"]),
                Route("/{version}/{phone_number_id}/messages", self._whatsapp, methods=["POST"]),
            ]
        )
        super().__init__(app, name="gatewaysink", host=host, port=port)

    @property
    def generic_url(self) -> str:
        return f"{self.base_url}/v1/messages"

    def whatsapp_url(self, phone_number_id: str = "100000000000001", version: str = "v17.0") -> str:
        return f"{self.base_url}/{version}/{phone_number_id}/messages"

    def count(self, idempotency_key: str) -> int:
        """How many times a message with this Idempotency-Key was accepted."""
        return self.counts[idempotency_key]

    # --- the two formats ----------------------------------------------------------------------

    async def _generic(self, request: Request) -> JSONResponse:
        return await self._handle(request, "generic", _check_generic)

    async def _whatsapp(self, request: Request) -> JSONResponse:
        if not _API_VERSION.fullmatch(request.path_params["version"]):
            return JSONResponse({"error": {"message": "Unknown path", "code": 100}}, status_code=404)
        return await self._handle(request, "whatsapp_cloud", _check_whatsapp)

    async def _handle(self, request: Request, fmt: Format, check: Callable[[Any], str]) -> JSONResponse:
        received_at, monotonic_s = datetime.now(UTC).isoformat(), time.monotonic()
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        key = request.headers.get("idempotency-key")
        authorized = self._authorized(request.headers.get("authorization"))
        try:
            if not authorized:
                raise _Refusal(401, "Invalid OAuth access token", 190)
            if self._throttle_left > 0:
                self._throttle_left -= 1
                raise _Refusal(429, "Rate limit hit", 130429, {"Retry-After": self.retry_after})
            to = check(body)
            if self._reject is not None and self._reject.search(to):
                # Without the number: a gateway's answer ends up in logs.
                raise _Refusal(400, "Recipient cannot receive this message", 131026)
        except _Refusal as refusal:
            status = refusal.status
            answer = JSONResponse(
                {"error": {"message": refusal.message, "code": refusal.code}},
                status_code=status,
                headers=refusal.headers,
            )
        else:
            seq = len(self.requests) + 1
            message_id = self._answers.setdefault(key, f"msg-{seq:06d}") if key else f"msg-{seq:06d}"
            if key:
                self.counts[key] += 1
            if fmt == "generic":
                status, answer = 202, JSONResponse({"id": message_id, "status": "queued"}, status_code=202)
            else:
                contacts = [{"input": body["to"], "wa_id": body["to"].lstrip("+")}]
                status = 200
                answer = JSONResponse(
                    {"messaging_product": "whatsapp", "contacts": contacts, "messages": [{"id": message_id}]}
                )
        self._record(
            GatewayRequest(
                seq=len(self.requests) + 1,
                received_at=received_at,
                monotonic_s=monotonic_s,
                path=request.url.path,
                format=fmt,
                idempotency_key=key,
                authorized=authorized,
                headers={name: request.headers[name] for name in _RECORDED_HEADERS if name in request.headers},
                body=body,
                status=status,
            )
        )
        return answer

    def _authorized(self, header: str | None) -> bool:
        if self._token is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), self._token.encode())

    def _record(self, entry: GatewayRequest) -> None:
        self.requests.append(entry)
        if self.log_file is not None:
            with self.log_file.open("a", encoding="utf-8") as log:
                log.write(json.dumps(asdict(entry), ensure_ascii=False) + "\n")


def _bad(message: str) -> _Refusal:
    return _Refusal(400, message, 100)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{what} must be a non-empty string")
    return value


def _check_generic(body: Any) -> str:
    """The recipient of a valid generic request; 400 otherwise."""
    if not isinstance(body, dict) or set(body) != {"to", "channel", "text", "reference"}:
        raise _bad("expected exactly the fields to, channel, text, reference")
    if body["channel"] not in ("sms", "whatsapp"):
        raise _bad("channel must be sms or whatsapp")
    for name in ("text", "reference"):
        _text(body[name], name)
    return _text(body["to"], "to")


def _check_whatsapp(body: Any) -> str:
    """The recipient of a valid Cloud API template message; 400 otherwise."""
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        raise _bad("messaging_product must be whatsapp")
    if body.get("type") != "template":
        raise _bad("only template messages are accepted")
    template = body.get("template")
    if not isinstance(template, dict):
        raise _bad("template is required")
    _text(template.get("name"), "template.name")
    language = template.get("language")
    _text(language.get("code") if isinstance(language, dict) else None, "template.language.code")
    for component in template.get("components", []):
        if not isinstance(component, dict) or component.get("type") != "body":
            raise _bad("components: only a body component is accepted")
        for parameter in component.get("parameters", []):
            if not isinstance(parameter, dict) or parameter.get("type") != "text":
                raise _bad("parameters must be of type text")
            _text(parameter.get("text"), "parameter text")
    return _text(body.get("to"), "to")


async def _serve_until_stopped(sink: GatewaySink) -> None:
    await sink.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, sink.request_stop)
    print(
        f"gatewaysink: {sink.generic_url} and {sink.base_url}/v17.0/<phone-number-id>/messages"
        + (f" -> {sink.log_file.resolve()}" if sink.log_file else ""),
        file=sys.stderr,
        flush=True,
    )
    await sink.wait_stopped()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glv_devtools.gatewaysink", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--log", type=Path, help="append every request to this JSON Lines file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--token-file", type=Path, help="require this bearer token (first line of the file)")
    parser.add_argument("--throttle", metavar="N", type=int, default=0, help="answer 429 to the first N requests")
    parser.add_argument("--retry-after", default="1", help="the 429's Retry-After: seconds or an HTTP date")
    parser.add_argument("--reject", metavar="REGEX", help="answer 400 to recipients matching REGEX")
    args = parser.parse_args(argv)
    token = None
    if args.token_file is not None:
        lines = args.token_file.read_text().splitlines()
        token = lines[0] if lines else ""
    if args.log is not None:
        args.log.parent.mkdir(parents=True, exist_ok=True)
    sink = GatewaySink(
        args.log,
        host=args.host,
        port=args.port,
        token=token,
        throttle_first=args.throttle,
        retry_after=args.retry_after,
        reject_recipients=args.reject,
    )
    asyncio.run(_serve_until_stopped(sink))
    print(f"gatewaysink: {len(sink.requests)} request(s), {sum(sink.counts.values())} accepted", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
