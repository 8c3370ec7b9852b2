"""A real SMTP server on 127.0.0.1 for the demo and the tests: every accepted message becomes an
.eml file a newcomer can open, and it counts messages per Message-ID, so that a test can count
repeats. It can require AUTH, offer STARTTLS, and fail on purpose: refuse some recipients for good
(550) or defer the first N messages (451).

    python -m glv_devtools.mailsink --folder /var/tmp/glv/mail --port 2525
    python -m glv_devtools.mailsink --folder DIR --port 2525 --login glv --password-file F \\
        --tls-cert DIR/pg-server.crt --tls-key DIR/pg-server.key    # any cert valid for 127.0.0.1

In a test (it runs its own event loop in a thread, like a server elsewhere would):

    async with MailSink(tmp_path / "mail") as sink:   # port 0: a free port, then sink.port
        ...
        assert sink.count("<id@notifier.glv>") == 1
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import os
import re
import signal
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_SEQUENCE = re.compile(r"^(\d+)-.*\.eml$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


@dataclass(frozen=True)
class Received:
    """One accepted message."""

    seq: int
    message_id: str | None
    path: Path
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: datetime
    tls: bool  # the session had upgraded with STARTTLS
    login: str | None  # who authenticated, if anyone


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str = field(repr=False)


def file_name(seq: int, message_id: str | None) -> str:
    """`000042-<safe Message-ID>.eml`: sorted by arrival, and a repeat is easy to spot by eye."""
    safe = _UNSAFE.sub("_", (message_id or "").strip().strip("<>"))[:120] or "no-message-id"
    return f"{seq:06d}-{safe}.eml"


class _BoundController(Controller):
    """aiosmtpd's Controller, bound to port 0 if asked: the port the OS chose is read back before
    the controller's own readiness probe connects to it (no free-port guess that could race)."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
        )
        self.port = int(server.sockets[0].getsockname()[1])
        return server


class MailSink:
    """The server. `start()`/`stop()` (blocking, from a thread or a plain script) or `async with`."""

    def __init__(
        self,
        folder: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: Credentials | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        refuse_recipients: str | None = None,
        defer_first: int = 0,
    ) -> None:
        self.folder = Path(folder)
        self.host = host
        self.port = port
        self.credentials = credentials
        self._refuse = re.compile(refuse_recipients) if refuse_recipients else None
        self._defer_left = defer_first
        self._tls: ssl.SSLContext | None = None
        if tls_cert is not None or tls_key is not None:
            if tls_cert is None or tls_key is None:
                raise ValueError("STARTTLS needs both a certificate and its key")
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(tls_cert, tls_key)
        # The server's thread writes, the test's reads.
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._counts: Counter[str] = Counter()
        self.deferred = 0  # messages answered 451
        self.refused = 0  # recipients answered 550
        self._seq = 0
        self._controller: _BoundController | None = None

    # --- what arrived -------------------------------------------------------------------------

    def count(self, message_id: str) -> int:
        """How many times a message with this Message-ID was accepted."""
        with self._lock:
            return self._counts[message_id]

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Numbering continues after what an earlier run left in the folder: nothing is overwritten.
        existing = [int(m.group(1)) for p in self.folder.iterdir() if (m := _SEQUENCE.match(p.name))]
        self._seq = max(existing, default=0)
        controller = _BoundController(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="mailsink.glv",  # not socket.getfqdn(), which can hang on a bad resolver
            tls_context=self._tls,
            # Offered after STARTTLS only when there is TLS; in the clear otherwise (127.0.0.1).
            auth_require_tls=self._tls is not None,
            # AUTH is enforced by the handler at MAIL FROM rather than by aiosmtpd's auth_required,
            # which would also warn on every connection when it is allowed without TLS.
            auth_required=False,
            authenticator=self._authenticate,
        )
        controller.start()
        self._controller = controller
        self.port = controller.port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MailSink:
        # start() blocks until the server answers; off the caller's event loop.
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # --- the SMTP conversation (runs on the server's thread) ---------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        expected = self.credentials
        if expected is None or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(auth_data.login, expected.login.encode()) and hmac.compare_digest(
            auth_data.password, expected.password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

    def _refuses(self, address: str) -> bool:
        if self._refuse is not None and self._refuse.search(address):
            with self._lock:
                self.refused += 1
            return True
        return False

    def _defers(self) -> bool:
        with self._lock:
            if self._defer_left <= 0:
                return False
            self._defer_left -= 1
            self.deferred += 1
            return True

    def _store(self, session: Session, envelope: Envelope) -> int:
        content = envelope.original_content or b""
        headers = BytesHeaderParser(policy=default_policy).parsebytes(content)
        raw_id = headers.get("Message-ID")
        message_id = str(raw_id).strip() if raw_id is not None else None
        # The envelope, as a receiving MTA would note it, above the message as it came.
        trace = f"X-MailFrom: {envelope.mail_from}\r\nX-RcptTo: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        with self._lock:
            self._seq += 1
            seq = self._seq
        path = self.folder / file_name(seq, message_id)
        partial = path.with_name(f".{path.name}.part")
        # Written aside, then renamed: whoever watches the folder never opens half a message.
        partial.write_bytes(trace + content)
        os.replace(partial, path)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        with self._lock:
            if message_id is not None:
                self._counts[message_id] += 1
            self._received.append(
                Received(
                    seq=seq,
                    message_id=message_id,
                    path=path,
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    received_at=datetime.now(UTC),
                    tls=session.ssl is not None,
                    login=login,
                )
            )
        return seq


class _Handler:
    """aiosmtpd's hooks; each returns the SMTP reply."""

    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self._sink.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self._sink._refuses(address):
            # Like a real server's, but without echoing the address.
            return "550 5.1.1 Recipient address rejected: no such mailbox"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink._defers():
            return "451 4.3.0 Temporary failure, try again later"
        seq = self._sink._store(session, envelope)
        return f"250 2.0.0 OK: queued as {seq:06d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m glv_devtools.mailsink", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--folder", type=Path, required=True, help="where the .eml files go")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525, help="0 picks a free port")
    parser.add_argument("--login", help="require AUTH with this login (and --password-file)")
    parser.add_argument("--password-file", type=Path, help="the password, first line of this file")
    parser.add_argument("--tls-cert", type=Path, help="offer STARTTLS with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    parser.add_argument("--refuse", metavar="REGEX", help="answer 550 to recipients matching REGEX")
    parser.add_argument("--defer", metavar="N", type=int, default=0, help="answer 451 to the first N messages")
    args = parser.parse_args(argv)
    if (args.login is None) != (args.password_file is None):
        parser.error("--login and --password-file go together")
    credentials = None
    if args.login is not None:
        lines = args.password_file.read_text().splitlines()
        credentials = Credentials(args.login, lines[0] if lines else "")
    # aiosmtpd logs every recipient at INFO; the sink's own line below says what matters.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = MailSink(
        args.folder,
        host=args.host,
        port=args.port,
        credentials=credentials,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        refuse_recipients=args.refuse,
        defer_first=args.defer,
    )
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    sink.start()
    extras = [x for x, on in (("AUTH required", credentials), ("STARTTLS", args.tls_cert)) if on]
    print(
        f"mailsink: smtp://{sink.host}:{sink.port} -> {args.folder.resolve()}"
        + (f" ({', '.join(extras)})" if extras else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        stopping.wait()
    finally:
        sink.stop()
        print(f"mailsink: {len(sink.received)} message(s) received", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
