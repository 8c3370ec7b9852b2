"""Messages from templates: the facts of a message, in the stakeholder's language, as an
e-mail subject, plain-text and HTML bodies, an SMS/WhatsApp text and the WhatsApp template's
parameters.

Pure apart from reading the templates folder (templates/README.md describes it). An office
may point the service at its own edited copy: `check_templates` renders every purpose in
every language so that a broken copy stops the service at start, not at the first message."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

from glv_notifier import samples, wording
from glv_notifier.messages import WITH_INVITE, Locale, MessageFacts, Purpose, Rendered

DEFAULT_TEMPLATES: Final = Path(__file__).parent / "templates"
LOCALES: Final[tuple[Locale, ...]] = ("id", "en")
# A join link carries its signed meeting token (a Jitsi JWT is some 400-600 characters),
# so a phone message cannot be one 160-character SMS: 1,000 characters is a concatenated
# SMS of up to 7 parts (GSM-7) or one WhatsApp message (4,096 at most), link always whole.
SHORT_MAX: Final = 1000

# What each purpose cannot be written without; everything else a template must treat as
# optional (`{% if office %}`), StrictUndefined fails loudly otherwise.
REQUIRED: Final[Mapping[Purpose, tuple[str, ...]]] = {
    Purpose.ACKNOWLEDGEMENT: ("ticket_code",),
    Purpose.REJECTION: ("reasons",),
    Purpose.INVITATION: ("ticket_code", "office", "session"),
    Purpose.RESCHEDULED: ("ticket_code", "office", "session"),
    Purpose.CANCELLED: ("ticket_code",),
    Purpose.WAITLISTED: ("ticket_code",),
    Purpose.UNSCHEDULABLE: ("ticket_code",),
    Purpose.REMINDER: ("ticket_code", "session", "lead_minutes"),
    Purpose.HELD: ("ticket_code",),
    Purpose.MISSED: ("ticket_code",),
    Purpose.ARCHIVED: ("ticket_code", "retained_until"),
}
_OPTIONAL: Final = ("ticket_code", "office", "service_name", "session", "reasons", "lead_minutes", "retained_until")

# The body parameters of the WhatsApp Cloud API template approved at Meta for each purpose,
# in the order of its {{1}}, {{2}}, ...: the approved templates and this list change together.
WHATSAPP_PARAMETERS: Final[Mapping[Purpose, tuple[str, ...]]] = {
    Purpose.ACKNOWLEDGEMENT: ("name", "ticket_code"),
    Purpose.REJECTION: ("name", "reason"),
    Purpose.INVITATION: ("name", "ticket_code", "when", "join_url"),
    Purpose.RESCHEDULED: ("name", "ticket_code", "when", "join_url"),
    Purpose.CANCELLED: ("name", "ticket_code"),
    Purpose.WAITLISTED: ("name", "ticket_code"),
    Purpose.UNSCHEDULABLE: ("name", "ticket_code", "reason"),
    Purpose.REMINDER: ("name", "lead", "when", "join_url"),
    Purpose.HELD: ("name", "ticket_code"),
    Purpose.MISSED: ("name", "ticket_code"),
    Purpose.ARCHIVED: ("name", "ticket_code", "retained_until"),
}

# C0 and C1 controls (CR, NUL, ESC, NEL, ... but not LF or TAB, handled apart), the
# bidirectional overrides and isolates that make text read differently from what it is,
# the Unicode line and paragraph separators, a stray BOM and lone surrogates (which cannot
# be encoded for any channel).
_CONTROLS: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff\ud800-\udfff]")
_BLANK_LINES: Final = re.compile(r"\n{3,}")
_MINUTE: Final = timedelta(minutes=1)


class TemplateProblems(ValueError):
    """An edited templates folder that cannot render every message; `problems` says where."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("templates cannot render every message:\n" + "\n".join(problems))
        self.problems = problems


def clean(text: str, *, newlines: bool) -> str:
    """Text with no control characters: tabs become spaces; newlines are kept only if asked
    (a subject, a name or a WhatsApp parameter is one line, its whitespace collapsed)."""
    text = _CONTROLS.sub("", text.replace("\t", " "))
    if not newlines:
        return " ".join(text.split())
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n") + "\n"


