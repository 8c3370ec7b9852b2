"""Fail the image build if the virtualenv holds a distribution not pinned in constraints.txt.

    python verify_pins.py constraints.txt

`pip install -c constraints.txt` pins only what constraints.txt names: a new dependency
that it does not name would silently be resolved to the newest release. This checks that
every installed distribution (except the GLV packages themselves and pip/setuptools,
which leave the image) is pinned with `==` at exactly the installed version.
Run it with the virtualenv's interpreter.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

IGNORED = {"pip", "setuptools", "wheel"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for raw in f:
            requirement = raw.split("#", 1)[0].split(";", 1)[0].strip()
            if not requirement:
                continue
            name, sep, version = requirement.partition("==")
            if sep:
                pins[normalise(name.split("[", 1)[0])] = version.strip()
    return pins


def main(path: str) -> int:
    pins = read_pins(path)
    problems = []
    for dist in sorted(metadata.distributions(), key=lambda d: normalise(d.metadata["Name"])):
        name = normalise(dist.metadata["Name"])
        if name in IGNORED or name.startswith("glv-"):
            continue
        pinned = pins.get(name)
        if pinned is None:
            problems.append(f"{name}=={dist.version} is installed but not pinned in {path}")
        elif pinned != dist.version:
            problems.append(f"{name}=={dist.version} is installed but {path} pins {pinned}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: verify_pins.py CONSTRAINTS_FILE")
    raise SystemExit(main(sys.argv[1]))
