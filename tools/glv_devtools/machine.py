"""Facts about the machine a benchmark ran on, shared by the benchmarks: the commit measured,
the load, and the CPU every process used (the machines are shared and noisy)."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def git_commit(repo: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return head + (" + uncommitted changes" if dirty else "")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat): every process, ours or not."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLOCK_TICK


def cpu_and_python() -> list[str]:
    """The processor (model, cores usable by this process) and the Python that ran."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"cpu       : {model or platform.processor() or 'unknown'}; {os.cpu_count()} logical cores, {usable} usable",
        f"python    : {sys.version.split()[0]} ({platform.python_implementation()}), {platform.platform()}",
    ]
