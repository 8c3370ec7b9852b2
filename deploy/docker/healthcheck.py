"""Docker HEALTHCHECK of the GLV image: GET the running service's /healthz (liveness only).

    python healthcheck.py [NAME [PORT]]

The service: NAME, else the container's command (PID 1's command line), where
`glv-<name> run` runs service <name>. The port: PORT, else GLV_<NAME>_HTTP_PORT, else
the service's default in the registry (glv_schemas.topics.DEPLOYED_SERVICES). Any other
command (a one-shot such as `glv-scheduler load-catalog`) serves no HTTP and counts as
healthy. GLV_HEALTHCHECK_URL, when set, is used as is. Exit 0: healthy; 1: unhealthy.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from itertools import pairwise

COMMAND = re.compile(r"glv-([a-z][a-z0-9_]*)")


def service_of(cmdline: bytes) -> str | None:
    """The service a command line runs: <name> for `glv-<name> run`."""
    # Split on NULs and blanks too, so `sh -c "glv-scheduler run"` and init wrappers
    # (docker run --init, tini) are recognised as well.
    words = [os.path.basename(w) for w in cmdline.decode(errors="replace").replace("\0", " ").split()]
    for word, following in pairwise(words):
        match = COMMAND.fullmatch(word)
        if match and following == "run":
            return match.group(1)
    return None


def default_port(name: str) -> str | None:
    # Imported only when the environment does not say (the image's venv holds the registry).
    from glv_schemas.topics import DEPLOYED_SERVICES

    return next((str(s.http_port) for s in DEPLOYED_SERVICES if s.name == name), None)


def health_url(args: Sequence[str], cmdline: bytes, env: Mapping[str, str]) -> str | None:
    if env.get("GLV_HEALTHCHECK_URL"):
        return env["GLV_HEALTHCHECK_URL"]
    name = args[0] if args else service_of(cmdline)
    if name is None:
        return None
    port = args[1] if len(args) > 1 else env.get(f"GLV_{name.upper()}_HTTP_PORT") or default_port(name)
    return f"http://127.0.0.1:{port}/healthz" if port else None


def main(args: Sequence[str]) -> int:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        cmdline = b""
    url = health_url(args, cmdline, os.environ)
    if url is None:
        return 0
    try:
        # No proxies: the service is in this container.
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=4).close()
    except Exception as exc:  # any failure means unhealthy
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
