"""The notifier's presentation with plain values: local dates and times in each language,
every message rendered from the templates, escaping and control characters, the SMS
length, the calendar invites through assign, reschedule and cancel, and the start-up check
of an edited templates folder."""

from __future__ import annotations

import dataclasses
import shutil
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Component
from markupsafe import escape

from glv_notifier import invite, render, samples, wording
from glv_notifier.messages import WITH_INVITE, Locale, MessageFacts, Purpose, Rendered, Session
from glv_ticketing.domain import MESSAGES as TICKETING_REASONS

LOCALES: tuple[Locale, ...] = ("id", "en")
# 01:00 UTC is 08.00 WIB, 09.00 WITA, 10.00 WIT.
ZONES = {
    "Asia/Jakarta": ("WIB", "08"),
    "Asia/Makassar": ("WITA", "09"),
    "Asia/Jayapura": ("WIT", "10"),
}
THURSDAY = {"id": ("Kamis, 3 Desember 2026", "pukul", "."), "en": ("Thursday, 3 December 2026", "at", ":")}
HOSTILE_NAME = '<script>alert(1)</script> & "Siti"'
ORGANIZER = "kpknl-palopo@glv.example"
ATTENDEE = "siti@example.org"
NOW = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)


def facts(purpose: Purpose, locale: Locale, *, zone: str = "Asia/Makassar", **changes: object) -> MessageFacts:
    return dataclasses.replace(samples.sample_facts(purpose, locale, zone=zone), **changes)  # type: ignore[arg-type]


def controls(text: str) -> list[str]:
    """Control characters other than the newline (the only one a text may keep)."""
    return [char for char in text if unicodedata.category(char) == "Cc" and char != "\n"]


def every_output(rendered: Rendered) -> list[str]:
    return [rendered.subject, rendered.text, rendered.html, rendered.short, *rendered.template_parameters]


# ------------------------------------------------------------------ dates and times


def test_the_indonesian_sample_reads_as_an_office_writes_it() -> None:
    moment = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)
    assert wording.local_when(moment, "Asia/Makassar", "id").text == "Kamis, 3 Desember 2026 pukul 09.00 WITA"
    assert wording.local_when(moment, "Asia/Makassar", "en").text == "Thursday, 3 December 2026 at 09:00 WITA"


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("zone", sorted(ZONES))
def test_local_time_and_zone_name_in_each_zone(zone: str, locale: Locale) -> None:
    short, hour = ZONES[zone]
    day, at, separator = THURSDAY[locale]
    when = wording.local_when(datetime(2026, 12, 3, 1, 0, tzinfo=UTC), zone, locale)
    assert when.text == f"{day} {at} {hour}{separator}00 {short}"
    assert (when.date, when.time, when.zone) == (day, f"{hour}{separator}00", short)
    assert when.zone_long  # "Waktu Indonesia Tengah", "Central Indonesia Time"


def test_a_local_date_on_the_other_side_of_midnight() -> None:
    # 16:30 UTC on 2 December is already 3 December in Jayapura (01.30 WIT), not in Jakarta.
    moment = datetime(2026, 12, 2, 16, 30, tzinfo=UTC)
    assert wording.local_when(moment, "Asia/Jayapura", "id").text == "Kamis, 3 Desember 2026 pukul 01.30 WIT"
    assert wording.local_when(moment, "Asia/Jakarta", "id").text == "Rabu, 2 Desember 2026 pukul 23.30 WIB"


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        wording.local_when(datetime(2026, 12, 3, 1, 0), "Asia/Jakarta", "id")


@pytest.mark.parametrize(
    ("minutes", "indonesian", "english"),
    [
        (24 * 60, "24 jam", "24 hours"),
        (60, "1 jam", "1 hour"),
        (30, "30 menit", "30 minutes"),
        (1, "1 menit", "1 minute"),
        (90, "1 jam, 30 menit", "1 hour, 30 minutes"),
    ],
)
def test_durations(minutes: int, indonesian: str, english: str) -> None:
    assert wording.duration(minutes, "id") == indonesian
    assert wording.duration(minutes, "en") == english


