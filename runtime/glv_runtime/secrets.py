"""Secret settings fail closed: production refuses to start on a weak one.

There are no built-in secret values anywhere in GLV: a default would be the same in every
deployment, so anyone who reads the code could sign a join link or a webhook. A service
checks each secret it needs before it starts (and a CLI command before it uses one):

- production: a missing, empty, placeholder or short secret refuses the start, with an
  error naming the environment variable;
- development (the local stack, the demo, the tests): a missing one becomes an ephemeral
  random secret, a weak one is kept; both with a warning.

An ephemeral secret lives as long as the process: what was signed with it (a join link,
say) means nothing to another process, which is fine for a local run and never reached in
production.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from pydantic import SecretStr

from glv_runtime.logs import get_logger
from glv_runtime.settings import Environment, ServiceSettings

log = get_logger(__name__)

MIN_SECRET_LENGTH = 32
# Words that mark a value copied from an example or left as a placeholder. Compared with the
# value lower-cased and stripped of everything but letters and digits, so that "CHANGE-ME",
# "change_me" and "Change Me" are all caught.
PLACEHOLDER_WORDS = ("changeme", "changeit", "devonly", "example", "secret", "password", "placeholder")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


class InsecureSecret(ValueError):
    """A secret setting is missing or weak in production; the message names the setting."""


def weakness(value: str) -> str | None:
    """Why this secret is not fit for production, or None when it is."""
    if not value:
        return "is not set"
    folded = _NOT_ALNUM.sub("", value.lower())
    word = next((w for w in PLACEHOLDER_WORDS if w in folded), None)
    if word is not None:
        return f"looks like a placeholder (it contains {word!r})"
    if len(set(value)) == 1:
        return "is one character repeated"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def ephemeral_secret() -> str:
    """256 random bits, 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


def check_secret(name: str, value: SecretStr | str | None, environment: Environment) -> SecretStr:
    """The secret to use for setting `name` (its environment variable), or `InsecureSecret`.

    In development a missing one is replaced by an ephemeral random secret and a weak one
    is kept, each with a warning; in production both refuse.
    """
    raw = value.get_secret_value() if isinstance(value, SecretStr) else (value or "")
    problem = weakness(raw)
    if problem is None:
        return SecretStr(raw)
    if environment == "production":
        raise InsecureSecret(f"{name} {problem}: set a random secret of at least {MIN_SECRET_LENGTH} characters")
    if not raw:
        log.warning("secret not set: an ephemeral random one is used until this process ends", setting=name)
        return SecretStr(ephemeral_secret())
    log.warning("weak secret accepted because GLV_ENVIRONMENT=development", setting=name, problem=problem)
    return SecretStr(raw)


def check_secret_list(name: str, values: Sequence[SecretStr], environment: Environment) -> list[SecretStr]:
    """Each secret of a list setting (keys kept for rotation), checked as `check_secret` does;
    an entry is named by its index, e.g. GLV_SCHEDULER_WEBHOOK_SECRETS[1]. An empty list is
    returned as it is: whether the caller can do without is the caller's decision."""
    return [check_secret(f"{name}[{n}]", value, environment) for n, value in enumerate(values)]


def env_name(settings: ServiceSettings, field: str) -> str:
    """The environment variable a settings field is read from (e.g. GLV_SCHEDULER_BBB_SECRET)."""
    return f"{settings.model_config.get('env_prefix', '')}{field}".upper()
