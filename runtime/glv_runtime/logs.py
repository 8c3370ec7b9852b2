"""structlog JSON logs with message context on every line and personal data redacted.

Redaction is the last step before a line is rendered, for structlog's own lines and for
the library loggers (aiokafka, faststream, uvicorn) alike, and for the command-line tools
(`configure_cli_logging`). It works two ways:

- by key: the value under a personal key (`name`, `nama`, `email`, `no_hp`, `nik`,
  `alamat`, `instansi`, `jwt`, `join_url`, ... in any case, camelCase or with dashes, and
  any key with a part such as `email`, `hp`, `token`: `stakeholder_email`, `noHp`,
  `api_token`) becomes `[redacted]`, whatever it holds, at any depth;
- by value, in any text: e-mail addresses, Indonesian phone numbers as people write them
  (`0812-3456-7890`, `+62 812 3456 7890`, `(021) 345 6789`, `6281234567890`), NIKs (16
  digits, also grouped with spaces, dots or dashes), JWTs, bearer tokens, and what
  follows a personal key written in the text itself: `?jwt=...`, `nama=Siti`,
  `'email': '...'`, `input_value='...'` (a validation error's copy of the input),
  `Authorization: Bearer ...`. After a colon, an unquoted value is redacted only for a
  secret's key: `stakeholder.phone: string_pattern_mismatch` (a field path and an error
  kind, as dead letters say what failed) stays readable.

It runs on every log line, so it is built for speed: the regular expressions are compiled
once, numbers and booleans pass untouched, the key test is cached, and each pattern only
runs on a text that holds what it needs (a digit, an `@`, a `:` or `=`). Values that look
like personal data but are not (UUIDs, ISO timestamps, ticket codes such as
`PLP-261129-0042`, trace ids) are recognised first and kept as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "[redacted]"

# Keys whose values are personal data (or secrets) wherever they appear in a log event,
# compared after normalising: camelCase, dashes, dots and spaces become snake_case.
PERSONAL_KEYS = frozenset(
    {
        # people and their names
        "name",
        "nama",
        "full_name",
        "fullname",
        "nama_lengkap",
        "first_name",
        "last_name",
        "given_name",
        "family_name",
        "display_name",
        "stakeholder",
        "stakeholder_name",
        "contact",
        "contacts",
        "contact_name",
        "kontak",
        "pemohon",
        "nama_pemohon",
        "recipient",
        "penerima",
        "person",
        # e-mail, phone
        "mail",
        "surel",
        "tel",
        "mobile",
        "no_wa",
        "nomor_wa",
        # identity numbers
        "national_id",
        "passport",
        "paspor",
        "kk",
        "no_kk",
        # where they live, who they work for
        "domisili",
        "organisation",
        "organization",
        "organisasi",
        "instansi",
        "nama_instansi",
        "perusahaan",
        "nama_perusahaan",
        "company",
        "employer",
        # what they wrote
        "description",
        "deskripsi",
        "subject",
        "perihal",
        "keterangan",
        "notes",
        "catatan",
        "body",
        "pesan",
        # secrets and links that let someone in
        "auth",
        "api_key",
        "apikey",
        "credentials",
        "sig",
        "signature",
        "x_amz_signature",
        "x_amz_credential",
        "join_url",
        "moderator_url",
        "host_url",
        "start_url",
        "meeting_url",
        "signed_url",
        "presigned_url",
        "download_url",
        "recording_url",
        # a pydantic validation error's copy of the input
        "input_value",
    }
)
# A key with one of these among its parts is personal too: `stakeholder_email`,
# `noHp`, `nomor_telepon`, `api_token`, `tanggal_lahir`, `client_secret`.
PERSONAL_KEY_PARTS = frozenset(
    {
        "email",
        "e_mail",
        "surel",
        "phone",
        "telepon",
        "telp",
        "hp",
        "handphone",
        "msisdn",
        "whatsapp",
        "wa",
        "nik",
        "ktp",
        "npwp",
        "address",
        "alamat",
        "birth",
        "birthdate",
        "dob",
        "lahir",
        "token",
        "jwt",
        "secret",
        "password",
        "passwd",
        "sandi",
        "authorization",
        "cookie",
    }
)
# Keys of secrets among them (by part, or whole): in a text, their value is redacted
# after a colon too (`Authorization: Bearer ...`, `password: ...`).
SECRET_KEY_PARTS = frozenset(
    {"token", "jwt", "secret", "password", "passwd", "sandi", "authorization", "cookie", "signature", "credential"}
)
SECRET_KEYS = frozenset({"auth", "api_key", "apikey", "credentials", "sig", "x_amz_credential"})
# Lines the logging set-up writes itself: nothing personal, not worth a scan.
_OWN_KEYS = frozenset({"timestamp", "level", "logger", "logger_name"})
# structlog's bookkeeping on library log records, removed before rendering.
_META_KEYS = frozenset({"_record", "_from_structlog"})
# Deeper than this, a value is not inspected but redacted whole: nothing slips through by nesting.
MAX_DEPTH = 8

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_KEY_SEPARATORS = re.compile(r"[\s.\-]+")


def _snake(key: str) -> str:
    return _KEY_SEPARATORS.sub("_", _CAMEL.sub("_", key)).lower().strip("_")


@functools.lru_cache(maxsize=4096)
def is_personal_key(key: str) -> bool:
    """Whether a value under this key is personal data, in any case or spelling style."""
    snake = _snake(key)
    if snake in PERSONAL_KEYS or snake in PERSONAL_KEY_PARTS:
        return True
    return any(part in PERSONAL_KEY_PARTS for part in snake.split("_"))


@functools.lru_cache(maxsize=1024)
def is_secret_key(key: str) -> bool:
    snake = _snake(key)
    return snake in SECRET_KEYS or any(part in SECRET_KEY_PARTS for part in snake.split("_"))


# ------------------------------------------------------------- patterns in text

# `key=value`, `"key": "value"`, `key: value`: a key written in a text. When it is a
# personal one (the same test as for a log event's keys) the value after it is redacted,
# the key kept.
_TEXT_KEY = re.compile(
    r"(?<![\w-])(?P<quote>\\?[\"']|)(?P<name>[A-Za-z][\w-]{0,63})(?P=quote)[ \t]*(?P<separator>[:=])[ \t]*"
)
_TEXT_VALUE = re.compile(
    r"(?P<scheme>(?i:bearer|basic|token)[ \t]+)?"
    r"(?:(?P<quoted>\"(?:[^\"\\\n]|\\.){0,2000}\""  # "quoted"
    r"|'(?:[^'\\\n]|\\.){0,2000}'"  # 'quoted'
    r"|\\\"(?:[^\"\\\n]|\\[^\"]){0,2000}\\\")"  # \"quoted\" (JSON inside a JSON string)
    # or up to the end of the clause: `nama=Siti Rahayu, umur=30`
    r"|[^\s,;&'\"}\]\)\\][^,;&'\"}\]\)\n\\]{0,2000})"
)

_SEP = r"[ .\-]"
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}")
# Three base64url parts: a JSON header ("{" is "ey" in base64), a payload, a signature (may be empty).
_JWT = re.compile(r"(?<![A-Za-z0-9_\-])ey[A-Za-z0-9_\-]{8,8192}\.[A-Za-z0-9_\-]{2,16384}\.[A-Za-z0-9_\-]{0,8192}")
_BEARER = re.compile(r"(?<![\w-])(?P<scheme>(?i:bearer|basic)[ \t]+)[A-Za-z0-9._~+/=\-]{6,8192}")
# The password in a URL: postgresql://glv:secret@db/glv
_URL_PASSWORD = re.compile(r"(?P<user>://[^/\s:@]{1,256}:)[^/\s@]{1,256}@")
# Numbers. Each alternative starts with a character (its lookbehinds come after it) so
# that the scan can skip ahead to the characters that may start one.
_KEEP = (
    # recognised first, so that their digits are never taken for a phone or a NIK
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![0-9a-fA-F])"  # UUID
    r"|[0-9a-f](?<![0-9a-fA-F][0-9a-f])[0-9a-f]{31}(?![0-9a-fA-F])"  # trace id
    # ISO 8601 date-time, or a date not followed by more digits (that is a NIK grouped 4-2-2-...)
    r"|\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?|(?!\d|[ .\-]\d))"
    r"|[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]{1,5}-\d{6}-\d{4,7}(?!\d)"  # ticket code, PLP-261129-0042
)
# A NIK: 16 digits, in one run or grouped (7371 2345 6789 0123, 73.71.23.456789.0123).
_NIK = r"\d(?<!\w\d)(?<!\d[.,]\d)(?:" + _SEP + r"?\d){15}(?!\d)"
# An Indonesian number: a country or trunk prefix, an operator or area code (in brackets
# or not), then 5-9 digits, grouped or not. A bare 62 counts only before a mobile 8.
_AFTER_62 = _SEP + r"?(?:\(0\)" + _SEP + r"?)?\(?[1-9]\d{1,3}\)?"  # +62 812, +62 (21), +62 (0)21
_PHONE = (
    r"(?:\+(?<![\w+]\+)(?<!\d[.,]\+)62"
    + _AFTER_62  # +62 ...
    + r"|0(?<![\w+]0)(?<!\d[.,]0)(?:062"
    + _AFTER_62
    + r"|[1-9]\d{1,3})"  # 0062 ..., 0812, 021
    + r"|6(?<![\w+]6)(?<!\d[.,]6)2"
    + _SEP
    + r"?8\d{1,3}"  # 62812...
    + r"|\(0[1-9]\d{1,3}\))"  # (021), (0812)
    + r"(?:"
    + _SEP
    + r"?\d){5,9}(?!\d)"
)
_NUMBERS = re.compile(rf"(?P<keep>{_KEEP})|(?P<nik>{_NIK})|{_PHONE}")
# Two numbers in a row ("0812 3456 7890 021-345678"): the first may take the head of the
# second ("021"), leaving its tail glued to the redaction ("[redacted]-345678"). Digit
# groups glued that way go with it, unless they are a value kept (a date, a UUID).
_GLUED = re.compile(re.escape(REDACTED) + rf"(?:{_SEP}(?!{_KEEP})\d+)+(?!\w)")
_DIGIT = re.compile(r"[0-9]")


def _number(match: re.Match[str]) -> str:
    if match.group("keep") is not None:
        return match.group(0)
    nik = match.group("nik")
    if nik is not None and nik.count(".") == 1 and " " not in nik and "-" not in nik:
        return nik  # a decimal number with 16 digits (a duration), not a NIK in groups
    return REDACTED


def _redact_key_values(text: str) -> str:
    pieces: list[str] = []
    kept = 0  # text[:kept] is in pieces already
    position = 0
    while (key := _TEXT_KEY.search(text, position)) is not None:
        position = key.end()
        name = key.group("name")
        if not is_personal_key(name):
            continue
        value = _TEXT_VALUE.match(text, position)
        if value is None:
            continue
        if key.group("separator") == ":" and value.group("quoted") is None and not is_secret_key(name):
            continue  # `phone: string_pattern_mismatch`, a field path and an error kind
        pieces += (text[kept:position], REDACTED)
        kept = position = value.end()
    if not pieces:
        return text
    pieces.append(text[kept:])
    return "".join(pieces)


def redact_text(text: str) -> str:
    """`text` without the personal data it holds (see the module's docstring).

    Each pattern runs only on a text holding what it needs (a cheap test in C first).
    """
    if ":" in text or "=" in text:
        text = _redact_key_values(text)
    if "@" in text:
        if "://" in text:
            text = _URL_PASSWORD.sub(r"\g<user>" + REDACTED + "@", text)
        text = _EMAIL.sub(REDACTED, text)
    if "ey" in text:
        text = _JWT.sub(REDACTED, text)
    if "earer" in text or "EARER" in text or "asic" in text or "ASIC" in text:
        text = _BEARER.sub(r"\g<scheme>" + REDACTED, text)
    if _DIGIT.search(text) is not None:
        text = _NUMBERS.sub(_number, text)
        if REDACTED in text:
            text = _GLUED.sub(REDACTED, text)
    return text


def redact(value: Any, depth: int = 0) -> Any:
    """A value with its personal data redacted: texts scrubbed, personal keys blanked, at any depth."""
    kind = type(value)
    if kind is str:
        return redact_text(value)
    if value is None or kind is int or kind is float or kind is bool:
        return value
    if depth >= MAX_DEPTH:
        return REDACTED
    if isinstance(value, Mapping):
        return {
            (redact_text(key) if type(key) is str else key): (
                REDACTED if is_personal_key(str(key)) and value[key] is not None else redact(value[key], depth + 1)
            )
            for key in value
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item, depth + 1) for item in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_text(bytes(value).decode("utf-8", "backslashreplace"))
    if isinstance(value, str):  # a str subclass (an enum member, say)
        return redact_text(str(value))
    if isinstance(value, int | float):
        return value
    # A model or a dataclass is logged by its fields, so that its keys count; anything
    # else by its text (which is what the JSON renderer would print of it).
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return redact(dump(mode="json"), depth + 1)
        except Exception:
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return redact(dataclasses.asdict(value), depth + 1)
    return redact_text(repr(value) if isinstance(value, BaseException) else str(value))


def redact_personal_data(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: blank personal keys and scrub personal data from every value."""
    for key in list(event_dict):
        value = event_dict[key]
        if key in _META_KEYS or key in _OWN_KEYS:
            continue
        if is_personal_key(key):
            if value is not None:
                event_dict[key] = REDACTED
        else:
            event_dict[key] = redact(value)
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_personal_data,
    ]


def _configure(name: str, level: str, stream: TextIO, *, library_level: int) -> None:
    shared = _shared_processors()
    structlog.configure(
        processors=[*shared, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=name)
    # Library loggers (aiokafka, faststream, uvicorn) go through the same redaction.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(library_level)


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stdout; contextvars carry ticket_id, event_id and trace_id."""
    _configure(service, level, sys.stdout, library_level=logging.WARNING)


def configure_cli_logging(command: str, level: str = "WARNING") -> None:
    """A command-line tool's logs: the same redacted JSON lines, on stderr, so that what
    the command prints on stdout (a listing, JSON) stays clean for a pipe."""
    _configure(command, level, sys.stderr, library_level=max(logging.WARNING, logging.getLevelName(level.upper())))


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