@settings(max_examples=200)
@given(
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    zone=st.sampled_from(sorted(ZONES)),
    locale=st.sampled_from(LOCALES),
)
def test_the_written_time_is_the_office_clock(moment: datetime, zone: str, locale: Locale) -> None:
    local = moment.astimezone(ZoneInfo(zone))
    when = wording.local_when(moment, zone, locale)
    assert when.time == local.strftime("%H.%M" if locale == "id" else "%H:%M")
    assert when.zone == ZONES[zone][0]
    assert str(local.year) in when.date and str(local.day) in when.date.split()[1]


# --------------------------------------------------------------------- messages


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("zone", sorted(ZONES))
@pytest.mark.parametrize("purpose", list(Purpose))
def test_every_purpose_renders_in_every_language_and_zone(purpose: Purpose, zone: str, locale: Locale) -> None:
    message = facts(purpose, locale, zone=zone)
    rendered = render.render(message)
    assert all(part.strip() for part in (rendered.subject, rendered.text, rendered.html, rendered.short))
    assert "\n" not in rendered.subject
    assert len(rendered.short) <= render.SHORT_MAX
    assert rendered.html.startswith("<!DOCTYPE html>") and f'<html lang="{locale}">' in rendered.html
    assert rendered.template_parameters and all(rendered.template_parameters)
    assert not any(controls(output) for output in every_output(rendered))
    if purpose is not Purpose.REJECTION:
        assert "PLP-261129-0042" in rendered.text and "PLP-261129-0042" in rendered.short
    short, hour = ZONES[zone]
    day, at, separator = THURSDAY[locale]
    when = f"{day} {at} {hour}{separator}00 {short}"
    if purpose in (Purpose.INVITATION, Purpose.RESCHEDULED, Purpose.REMINDER):
        join = samples.SAMPLE_JOIN_URL
        assert when in rendered.subject and when in rendered.short
        assert join in rendered.text and join in rendered.short and str(escape(join)) in rendered.html
        assert rendered.template_parameters[-2:] == (when, join)
    if purpose in (Purpose.INVITATION, Purpose.RESCHEDULED):
        assert day in rendered.text and f"{hour}{separator}00–{hour}{separator}30 {short}" in rendered.text
        assert ".ics" in rendered.text and ".ics" in rendered.html  # the attached invite is mentioned
        assert "KPKNL Palopo" in rendered.text


def test_a_reminder_says_how_far_away_the_session_is() -> None:
    assert "1 jam lagi" in render.render(facts(Purpose.REMINDER, "id", lead_minutes=60)).text
    assert "24 jam lagi" in render.render(facts(Purpose.REMINDER, "id", lead_minutes=24 * 60)).text
    assert "in 1 hour" in render.render(facts(Purpose.REMINDER, "en", lead_minutes=60)).text
    assert render.render(facts(Purpose.REMINDER, "en", lead_minutes=60)).template_parameters[1] == "1 hour"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_name_is_escaped_in_html_and_stripped_of_control_characters(locale: Locale) -> None:
    name = f"\x00{HOSTILE_NAME}\x1b[31m\r\n\u202e\x85\ttoo"
    for purpose in Purpose:
        rendered = render.render(facts(purpose, locale, name=name))
        assert "<script>" not in rendered.html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;Siti&#34;" in rendered.html
        assert HOSTILE_NAME in rendered.text  # plain text shows the name as it is
        assert not any(controls(output) for output in every_output(rendered))
        assert "\u202e" not in "".join(every_output(rendered))
        assert rendered.template_parameters[0] == f"{HOSTILE_NAME}[31m too"


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=1200), locale=st.sampled_from(LOCALES))
def test_any_name_comes_out_escaped_clean_and_the_sms_short(name: str, locale: Locale) -> None:
    rendered = render.render(facts(Purpose.INVITATION, locale, name=name))
    shown = render.clean(name, newlines=False)
    assert str(escape(shown)) in rendered.html
    assert not any(controls(output) for output in every_output(rendered))
    assert len(rendered.short) <= render.SHORT_MAX
    assert samples.SAMPLE_JOIN_URL in rendered.short


