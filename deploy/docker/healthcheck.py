"""Docker HEALTHCHECK of the GLV image: GET the running service's /healthz (liveness only).

The image runs whichever command the container names, so the URL follows from that
command (PID 1's command line): `glv-ticketing run` -> port GLV_TICKETING_HTTP_PORT
(8081), `glv-scheduler run` -> GLV_SCHEDULER_HTTP_PORT (8082). Any other command (a
one-shot such as `glv-scheduler load-catalog`) serves no HTTP and counts as healthy.
GLV_HEALTHCHECK_URL, when set, is used as is. Exit 0: healthy; 1: unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping

# console script -> (port setting, default port)
SERVICES = {
    "glv-ticketing": ("GLV_TICKETING_HTTP_PORT", "8081"),
    "glv-scheduler": ("GLV_SCHEDULER_HTTP_PORT", "8082"),
}


def health_url(cmdline: bytes, env: Mapping[str, str]) -> str | None:
    if env.get("GLV_HEALTHCHECK_URL"):
        return env["GLV_HEALTHCHECK_URL"]
    # Split on NULs and blanks too, so `sh -c "glv-scheduler run"` and init wrappers
    # (docker run --init, tini) are recognised as well.
    words = [os.path.basename(w) for w in cmdline.decode(errors="replace").replace("\0", " ").split()]
    for i, word in enumerate(words[:-1]):
        if word in SERVICES and words[i + 1] == "run":
            setting, default = SERVICES[word]
            return f"http://127.0.0.1:{env.get(setting) or default}/healthz"
    return None


def main() -> int:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        cmdline = b""
    url = health_url(cmdline, os.environ)
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
    raise SystemExit(main())
