"""E-mail: compose one message (text and HTML alternatives, an optional calendar invite) and
send it over SMTP with aiosmtplib, turning every failure into the runtime's JobFailed.

The recipient's address is personal data: it never appears in an error, a log line or an
exception chain that leaves this module; errors carry SMTP codes only."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Literal
from uuid import UUID

import aiosmtplib
from icalendar import Calendar

from glv_notifier.messages import Locale, Rendered
from glv_runtime.jobs import JobFailed

InviteMethod = Literal["REQUEST", "CANCEL"]

_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_ENHANCED_CODE = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to submit mail. Defaults reach the local mail sink (glv_devtools.mailsink)."""

    host: str = "127.0.0.1"
    port: int = 2525
    from_address: str = "GLV <no-reply@notifier.glv>"
    starttls: bool = False  # upgrade a plain connection (submission port 587); required when on
    implicit_tls: bool = False  # TLS from the first byte (port 465)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    # A CA to trust instead of the system's (the local stack's, from deploy/local/tls.sh).
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.starttls and self.implicit_tls:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP authentication needs both a username and a password")


@dataclass(frozen=True)
class CalendarInvite:
    """An .ics calendar (RFC 5545) as made by the calendar module; its METHOD says whether it
    invites (REQUEST) or withdraws (CANCEL), and the MIME part must say the same."""

    ics: bytes

    @property
    def method(self) -> InviteMethod:
        method = str(Calendar.from_ical(self.ics).get("METHOD", "")).upper()
        if method == "REQUEST":
            return "REQUEST"
        if method == "CANCEL":
            return "CANCEL"
        raise ValueError(f"a calendar invite's METHOD is REQUEST or CANCEL, not {method!r}")


@dataclass(frozen=True)
class EmailSent:
    message_id: str
    reply: str  # the server's answer to the message, e.g. "250 OK: queued as 4F2A"


def message_id_for(notification_id: UUID, domain: str = "notifier.glv") -> str:
    """The Message-ID of a notification: fixed by its id, so that a resend after a crash carries
    the same one and the receiver (or a human) can tell it is a repeat."""
    return f"<{notification_id}@{domain}>"


def compose(
    rendered: Rendered,
    *,
    to: str,
    from_address: str,
    message_id: str,
    invite: CalendarInvite | None = None,
    locale: Locale | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """One e-mail: text and HTML alternatives and, with an invite, the calendar both as an
    alternative part (text/calendar; method=...), which calendar clients act on, and as an
    invite.ics attachment, which a person can open or import by hand."""
    if not _MESSAGE_ID.fullmatch(message_id):
        raise ValueError("a Message-ID looks like <id@domain>")
    when = date or datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("the Date of an e-mail needs a timezone")
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = to
    # A header is one line: a subject made from a template and a name must not fold into others.
    message["Subject"] = " ".join(rendered.subject.split())
    message["Date"] = format_datetime(when)
    message["Message-ID"] = message_id
    # RFC 3834: an automatic message; well-behaved auto-responders (vacation replies) stay quiet.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    if invite is not None:
        method = invite.method
        # Bytes, base64-encoded: the calendar's CRLF line ends and folding reach the client intact.
        message.add_alternative(
            invite.ics, maintype="text", subtype="calendar", params={"method": method, "charset": "utf-8"}
        )
        message.make_mixed()
        message.add_attachment(invite.ics, maintype="application", subtype="ics", filename="invite.ics")
    if locale is not None:
        # After the body: setting content clears a message's Content-* headers.
        message["Content-Language"] = locale
    return message


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    if not (settings.starttls or settings.implicit_tls):
        return None
    return ssl.create_default_context(cafile=settings.ca_file)


async def send_email(settings: SmtpSettings, message: EmailMessage) -> EmailSent:
    """Submit one composed message to its To: recipient; JobFailed when the server does not take it
    (permanent for a 5xx answer, transient for 4xx, timeouts and connection trouble)."""
    message_id = str(message["Message-ID"])
    try:
        errors, reply = await aiosmtplib.send(
            message,
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            use_tls=settings.implicit_tls,
            # Never None ("upgrade if the server offers it"): with STARTTLS on, a proxy that strips
            # the offer must fail the send, not downgrade it to the clear.
            start_tls=settings.starttls,
            tls_context=_tls_context(settings),
            timeout=settings.timeout_s,
        )
    except Exception as exc:
        # `from None`: the SMTP exception's text often echoes the address; the chain would carry
        # it into the job's logs.
        raise smtp_failure(exc) from None
    if errors:  # a refused recipient among several; we send to one, so this is that one
        codes = [response.code for response in errors.values()]
        raise JobFailed(f"SMTP recipient refused: {codes[0]}", permanent=min(codes) >= 500)
    return EmailSent(message_id=message_id, reply=reply)


def smtp_failure(exc: Exception) -> JobFailed:
    """What a failed submission means for the job: the code decides, never the server's text."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in exc.recipients]
        details = ", ".join(_code(refused) for refused in exc.recipients)
        return JobFailed(f"SMTP recipient refused: {details}", permanent=bool(codes) and min(codes) >= 500)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        stage = _STAGES.get(type(exc), "server answered")
        # Only a refusal of this recipient or this message is a verdict on the message. A refused
        # login, sender or greeting is our configuration (or the server's state): retried, so that
        # a wrong password does not fail, or divert to the phone, every message meanwhile.
        about_the_message = isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError)
        return JobFailed(f"SMTP {stage}: {_code(exc)}", permanent=about_the_message and 500 <= exc.code < 600)
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return JobFailed("SMTP server timed out")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # The server lacks what the settings ask for (STARTTLS, AUTH): a configuration to fix,
        # not a verdict on this message.
        return JobFailed("SMTP server does not support what the settings require")
    # Before ValueError: an untrusted certificate (ssl.SSLCertVerificationError) is both.
    if isinstance(exc, OSError | aiosmtplib.SMTPException):
        return JobFailed(f"cannot reach the SMTP server ({type(exc).__name__})")
    if isinstance(exc, ValueError):
        # aiosmtplib's refusal of an address it cannot send safely (e.g. non-ASCII to a server
        # without SMTPUTF8): the same every time.
        return JobFailed("SMTP submission impossible: an address cannot be sent as it is", permanent=True)
    return JobFailed(f"SMTP submission failed ({type(exc).__name__})")


_STAGES: dict[type[Exception], str] = {
    aiosmtplib.SMTPSenderRefused: "sender refused",
    aiosmtplib.SMTPRecipientRefused: "recipient refused",
    aiosmtplib.SMTPDataError: "message refused",
    aiosmtplib.SMTPAuthenticationError: "authentication refused",
    aiosmtplib.SMTPHeloError: "greeting refused",
    aiosmtplib.SMTPConnectResponseError: "connection refused",
}


def _code(exc: aiosmtplib.SMTPResponseException) -> str:
    """The reply code and, when the server gave one, the enhanced status code (RFC 3463):
    "550 5.1.1". The rest of the reply is free text that may quote the address."""
    enhanced = _ENHANCED_CODE.match(exc.message)
    return f"{exc.code} {enhanced.group(1)}" if enhanced else str(exc.code)