def test_a_long_sms_is_cut_before_the_join_link_never_inside_it() -> None:
    rendered = render.render(facts(Purpose.INVITATION, "id", name="Siti " * 300))
    assert len(rendered.short) <= render.SHORT_MAX
    assert rendered.short.endswith(samples.SAMPLE_JOIN_URL)
    assert "…" in rendered.short


@settings(max_examples=300)
@given(
    head=st.text(max_size=400),
    link=st.from_regex(r"https://[a-z]{1,20}\.example/[A-Za-z0-9?=&-]{0,200}", fullmatch=True),
    tail=st.text(max_size=400),
)
def test_fit_keeps_the_link_whole(head: str, link: str, tail: str) -> None:
    fitted = render.fit(head + link + tail, 300, keep=link)
    assert len(fitted) <= 300
    assert link in fitted


def test_a_link_longer_than_an_sms_is_refused() -> None:
    with pytest.raises(ValueError, match="join link"):
        link = "https://meet.example/" + "a" * 300
        render.fit(f"Bergabung: {link}", 300, keep=link)


def test_reason_codes_are_explained_in_plain_words() -> None:
    rejected = render.render(facts(Purpose.REJECTION, "id", reasons=("window_in_past", "window_beyond_horizon")))
    assert "sudah lewat" in rejected.text and "terlalu jauh" in rejected.text
    # Both window codes give the same advice: shown once.
    assert rejected.text.count("Pilih waktu lain sesuai ketentuan") == 1
    waiting = render.render(facts(Purpose.WAITLISTED, "en", reasons=("no_capacity",)))
    assert "already booked" in waiting.text
    missed = render.render(facts(Purpose.MISSED, "en", reasons=("officer",)))
    assert "our officer was unable to attend" in missed.text
    unknown = render.render(facts(Purpose.UNSCHEDULABLE, "en", reasons=("a_new_code",)))
    assert "cannot be set yet" in unknown.text  # the section's default wording


def test_every_known_reason_code_has_wording_in_both_languages() -> None:
    books = {locale: render.reasons_book(locale) for locale in LOCALES}
    expected = {
        "rejection": set(TICKETING_REASONS),
        # The scheduler's SchedulingFailed reasons and SessionMissed's missing parties.
        "scheduling": {"unknown_office", "service_not_offered", "no_officer", "no_capacity"},
        "missed": {"stakeholder", "officer", "both"},
    }
    for section, codes in expected.items():
        for locale, book in books.items():
            assert codes | {wording.DEFAULT_CODE} <= set(book[section]), (locale, section)
        assert set(books["id"][section]) == set(books["en"][section])


def test_whatsapp_parameters_follow_the_approved_order() -> None:
    rendered = render.render(facts(Purpose.INVITATION, "id"))
    assert rendered.template_parameters == (
        samples.SAMPLE_NAME,
        "PLP-261129-0042",
        "Kamis, 3 Desember 2026 pukul 09.00 WITA",
        samples.SAMPLE_JOIN_URL,
    )
    archived = render.render(facts(Purpose.ARCHIVED, "en"))
    assert archived.template_parameters == (samples.SAMPLE_NAME, "PLP-261129-0042", "3 December 2031")


def test_missing_facts_and_unsafe_links_are_refused() -> None:
    with pytest.raises(ValueError, match="needs session"):
        render.render(facts(Purpose.INVITATION, "id", session=None))
    with pytest.raises(ValueError, match="needs lead_minutes"):
        render.render(facts(Purpose.REMINDER, "id", lead_minutes=None))
    sample = samples.sample_facts(Purpose.INVITATION, "id")
    assert sample.session is not None
    unsafe = dataclasses.replace(sample.session, join_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="http"):
        render.render(dataclasses.replace(sample, session=unsafe))


