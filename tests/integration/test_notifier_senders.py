"""The notifier's senders against real local servers on 127.0.0.1: the SMTP sink (aiosmtpd) that
writes .eml files, and the HTTP gateway sink (uvicorn) that records requests. What arrives is read
back from the servers' own records: the files, their counts, their timestamps."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from email.utils import format_datetime
from pathlib import Path
from uuid import uuid4

import pytest
from icalendar import Calendar, Event

from glv_devtools.gatewaysink import GatewaySink
from glv_devtools.mailsink import Credentials, MailSink
from glv_notifier.email import CalendarInvite, SmtpSettings, compose, message_id_for, send_email
from glv_notifier.gateway import GatewaySender, GatewaySettings, PhoneMessage
from glv_notifier.messages import Purpose, Rendered
from glv_notifier.ratelimit import TokenBucket
from glv_runtime.jobs import JobFailed
from tests.secure_infra import TLS_SCRIPT

ADDRESS = "ani.wijaya@example.id"
PHONE = "+6281234567890"
TOKEN = "gw-test-token-3f9a"

RENDERED = Rendered(
    subject="Undangan sesi layanan GLV-7K2M",
    text="Yth. Ani,\n\nSesi Anda: Kamis, 3 Desember 2026 pukul 09.00 WITA.\n",
    html="<p>Yth. Ani &lt;script&gt;,</p><p>Sesi Anda: Kamis, 3 Desember 2026 pukul 09.00 WITA.</p>",
    short="GLV-7K2M: Kamis, 3 Desember 2026 pukul 09.00 WITA. https://meet.glv.example/s/7k2m",
    template_parameters=("Ani", "Kamis, 3 Desember 2026 pukul 09.00 WITA"),
)


def invite(method: str = "REQUEST", sequence: int = 0) -> CalendarInvite:
    calendar = Calendar()
    calendar.add("prodid", "-//GLV//notifier test//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    event = Event()
    event.add("uid", "ticket-7k2m@glv")
    event.add("sequence", sequence)
    event.add("dtstamp", datetime(2026, 12, 1, tzinfo=UTC))
    event.add("dtstart", datetime(2026, 12, 3, 1, 0, tzinfo=UTC))
    event.add("dtend", datetime(2026, 12, 3, 1, 30, tzinfo=UTC))
    event.add("summary", "Sesi layanan GLV")
    calendar.add_component(event)
    return CalendarInvite(calendar.to_ical())


def mail(message_id: str, *, to: str = ADDRESS, with_invite: CalendarInvite | None = None) -> EmailMessage:
    return compose(
        RENDERED,
        to=to,
        from_address="GLV <no-reply@notifier.glv>",
        message_id=message_id,
        invite=with_invite,
        locale="id",
    )


def smtp(sink: MailSink) -> SmtpSettings:
    return SmtpSettings(host=sink.host, port=sink.port, timeout_s=10)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def mailsink(tmp_path: Path) -> AsyncIterator[MailSink]:
    async with MailSink(tmp_path / "mail") as sink:
        yield sink


# --- e-mail -------------------------------------------------------------------------------------


async def test_an_email_with_an_invite_arrives_as_eml_and_parses_back(mailsink: MailSink) -> None:
    message_id = message_id_for(uuid4())
    sent = await send_email(smtp(mailsink), mail(message_id, with_invite=invite("REQUEST", sequence=2)))

    assert sent.message_id == message_id and sent.reply.startswith("2.0.0 OK")
    [received] = mailsink.received
    assert received.message_id == message_id and received.rcpt_tos == (ADDRESS,)
    assert received.path.name == f"000001-{message_id.strip('<>')}.eml"
    assert list(received.path.parent.iterdir()) == [received.path]  # no partial file left behind

    parsed = BytesParser(policy=default_policy).parsebytes(received.path.read_bytes())
    assert parsed["Message-ID"] == message_id
    assert parsed["Subject"] == RENDERED.subject
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Content-Language"] == "id"
    assert parsed["Date"] is not None
    assert parsed.get_content_type() == "multipart/mixed"
    parts = {part.get_content_type(): part for part in parsed.walk()}
    assert parts["text/plain"].get_content().replace("\r\n", "\n") == RENDERED.text  # CRLF on the wire
    assert "&lt;script&gt;" in parts["text/html"].get_content()
    calendar_part = parts["text/calendar"]
    assert calendar_part.get_param("method") == "REQUEST"
    attachment = parts["application/ics"]
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_content_disposition() == "attachment"
    for part in (calendar_part, attachment):
        calendar = Calendar.from_ical(part.get_payload(decode=True))
        [event] = calendar.walk("VEVENT")
        assert str(calendar["METHOD"]) == "REQUEST"
        assert str(event["UID"]) == "ticket-7k2m@glv" and int(event["SEQUENCE"]) == 2
        assert event.decoded("DTSTART") == datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


async def test_a_cancellation_says_cancel_in_the_mime_part(mailsink: MailSink) -> None:
    await send_email(smtp(mailsink), mail(message_id_for(uuid4()), with_invite=invite("CANCEL", sequence=3)))
    parsed = BytesParser(policy=default_policy).parsebytes(mailsink.received[0].path.read_bytes())
    [calendar_part] = [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    assert calendar_part.get_param("method") == "CANCEL"


async def test_a_resend_carries_the_same_message_id_and_the_sink_counts_two(mailsink: MailSink) -> None:
    message_id = message_id_for(uuid4())
    # As after a crash between the server's 250 and the job's record: composed afresh, sent again.
    await send_email(smtp(mailsink), mail(message_id))
    await send_email(smtp(mailsink), mail(message_id))

    assert mailsink.count(message_id) == 2
    paths = [r.path for r in mailsink.received]
    assert len(set(paths)) == 2
    ids = {BytesParser(policy=default_policy).parsebytes(p.read_bytes())["Message-ID"] for p in paths}
    assert ids == {message_id}


async def test_a_refused_recipient_is_a_permanent_failure_that_does_not_name_them(tmp_path: Path) -> None:
    refused = "nobody@bounce.example"
    async with MailSink(tmp_path / "mail", refuse_recipients=r"@bounce\.example$") as sink:
        with pytest.raises(JobFailed) as failed:
            await send_email(smtp(sink), mail(message_id_for(uuid4()), to=refused))
        assert failed.value.permanent
        assert "550 5.1.1" in failed.value.reason
        assert refused not in failed.value.reason and "bounce" not in failed.value.reason
        # No SMTP exception rides along: its text quotes the address.
        assert failed.value.__cause__ is None and failed.value.__suppress_context__
        assert sink.refused == 1 and sink.received == []
        # The next recipient is unaffected.
        await send_email(smtp(sink), mail(message_id_for(uuid4())))
        assert len(sink.received) == 1


async def test_a_deferred_message_is_a_transient_failure_and_goes_on_the_retry(tmp_path: Path) -> None:
    message_id = message_id_for(uuid4())
    async with MailSink(tmp_path / "mail", defer_first=1) as sink:
        with pytest.raises(JobFailed) as failed:
            await send_email(smtp(sink), mail(message_id))
        assert not failed.value.permanent and "451 4.3.0" in failed.value.reason
        assert sink.count(message_id) == 0

        await send_email(smtp(sink), mail(message_id))
        assert sink.count(message_id) == 1 and sink.deferred == 1


async def test_an_unreachable_server_is_a_transient_failure() -> None:
    settings = SmtpSettings(host="127.0.0.1", port=closed_port(), timeout_s=5)
    with pytest.raises(JobFailed) as failed:
        await send_email(settings, mail(message_id_for(uuid4())))
    assert not failed.value.permanent and "cannot reach" in failed.value.reason


@pytest.fixture
def tls(tmp_path: Path) -> Path:
    """The local stack's own CA script, run into a folder of the test's: a CA, and a server
    certificate valid for 127.0.0.1 (PostgreSQL's, which will do for the mail sink)."""
    folder = tmp_path / "tls"
    subprocess.run(["bash", str(TLS_SCRIPT), str(folder)], check=True, capture_output=True)
    return folder


async def test_starttls_and_authentication(tmp_path: Path, tls: Path) -> None:
    credentials = Credentials("glv-notifier", "s3cret-for-tests")
    async with MailSink(
        tmp_path / "mail", credentials=credentials, tls_cert=tls / "pg-server.crt", tls_key=tls / "pg-server.key"
    ) as sink:
        secure = replace(
            smtp(sink), starttls=True, ca_file=str(tls / "ca.crt"), username="glv-notifier", password="s3cret-for-tests"
        )
        with pytest.raises(JobFailed) as failed:
            await send_email(replace(secure, password="wrong"), mail(message_id_for(uuid4())))
        # Our own login refused: retried (a configuration to fix), never a refusal of the message.
        assert not failed.value.permanent and failed.value.reason.startswith("SMTP authentication refused: 535")

        await send_email(secure, mail(message_id_for(uuid4())))
        [received] = sink.received
        assert received.tls and received.login == "glv-notifier"

        # A certificate the client does not trust: no mail in the clear, and worth a retry once fixed.
        with pytest.raises(JobFailed) as untrusted:
            await send_email(replace(secure, ca_file=None), mail(message_id_for(uuid4())))
        assert not untrusted.value.permanent
        assert len(sink.received) == 1


# --- the SMS / WhatsApp gateway --------------------------------------------------------------------


def phone_message(key: str, channel: str = "sms", purpose: Purpose = Purpose.INVITATION) -> PhoneMessage:
    return PhoneMessage(PHONE, channel, purpose, "id", RENDERED, key)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[GatewaySink]:
    async with GatewaySink(tmp_path / "gateway.jsonl", token=TOKEN) as sink:
        yield sink


async def test_generic_format_is_recorded_with_its_idempotency_key(gateway: GatewaySink) -> None:
    key = f"{uuid4()}:invitation:1"
    async with GatewaySender(GatewaySettings(url=gateway.generic_url, token=TOKEN)) as sender:
        sent = await sender.send(phone_message(key))

    assert sent.status == 202 and sent.provider_id == "msg-000001"
    [request] = gateway.requests
    assert request.format == "generic" and request.status == 202 and request.authorized
    assert request.idempotency_key == key and request.headers["idempotency-key"] == key
    assert request.body == {"to": PHONE, "channel": "sms", "text": RENDERED.short, "reference": key}
    assert gateway.count(key) == 1
    assert gateway.log_file is not None
    [line] = gateway.log_file.read_text().splitlines()
    logged = json.loads(line)
    assert logged["idempotency_key"] == key and logged["body"]["reference"] == key
    assert TOKEN not in line  # the log records whether a request was authorized, not the token


async def test_whatsapp_cloud_template_message_is_recorded(gateway: GatewaySink) -> None:
    key = f"{uuid4()}:acknowledgement:0"
    settings = GatewaySettings(url=gateway.whatsapp_url("109876543210"), format="whatsapp_cloud", token=TOKEN)
    async with GatewaySender(settings) as sender:
        sent = await sender.send(phone_message(key, "whatsapp", Purpose.ACKNOWLEDGEMENT))

    assert sent.status == 200 and sent.provider_id == "msg-000001"
    [request] = gateway.requests
    assert request.path == "/v17.0/109876543210/messages" and request.format == "whatsapp_cloud"
    assert request.idempotency_key == key
    assert request.body["messaging_product"] == "whatsapp" and request.body["to"] == PHONE
    assert request.body["type"] == "template"
    template = request.body["template"]
    assert template["name"] == "acknowledgement" and template["language"] == {"code": "id"}
    assert [p["text"] for p in template["components"][0]["parameters"]] == list(RENDERED.template_parameters)


async def test_a_repeat_carries_the_same_key_and_is_counted(gateway: GatewaySink) -> None:
    key = f"{uuid4()}:reminder:1"
    async with GatewaySender(GatewaySettings(url=gateway.generic_url, token=TOKEN)) as sender:
        first = await sender.send(phone_message(key))
        again = await sender.send(phone_message(key))
    assert gateway.count(key) == 2
    assert [r.idempotency_key for r in gateway.requests] == [key, key]
    assert again.provider_id == first.provider_id  # the gateway recognised the repeat


async def test_429_maps_to_retry_after_and_slows_every_send_down() -> None:
    async with GatewaySink(token=TOKEN, throttle_first=1, retry_after="1") as sink:
        async with GatewaySender(GatewaySettings(url=sink.generic_url, token=TOKEN, rate_per_s=100)) as sender:
            with pytest.raises(JobFailed) as failed:
                await sender.send(phone_message("k-1"))
            assert not failed.value.permanent and failed.value.retry_after_s == 1.0
            # Another message right away: the shared limiter holds it until the pause is over.
            await sender.send(phone_message("k-2"))
        throttled, accepted = sink.requests
        assert (throttled.status, accepted.status) == (429, 202)
        assert accepted.monotonic_s - throttled.monotonic_s >= 0.95
        assert sink.count("k-1") == 0 and sink.count("k-2") == 1


async def test_429_with_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    async with GatewaySink(throttle_first=1, retry_after=later) as sink:
        sender = GatewaySender(GatewaySettings(url=sink.generic_url))
        async with sender:
            with pytest.raises(JobFailed) as failed:
                await sender.send(phone_message("k-1"))
    assert failed.value.retry_after_s is not None and 100 <= failed.value.retry_after_s <= 120


async def test_a_refused_recipient_or_token_is_permanent_and_does_not_name_them() -> None:
    async with GatewaySink(token=TOKEN, reject_recipients=r"^\+62812") as sink:
        async with GatewaySender(GatewaySettings(url=sink.generic_url, token=TOKEN)) as sender:
            with pytest.raises(JobFailed) as rejected:
                await sender.send(phone_message("k-1"))
        async with GatewaySender(GatewaySettings(url=sink.generic_url, token="not-it")) as sender:
            with pytest.raises(JobFailed) as unauthorized:
                await sender.send(phone_message("k-2"))
    assert rejected.value.permanent and "400" in rejected.value.reason and PHONE not in rejected.value.reason
    assert unauthorized.value.permanent and "401" in unauthorized.value.reason
    assert [r.status for r in sink.requests] == [400, 401]


async def test_an_unreachable_gateway_is_a_transient_failure() -> None:
    settings = GatewaySettings(url=f"http://127.0.0.1:{closed_port()}/v1/messages", timeout_s=5)
    async with GatewaySender(settings) as sender:
        with pytest.raises(JobFailed) as failed:
            await sender.send(phone_message("k-1"))
    assert not failed.value.permanent and "cannot reach" in failed.value.reason


async def test_the_rate_limit_spaces_concurrent_sends(gateway: GatewaySink) -> None:
    rate, count = 20.0, 8
    limiter = TokenBucket(rate)
    settings = GatewaySettings(url=gateway.generic_url, token=TOKEN)
    # Two senders sharing one limiter, as two job workers of one process would.
    async with GatewaySender(settings, limiter) as one, GatewaySender(settings, limiter) as two:
        # Connections opened first: what is measured below is the limiter, not TCP set-up.
        await one.send(phone_message("warm-up-1"))
        await two.send(phone_message("warm-up-2"))
        await asyncio.gather(*((one, two)[i % 2].send(phone_message(f"k-{i}")) for i in range(count)))

    arrivals = sorted(r.monotonic_s for r in gateway.requests if (r.idempotency_key or "").startswith("k-"))
    assert len(arrivals) == count
    # Measured at the server. The i-th request cannot arrive before i intervals after the first
    # (less half an interval for the first one's own trip).
    for i, arrival in enumerate(arrivals):
        assert arrival - arrivals[0] >= i / rate - 0.5 / rate