def fit(text: str, limit: int, keep: str | None = None) -> str:
    """`text` cut to `limit` characters, never cutting `keep` (the join link): what follows
    the link goes first, then the end of what precedes it."""
    if len(text) <= limit:
        return text
    if keep is None or keep not in text:
        return _cut(text, limit)
    if len(keep) > limit:
        raise ValueError(f"the join link alone is longer than {limit} characters")
    head, _, tail = text.partition(keep)
    budget = limit - len(keep)
    if len(head) < budget:
        return head + keep + _cut(tail, budget - len(head))
    return _cut(head, budget - 1) + " " + keep


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit < 2:
        return ""
    cut = text[: limit - 1]
    # End on a word boundary when one is near, so that no word is left half-written.
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


@functools.lru_cache(maxsize=8)
def _environment(folder: Path) -> Environment:
    # Sandboxed: an office edits these files, and a template must not reach Python's
    # internals through attribute access. auto_reload (Jinja's default) picks up an edit.
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(folder),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def environment(templates_dir: Path | None = None) -> Environment:
    """The Jinja environment over a templates folder (one per folder, kept)."""
    return _environment((templates_dir or DEFAULT_TEMPLATES).resolve())


def reasons_book(locale: Locale, *, templates_dir: Path | None = None) -> wording.ReasonBook:
    """The reason wording of one language, read from the folder at each call so that an
    edited file is used as soon as the edited templates are."""
    env = environment(templates_dir)
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, f"{locale}/reasons.toml")
    try:
        return wording.parse_reasons(source)
    except ValueError as error:
        raise ValueError(f"{locale}/reasons.toml: {error}") from error


def _check(facts: MessageFacts) -> None:
    missing = [name for name in REQUIRED[facts.purpose] if getattr(facts, name) in (None, ())]
    if missing:
        raise ValueError(f"a {facts.purpose} message needs {', '.join(missing)}")
    session = facts.session
    if session is not None:
        if session.ends_at - session.starts_at < _MINUTE:
            raise ValueError("a session ends at least a minute after it starts")
        if urlsplit(session.join_url).scheme not in ("https", "http"):
            # An href the stakeholder clicks: never javascript: or data:, whatever an event says.
            raise ValueError("the join link must be an http(s) URL")