def test_a_cancellation_without_a_slot_mentions_no_invite() -> None:
    rendered = render.render(facts(Purpose.CANCELLED, "id", session=None))
    assert ".ics" not in rendered.text and "PLP-261129-0042" in rendered.text


# ------------------------------------------------------------------ calendar invites


def parse(ics: bytes) -> tuple[Calendar, Component]:
    calendar = Calendar.from_ical(ics)
    events = calendar.walk("VEVENT")
    assert len(events) == 1
    return calendar, events[0]


def session_at(start: datetime, sequence: int, zone: str) -> Session:
    return Session(
        slot_id=UUID(int=sequence + 1),
        starts_at=start,
        ends_at=start + timedelta(minutes=45),
        zone=zone,
        join_url=f"https://meet.glv.example/slot-{sequence}?jwt=abc",
        sequence=sequence,
    )


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("zone", sorted(ZONES))
def test_invites_through_assign_reschedule_and_cancel(zone: str, locale: Locale) -> None:
    first = session_at(datetime(2026, 12, 3, 1, 0, tzinfo=UTC), 0, zone)
    moved = session_at(datetime(2026, 12, 4, 6, 30, tzinfo=UTC), 1, zone)
    cancelled = dataclasses.replace(moved, sequence=2)
    steps = [
        (Purpose.INVITATION, first, "REQUEST"),
        (Purpose.RESCHEDULED, moved, "REQUEST"),
        (Purpose.CANCELLED, cancelled, "CANCEL"),
    ]
    uids = set()
    last_request = -1
    for purpose, session, method in steps:
        assert purpose in WITH_INVITE
        message = facts(purpose, locale, zone=zone, session=session)
        ics = invite.invite(
            message,
            organizer_email=ORGANIZER,
            attendee_email=ATTENDEE,
            method=method,  # type: ignore[arg-type]
            now=NOW,
        )
        calendar, event = parse(ics)
        assert str(calendar["METHOD"]) == method
        assert str(calendar["VERSION"]) == "2.0" and str(calendar["PRODID"]) == invite.PRODID
        uids.add(str(event["UID"]))
        assert event["SEQUENCE"] == session.sequence
        start, end = event.decoded("DTSTART"), event.decoded("DTEND")
        assert start == session.starts_at and start.utcoffset() == timedelta(0)
        assert end == session.ends_at and end.utcoffset() == timedelta(0)
        assert b"DTSTART:" + session.starts_at.strftime("%Y%m%dT%H%M%SZ").encode() in ics
        assert event.decoded("DTSTAMP") == NOW
        assert str(event["URL"]) == session.join_url and str(event["LOCATION"]) == session.join_url
        assert "PLP-261129-0042" in str(event["SUMMARY"])
        assert str(event["ORGANIZER"]) == f"mailto:{ORGANIZER}"
        assert str(event["ORGANIZER"].params["CN"]) == "KPKNL Palopo"
        attendee = event["ATTENDEE"]
        assert str(attendee) == f"mailto:{ATTENDEE}" and attendee.params["RSVP"] == "FALSE"
        alarms = event.walk("VALARM")
        if method == "REQUEST":
            assert str(event["STATUS"]) == "CONFIRMED"
            assert len(alarms) == 1 and str(alarms[0]["ACTION"]) == "DISPLAY"
            assert alarms[0].decoded("TRIGGER") == -timedelta(minutes=30)
            last_request = session.sequence
        else:
            assert str(event["STATUS"]) == "CANCELLED" and not alarms
            assert session.sequence > last_request
    # One event per ticket: every calendar updates it rather than adding another.
    assert uids == {invite.event_uid(samples.SAMPLE_TICKET_ID)}


