"""Properties of log redaction: personal data written the way people write it never
survives into a rendered log line, and ordinary values (ids, times, ticket codes,
numbers) come through unchanged."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glv_runtime.logs import configure_logging

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")

DIGITS = "0123456789"
SEPARATORS = ["", " ", "-", "."]

# Free text around the personal data: Indonesian and English words, no digits.
WORDS = [
    "mohon", "hubungi", "saya", "di", "nomor", "berikut", "atau", "kirim", "surel", "ke", "alamat", "terima",
    "kasih", "bapak", "ibu", "please", "call", "me", "at", "or", "write", "to", "thanks", "regards", "the",
    "ticket", "was", "filed", "yesterday", "kantor", "jadwal", "konsultasi", "lelang", "piutang", "negara",
    "and", "office", "schedule", "meeting", "online", "besok",
]  # fmt: skip
# Names only ever appear under a personal key; none is a word of the text above.
GIVEN = ["Siti", "Budi", "Andi", "Made", "Yohanes", "Nur", "Dewi", "Agus", "Kadek", "Theresia"]
FAMILY = ["Rahayu", "Santoso", "Wijaya", "Sutrisna", "Kambu", "Hasanah", "Lestari", "Pratama", "Manuhutu"]

# Personal keys as portals, developers and libraries name them, in both languages.
PERSONAL_KEYS = [
    "name",
    "nama",
    "full_name",
    "nama_lengkap",
    "email",
    "surel",
    "phone",
    "telepon",
    "telp",
    "hp",
    "no_hp",
    "whatsapp",
    "wa",
    "national_id",
    "nik",
    "ktp",
    "npwp",
    "address",
    "alamat",
    "organisation",
    "organization",
    "organisasi",
    "instansi",
    "perusahaan",
    "company",
    "birth_date",
    "tanggal_lahir",
    "token",
    "jwt",
    "secret",
    "password",
    "authorization",
    "join_url",
    "moderator_url",
    "stakeholder_email",
    "nomor_telepon",
]
# Keys under which free text is logged: not personal, so the text itself is scanned.
TEXT_KEYS = ["note", "detail", "error", "info", "reason_text", "catatan_petugas", "log_message"]


def _camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(part.title() for part in rest)


def spelled(key: str) -> st.SearchStrategy[str]:
    """A key in one of the spellings people use: as is, UPPER, Title, camelCase, with dashes."""
    return st.sampled_from([key, key.upper(), key.title(), _camel(key), key.replace("_", "-")])


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(DIGITS, min_size=n, max_size=n)


def grouped(draw: st.DrawFn, number: str, sizes: list[int], separator: str | None = None) -> str:
    """`number` cut into groups of these sizes (the last takes the rest), each gap a
    separator (one for all gaps when given, else drawn per gap)."""
    groups, rest = [], number
    for size in sizes:
        if not rest:
            break
        groups.append(rest[:size])
        rest = rest[size:]
    if rest:
        groups.append(rest)
    text = groups[0]
    for group in groups[1:]:
        text += (separator if separator is not None else draw(st.sampled_from(SEPARATORS))) + group
    return text


@st.composite
def mobile_phones(draw: st.DrawFn) -> str:
    """0812-3456-7890, +62 812 3456 7890, 6281234567890, +62-812-..., (0812) 3456 7890."""
    operator = "8" + draw(digits(2))
    rest = draw(digits(draw(st.integers(6, 9))))
    subscriber = grouped(draw, rest, draw(st.sampled_from([[3, 3], [4, 4], [3, 4], [4, 3], [3, 3, 3], [4, 5]])))
    separator = draw(st.sampled_from(SEPARATORS))
    style = draw(st.sampled_from(["0", "+62", "+62 ", "+62-", "62", "62 ", "0062 ", "+62 (0)", "(0"]))
    if style == "(0":
        return f"(0{operator}) {subscriber}"
    return f"{style}{operator}{separator}{subscriber}"


@st.composite
def landline_phones(draw: st.DrawFn) -> str:
    """(021) 345 6789, 021-3456789, 0274 512345, +62 21 3456 7890, +62 (274) 512345."""
    area = draw(st.sampled_from("2345679")) + draw(digits(draw(st.integers(1, 2))))
    rest = draw(digits(draw(st.integers(5, 8))))
    subscriber = draw(st.sampled_from([rest, grouped(draw, rest, [3, 4]), grouped(draw, rest, [4, 4])]))
    style = draw(
        st.sampled_from(
            ["(0{a}) {s}", "0{a}-{s}", "0{a} {s}", "0{a}{s}", "+62 {a} {s}", "+62-{a}-{s}", "+62 ({a}) {s}"]
        )
    )
    return style.format(a=area, s=subscriber)


@st.composite
def niks(draw: st.DrawFn) -> str:
    """16 digits, as one run or grouped the ways people group them, one separator throughout."""
    number = draw(st.sampled_from("123456789")) + draw(digits(15))
    sizes = draw(st.sampled_from([[16], [4, 4, 4, 4], [6, 6, 4], [2, 2, 2, 6, 4], [4, 2, 2, 4, 4]]))
    return grouped(draw, number, sizes, draw(st.sampled_from([" ", "-", ".", ""])))


LOCAL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._+-]{0,18}[A-Za-z0-9])?", fullmatch=True)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
emails = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    LOCAL,
    st.lists(LABEL, min_size=1, max_size=3),
    st.sampled_from(["id", "co.id", "go.id", "com", "net", "ac.id", "or.id", "ORG"]),
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwts(draw: st.DrawFn) -> str:
    header = draw(st.sampled_from([{"alg": "HS256", "typ": "JWT"}, {"typ": "JWT", "alg": "RS256", "kid": "k1"}]))
    claims = draw(st.dictionaries(st.sampled_from(["sub", "room", "aud", "exp", "moderator"]), st.integers(0, 10**10)))
    signature = draw(st.binary(min_size=0, max_size=64))
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


# What a rendered line holds besides the values: keys in every spelling, words, hosts. A drawn
# token that is part of it (hypothesis also draws the module's own strings, "nama_lengkap" say)
# would be found in the line without having leaked, so none is drawn.
LINE_TEXT = " ".join(
    [
        spelling.lower()
        for key in [*PERSONAL_KEYS, *TEXT_KEYS, "context", "items", "value", "inner"]
        for spelling in (key, key.upper(), key.title(), _camel(key), key.replace("_", "-"))
    ]
    + WORDS
    + ["event", "service", "property", "level", "info", "timestamp", "[redacted]", "kpknl-room", "lang=id"]
    + ["meet.example.go.id", "glv.example.id", "jitsi.kemenkeu.go.id"]
)
OPAQUE = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=12, max_size=64).filter(
    lambda token: token.lower() not in LINE_TEXT
)
bearers = st.builds(lambda scheme, token: (f"{scheme} {token}", token), st.sampled_from(["Bearer", "bearer"]), OPAQUE)
links = st.builds(
    lambda param, token, host: (f"https://{host}/KPKNL-room?{param}={token}&lang=id", token),
    st.sampled_from(["jwt", "token", "access_token"]),
    st.one_of(OPAQUE, jwts()),
    st.sampled_from(["meet.example.go.id", "glv.example.id", "jitsi.kemenkeu.go.id"]),
)
names = st.builds(lambda g, f: f"{g} {f}", st.sampled_from(GIVEN), st.sampled_from(FAMILY))


@st.composite
def free_text(draw: st.DrawFn, secrets: list[str]) -> str:
    """Words with personal data inside, each value set off as people do: spaces, commas,
    a colon, brackets, a full stop after it."""
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        parts += draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=4))
        kind = draw(st.sampled_from(["email", "mobile", "landline", "nik", "jwt", "bearer", "link"]))
        if kind == "bearer":
            text, secret = draw(bearers)
        elif kind == "link":
            text, secret = draw(links)
        else:
            strategy = {
                "email": emails,
                "mobile": mobile_phones(),
                "landline": landline_phones(),
                "nik": niks(),
                "jwt": jwts(),
            }[kind]
            text = secret = draw(strategy)
        secrets.append(secret)
        before, after = draw(st.sampled_from([("", ""), ("", ","), ("(", ")"), ("<", ">"), ("", "."), ("", ";")]))
        label = draw(st.sampled_from(["", "", "nomor ", "NIK ", "ke ", "tel: ", "email: "]))
        parts.append(f"{label}{before}{text}{after}")
    parts += draw(st.lists(st.sampled_from(WORDS), min_size=0, max_size=3))
    return " ".join(parts)


@st.composite
def personal_values(draw: st.DrawFn, secrets: list[str]) -> Any:
    """What a personal key may hold: a name, a contact, a number, or a structure of them."""
    value = draw(
        st.one_of(names, emails, mobile_phones(), landline_phones(), niks(), jwts(), links.map(lambda x: x[0]))
    )
    secrets.append(value)
    return draw(st.sampled_from([value, {"value": value}, [value], {"inner": [value]}]))


@st.composite
def events(draw: st.DrawFn, depth: int = 0) -> tuple[dict[str, Any], list[str]]:
    """A log event's fields: personal keys in both languages and any case, free text with
    personal data under ordinary keys, and nested dicts and lists of the same."""
    secrets: list[str] = []
    fields: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(PERSONAL_KEYS), min_size=0, max_size=4, unique=True)):
        fields[draw(spelled(key))] = draw(personal_values(secrets))
    for key in draw(st.lists(st.sampled_from(TEXT_KEYS), min_size=1, max_size=3, unique=True)):
        fields[key] = draw(free_text(secrets))
    if depth < 2 and draw(st.booleans()):
        inner, inner_secrets = draw(events(depth + 1))
        secrets += inner_secrets
        fields["context"] = draw(st.sampled_from([inner, [inner], {"items": [inner, "ok"]}]))
    return fields, secrets


@contextmanager
def service_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    configure_logging("property", "INFO")
    try:
        yield
    finally:
        structlog.reset_defaults()  # the configured loggers hold the captured stdout
        logging.getLogger().handlers[:] = []


def render(capsys: pytest.CaptureFixture[str], fields: dict[str, Any], message: str = "filed") -> tuple[str, dict]:
    """The line the service would print: raw, and parsed."""
    capsys.readouterr()
    structlog.get_logger().info(message, **fields)
    raw = capsys.readouterr().out.strip().splitlines()[-1]
    return raw, json.loads(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=events(), message=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join))
def test_no_personal_value_survives_redaction(
    capsys: pytest.CaptureFixture[str], event: tuple[dict[str, Any], list[str]], message: str
) -> None:
    fields, secrets = event
    with service_logging(capsys):
        raw, line = render(capsys, fields, message)
    del line["timestamp"]
    text = json.dumps(line, ensure_ascii=False)
    for secret in secrets:
        assert secret not in text, secret
        assert json.dumps(secret)[1:-1] not in raw, secret
    # Every generated value holding a digit is personal, and no other field has one:
    # a digit left over is a piece of a phone, a NIK, an e-mail or a token.
    assert not re.search(r"\d", text), text
    assert line["event"] == message


# ------------------------------------------------------------- ordinary values

ZONES = [UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=8)), timezone(timedelta(hours=9)), None]
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.sampled_from(ZONES)
)
iso_times = st.one_of(
    instants.map(lambda t: t.isoformat()),
    instants.map(lambda t: t.isoformat(sep=" ")),
    instants.map(lambda t: t.astimezone(UTC).isoformat().replace("+00:00", "Z")),
    instants.map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)).map(date.isoformat),
)
ticket_codes = st.builds(
    lambda office, day, number: f"{office}-{day:%y%m%d}-{number:04d}",
    st.from_regex(r"[A-Z]{2,6}", fullmatch=True),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    st.integers(1, 99999),
)
# uuid4 strings, and ones whose hex happens to be all decimal digits (they look like a
# NIK or a phone number in groups, and must still be kept).
uuids = st.one_of(
    st.uuids(version=4).map(str),
    st.from_regex(r"0[0-9]{7}-[0-9]{4}-4[0-9]{3}-[89][0-9]{3}-[0-9]{12}", fullmatch=True),
    st.from_regex(r"[1-9][0-9]{7}-[0-9]{4}-4[0-9]{3}-[89][0-9]{3}-[0-9]{12}", fullmatch=True),
)
trace_ids = st.uuids().map(lambda u: u.hex)
small_numbers = st.integers(0, 10**6).map(str)
durations = st.builds(
    lambda n, unit: f"{n:.3f}{unit}", st.floats(min_value=0, max_value=1000), st.sampled_from(["s", " s", "ms", " ms"])
)
ordinary_values = st.one_of(uuids, trace_ids, iso_times, ticket_codes, small_numbers, durations)
ORDINARY_KEYS = ["event_id", "ticket_id", "ticket_code", "slot_start", "trace_id", "attempt", "count", "offset"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(ordinary_values, min_size=1, max_size=6),
    numbers=st.dictionaries(st.sampled_from(ORDINARY_KEYS), st.integers(-(10**15), 10**15), max_size=4),
    floats=st.lists(st.floats(min_value=0, max_value=10**6, allow_nan=False), max_size=3),
    words=st.lists(st.sampled_from(WORDS), min_size=len(ORDINARY_KEYS), max_size=len(ORDINARY_KEYS)),
)
def test_ordinary_values_are_kept(
    capsys: pytest.CaptureFixture[str],
    values: list[str],
    numbers: dict[str, int],
    floats: list[float],
    words: list[str],
) -> None:
    fields: dict[str, Any] = {f"value_{i}": v for i, v in enumerate(values)}
    fields.update(numbers)
    fields["durations_s"] = floats
    # The same values inside a sentence, each between words as a log message has them.
    fields["detail"] = " ".join(f"{words[i % len(words)]} {v}" for i, v in enumerate(values)) + " selesai"
    fields["nested"] = {"items": [{"ticket_code": v} for v in values]}
    with service_logging(capsys):
        _, line = render(capsys, fields)
    for i, value in enumerate(values):
        assert line[f"value_{i}"] == value
        assert value in line["detail"], (value, line["detail"])
        assert line["nested"]["items"][i]["ticket_code"] == value
    for key, number in numbers.items():
        assert line[key] == number
    assert line["durations_s"] == floats