def _context(facts: MessageFacts, reasons: list[wording.Reason]) -> dict[str, object]:
    locale = facts.locale
    session = facts.session
    office = facts.office
    if office is not None:
        office = dataclasses.replace(
            office, name=clean(office.name, newlines=False), city=clean(office.city, newlines=False)
        )
    # A date alone (the end of retention) is read in the office's zone; any Indonesian zone
    # gives the same day but for a few hours around midnight.
    zone = session.zone if session else office.zone if office else "Asia/Jakarta"
    extra = {key: clean(value, newlines=False) for key, value in facts.extra.items()}
    return {
        "purpose": str(facts.purpose),
        "locale": locale,
        # User input: cleaned here, escaped by the HTML templates' autoescaping.
        "name": clean(facts.name, newlines=False),
        "ticket_code": facts.ticket_code,
        "office": office,
        "service_name": clean(facts.service_name, newlines=False) if facts.service_name else None,
        "session": session,
        "when": wording.local_when(session.starts_at, zone, locale) if session else None,
        "end_time": wording.local_time(session.ends_at, zone, locale) if session else None,
        "length": wording.duration((session.ends_at - session.starts_at) // _MINUTE, locale) if session else None,
        "join_url": session.join_url if session else None,
        "has_invite": facts.purpose in WITH_INVITE and session is not None,
        "lead": wording.duration(facts.lead_minutes, locale) if facts.lead_minutes else None,
        "retained_until": wording.local_date(facts.retained_until, zone, locale) if facts.retained_until else None,
        "reasons": reasons,
        "advice": wording.advice(reasons),
        "portal_url": extra.get("portal_url"),
        "extra": extra,
    }


def _prepare(facts: MessageFacts, templates_dir: Path | None) -> tuple[Environment, dict[str, object], str]:
    """The environment, the templates' context and the reasons in one line (for WhatsApp)."""
    _check(facts)
    reasons = wording.explain(facts.purpose, facts.reasons, reasons_book(facts.locale, templates_dir=templates_dir))
    return environment(templates_dir), _context(facts, reasons), "; ".join(reason.text for reason in reasons)


def _template_parameters(purpose: Purpose, context: Mapping[str, object], reason: str) -> tuple[str, ...]:
    values = {**context, "reason": reason}
    # WhatsApp refuses an empty parameter, or one with a newline, a tab or 4+ spaces.
    return tuple(clean(str(values[key] or ""), newlines=False) or "-" for key in WHATSAPP_PARAMETERS[purpose])


def render(facts: MessageFacts, *, templates_dir: Path | None = None) -> Rendered:
    """The message for `facts` in the stakeholder's language, ready for any channel."""
    env, context, reason = _prepare(facts, templates_dir)
    base = f"{facts.locale}/{facts.purpose}"
    subject = clean(env.get_template(f"{base}.subject.j2").render(context), newlines=False)
    context["subject"] = subject
    text = clean(env.get_template(f"{base}.txt.j2").render(context), newlines=True)
    html = clean(env.get_template(f"{base}.html.j2").render(context), newlines=True)
    short = clean(env.get_template(f"{base}.short.j2").render(context), newlines=True).strip()
    return Rendered(
        subject=subject,
        text=text,
        html=html,
        short=fit(short, SHORT_MAX, keep=facts.session.join_url if facts.session else None),
        template_parameters=_template_parameters(facts.purpose, context, reason),
    )


def invite_text(facts: MessageFacts, *, templates_dir: Path | None = None) -> tuple[str, str]:
    """A calendar invite's SUMMARY (one line) and DESCRIPTION, in the stakeholder's language."""
    env, context, _ = _prepare(facts, templates_dir)
    summary = clean(env.get_template(f"{facts.locale}/invite.summary.j2").render(context), newlines=False)
    description = clean(env.get_template(f"{facts.locale}/invite.description.j2").render(context), newlines=True)
    return summary, description.rstrip("\n")


def _minimal(facts: MessageFacts) -> MessageFacts:
    """The same facts with everything the purpose can do without left out."""
    defaults: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(MessageFacts)}
    blank = {name: defaults[name] for name in _OPTIONAL if name not in REQUIRED[facts.purpose]}
    return dataclasses.replace(facts, extra={}, **blank)


def _problems(facts: MessageFacts, templates_dir: Path | None) -> list[str]:
    """What is wrong with one message rendered from a folder (nothing: an empty list)."""
    try:
        rendered = render(facts, templates_dir=templates_dir)
        if facts.purpose in WITH_INVITE and facts.session is not None:
            invite_text(facts, templates_dir=templates_dir)
    except Exception as error:  # any error an edited template can raise is reported
        return [f"{type(error).__name__}: {error}"]
    problems = [f"empty {part}" for part in ("subject", "text", "html", "short") if not getattr(rendered, part).strip()]
    if samples.SAMPLE_NAME_MARKUP in rendered.html:
        problems.append("the HTML body shows the name unescaped (is it marked |safe?)")
    if facts.session is not None and facts.purpose in (Purpose.INVITATION, Purpose.RESCHEDULED, Purpose.REMINDER):
        problems.extend(
            f"the {part} does not carry the join link"
            for part in ("text", "html", "short")
            if str(escape(facts.session.join_url)) not in getattr(rendered, part)
            and facts.session.join_url not in getattr(rendered, part)
        )
    return problems


def check_templates(templates_dir: Path | None = None) -> None:
    """Render every purpose in every language, with every fact and with only the required
    ones; raise TemplateProblems listing every failure."""
    problems: list[str] = []
    for locale in LOCALES:
        try:
            reasons_book(locale, templates_dir=templates_dir)
        except Exception as error:
            problems.append(f"{locale}/reasons.toml: {type(error).__name__}: {error}")
            continue
        for purpose in Purpose:
            full = samples.sample_facts(purpose, locale)
            for variant, facts in (("all facts", full), ("required facts only", _minimal(full))):
                problems.extend(
                    f"{locale}/{purpose}.* ({variant}): {problem}" for problem in _problems(facts, templates_dir)
                )
    if problems:
        raise TemplateProblems(problems)