def test_the_invite_states_the_local_time_in_the_description() -> None:
    _, event = parse(
        invite.invite(
            facts(Purpose.INVITATION, "id", zone="Asia/Jayapura"),
            organizer_email=ORGANIZER,
            attendee_email=ATTENDEE,
            method="REQUEST",
            now=NOW,
        )
    )
    assert "Kamis, 3 Desember 2026 pukul 10.00 WIT" in str(event["DESCRIPTION"])


def test_an_invite_without_attendee_and_a_hostile_name() -> None:
    message = facts(Purpose.INVITATION, "en", name=f"{HOSTILE_NAME}\r\nX-Injected: 1")
    _, bare = parse(invite.invite(message, organizer_email=ORGANIZER, attendee_email=None, method="REQUEST", now=NOW))
    assert "ATTENDEE" not in bare
    ics = invite.invite(message, organizer_email=ORGANIZER, attendee_email=ATTENDEE, method="REQUEST", now=NOW)
    _, event = parse(ics)
    assert event["ATTENDEE"].params["CN"] == "<script>alert(1)</script> & 'Siti' X-Injected: 1"
    assert b"\r\nX-Injected" not in ics


def test_a_cancel_must_outrank_the_request() -> None:
    with pytest.raises(ValueError, match="SEQUENCE"):
        invite.invite(
            facts(Purpose.CANCELLED, "id", session=session_at(datetime(2026, 12, 3, 1, tzinfo=UTC), 0, "Asia/Jakarta")),
            organizer_email=ORGANIZER,
            attendee_email=ATTENDEE,
            method="CANCEL",
            now=NOW,
        )
    with pytest.raises(ValueError, match="session"):
        invite.invite(
            facts(Purpose.CANCELLED, "id", session=None),
            organizer_email=ORGANIZER,
            attendee_email=ATTENDEE,
            method="CANCEL",
            now=NOW,
        )


# ------------------------------------------------------------- an edited templates folder


@pytest.fixture
def edited(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(render.DEFAULT_TEMPLATES, folder)
    return folder


def test_the_shipped_templates_pass_the_check() -> None:
    render.check_templates()


def test_an_edited_folder_is_used(edited: Path) -> None:
    path = edited / "id" / "acknowledgement.subject.j2"
    path.write_text("Tiket {{ ticket_code }} diterima oleh kantor kami\n")
    render.check_templates(edited)
    assert render.render(facts(Purpose.ACKNOWLEDGEMENT, "id"), templates_dir=edited).subject == (
        "Tiket PLP-261129-0042 diterima oleh kantor kami"
    )


@pytest.mark.parametrize(
    ("file", "content", "complaint"),
    [
        (
            "en/invitation.txt.j2",
            '{% extends "en/_layout.txt.j2" %}{% block body %}{{ when.txet }}{% endblock %}',
            "txet",
        ),
        ("id/held.html.j2", '{% extends "id/_layout.html.j2" %}{% block body %}{% if %}{% endblock %}', "Syntax"),
        (
            "id/archived.short.j2",
            "Dokumentasi {{ office.name }} siap",
            "'None' has no attribute",
        ),  # office may be missing
        (
            "en/reminder.html.j2",
            '{% extends "en/_layout.html.j2" %}{% block body %}{{ name|safe }}{% endblock %}',
            "|safe",
        ),
        ("id/reminder.short.j2", "Pengingat {{ when.text }}", "join link"),
        ("en/reasons.toml", '[rejection.x]\ntext = "x"\nadvice = "y"\n', "missing"),
    ],
)
def test_a_broken_folder_is_refused(edited: Path, file: str, content: str, complaint: str) -> None:
    (edited / file).write_text(content)
    with pytest.raises(render.TemplateProblems) as refused:
        render.check_templates(edited)
    assert any(complaint in problem for problem in refused.value.problems), refused.value.problems


def test_a_missing_file_is_refused(edited: Path) -> None:
    (edited / "en" / "missed.short.j2").unlink()
    with pytest.raises(render.TemplateProblems, match="en/missed"):
        render.check_templates(edited)
