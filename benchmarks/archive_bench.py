"""Archive benchmark: MB/s of an artifact's transfer into the archive, beside a plain file copy on
the same disk, and the peak memory of the process that streams it.

Run from the repository root:

    .venv/bin/python benchmarks/archive_bench.py                          # 500 MB and 100 MB, 3 rounds (1-2 minutes)
    .venv/bin/python benchmarks/archive_bench.py --size-mb 2000 --small-mb 0 --repeat 1
    make archive-bench ARGS="--size-mb 1000"

It is not a test: it prints figures. No Kafka and no PostgreSQL: the job's bookkeeping (reading the
artifact's row, recording the stored object) is a few statements per artifact, while the transfer
is seconds per hundred MB. What is measured is the effect of the `fetch-artifact` job exactly as
`glv_archive.transfer.Transfers.perform` runs it: `make_client` + `open_artifact` (the SSRF-guarded
transport, the size and SHA-256 checks as the body streams) into `ObjectStore.store_encrypted` (Tink
streaming AEAD with a fresh data key wrapped by a KEK, written through obstore's multipart writer
to a local store), with the service's own defaults (`ArchiveSettings`: 8 MiB write buffer, 2 parts
in flight, 1 MiB chunks).

The meeting-platform simulator (`glv_devtools.meetingsim.MeetingPlatform`) runs in this process
and serves a session whose video is N MB (MB = 10^6 bytes); every transfer runs in a child process
of its own (`--child MODE`), so that the child's memory is the transfer's alone and the platform
has its own core. Per round, one after the other, each measured the same way (MB/s = bytes /
wall seconds, median over the rounds):

1. plain copy: `shutil.copyfile` of an N MB file (written beforehand, so read from the page cache)
   to another file in the same folder, not fsync'd: obstore's local writer does not fsync either,
   so this is the like-for-like ceiling. The same copy with an fsync of the destination before
   the clock stops is printed beside it: what the disk itself sustains.
2. HTTP only: the same N MB from the simulator through a plain `httpx.AsyncClient` GET, streamed
   in 1 MiB chunks into nothing.
3. guarded fetch: `make_client` + `open_artifact` + `Download.chunks()` read to the end (SSRF
   guard, counting, SHA-256 and the declared size and checksum checked), nothing stored.
4. archive: the whole effect, fetch + hash + encrypt + store; ratio to the plain copy.
5. read-back: in the archive's child, `Keyring.unwrap` + `ObjectStore.open_decrypted` iterated to
   the end (what a download link streams), from the object just written (so from the page cache);
   its byte count is checked, and every 1 MiB segment is authenticated as it is decrypted.

And once, in this process, with no I/O: SHA-256 alone and Tink encryption alone over N MB of
1 MiB chunks, to show what the CPU work costs by itself.

Peak memory: each child reads its VmRSS once everything is imported and set up (the baseline),
resets its high-water mark (`/proc/self/clear_refs`), runs the transfer, and reads VmHWM: the
peak while streaming. The read-back gets its own reset and peak. With two sizes (--small-mb), the
peak shows whether memory grows with the artifact (it should not: a few chunks and the writer's
buffers). CPU: the stage's own process as ms per MB (steadier than MB/s on a shared machine) and
as % of one core, this process while a child runs (the simulator), and the whole machine's busy
CPU from /proc/stat, so that a run on a busy machine shows as one.

Temporary files go to a folder under --workdir (default /var/tmp, the disk of the archive's default
store) that is removed at the end, also after an error or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from glv_archive.fetch import FetchPolicy, make_client, open_artifact
from glv_archive.keys import Keyring, WrappedKey, new_kek, parse_keks
from glv_archive.settings import ArchiveSettings
from glv_archive.storage import ObjectStore
from glv_archive.transfer import object_key
from glv_devtools.machine import cpu_and_python, git_commit, load_average, machine_busy_seconds
from glv_devtools.meetingsim import MeetingPlatform

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
MB = 1_000_000  # sizes and rates: decimal megabytes
MIB = 1 << 20  # memory: mebibytes
CHUNK = MIB  # what Download.chunks() yields and open_decrypted reads
HOST = "127.0.0.1"
RESULT = "ARCHIVE-BENCH-RESULT "  # marks the child's one line of figures on stdout


def say(text: str = "") -> None:
    print(text, flush=True)


def note(text: str) -> None:
    """Progress, on stderr, so that stdout holds the figures."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


# ====================================================================== the machine


def machine_facts(workdir: Path) -> list[str]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    cpu, python = cpu_and_python()
    return [
        cpu,
        f"memory    : {memory:.1f} GiB",
        f"disk      : {filesystem_of(workdir)}",
        python,
        f"repository: {REPO} at {git_commit(REPO)}",
    ]


def filesystem_of(path: Path) -> str:
    """Device and type of the filesystem holding `path` (the longest matching mount point)."""
    best: tuple[str, str, str] = ("", "?", "?")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            if str(path).startswith(mount.rstrip("/") + "/") and len(mount) >= len(best[0]):
                best = (mount, device, kind)
    return f"{path} on {best[1]} ({best[2]}, mounted at {best[0] or '?'})"


def cpu_seconds() -> float:
    """User + system CPU of this process, all its threads (obstore's and Tink's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def status_kib(name: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/self/status")


def reset_peak() -> None:
    """Sets VmHWM back to the current RSS (Linux 4.0+), so that the next peak is the next step's."""
    Path("/proc/self/clear_refs").write_text("5")


def pattern_block() -> bytes:
    """1 MiB of incompressible bytes (nothing on the path compresses, but say so by construction)."""
    return hashlib.shake_256(b"glv-archive-bench").digest(MIB)


def blocks(size: int, block: bytes) -> Iterator[bytes]:
    view = memoryview(block)
    left = size
    while left > 0:
        n = min(left, len(block))
        yield bytes(view[:n]) if n < len(block) else block
        left -= n


# ====================================================================== the child: one transfer


@dataclass(frozen=True)
class Target:
    url: str
    size: int
    sha256: str


def archive_settings(store: Path) -> ArchiveSettings:
    # The service's defaults, with the simulator's address let through (plain http, loopback).
    return ArchiveSettings(
        environment="development",
        store_url=store.as_uri(),
        fetch_allowed_hosts=[HOST],
        fetch_http_hosts=[HOST],
        fetch_private_hosts=[HOST],
    )


class Meter:
    """Wall seconds, this process's CPU seconds, the whole machine's busy CPU seconds and (in a
    child) the memory baseline and peak of one step."""

    def __init__(self, *, memory: bool = True) -> None:
        self.baseline_kib = self.peak_kib = 0
        if memory:
            gc.collect()
            self.baseline_kib = status_kib("VmRSS")
            reset_peak()
        self._memory = memory
        self._machine = machine_busy_seconds()
        self._cpu = cpu_seconds()
        self._start = time.perf_counter()

    def stop(self) -> dict[str, float]:
        seconds = time.perf_counter() - self._start
        cpu = cpu_seconds() - self._cpu
        machine = machine_busy_seconds() - self._machine
        if self._memory:
            self.peak_kib = status_kib("VmHWM")
        return {
            "seconds": seconds,
            "cpu": cpu,
            "machine": machine,
            "baseline_kib": self.baseline_kib,
            "peak_kib": self.peak_kib,
        }


async def child_http(target: Target) -> dict[str, Any]:
    """The bytes over HTTP into nothing: no guard, no hash, no store."""
    async with httpx.AsyncClient(trust_env=False, timeout=60.0) as client:
        meter = Meter()
        received = 0
        async with client.stream("GET", target.url, headers={"Accept-Encoding": "identity"}) as response:
            response.raise_for_status()
            async for chunk in response.aiter_raw(CHUNK):
                received += len(chunk)
        figures = meter.stop()
    if received != target.size:
        raise RuntimeError(f"received {received} bytes of {target.size}")
    return {"transfer": figures}


async def child_fetch(target: Target, store: Path) -> dict[str, Any]:
    """The archive's download as the job opens it, read to the end and checked; nothing stored."""
    policy = FetchPolicy.from_settings(archive_settings(store))
    meter = Meter()
    async with (
        make_client(policy) as client,
        open_artifact(
            client, target.url, "video", policy, expected_size=target.size, expected_sha256=target.sha256
        ) as download,
    ):
        async for _ in download.chunks():
            pass
    figures = meter.stop()
    if download.size != target.size or download.sha256 != target.sha256:
        raise RuntimeError("the download does not match the artifact")
    return {"transfer": figures}


async def archive_transfer(target: Target, store: Path) -> tuple[dict[str, Any], Keyring, ObjectStore]:
    """What Transfers.perform does between reading the artifact's row and returning its result."""
    settings = archive_settings(store)
    policy = FetchPolicy.from_settings(settings)
    objects = ObjectStore.from_settings(settings)
    kek_id, kek = new_kek()
    keyring = Keyring(parse_keks(json.dumps({kek_id: kek})), kek_id)
    session_id = uuid.uuid4()
    object_id = uuid.uuid5(uuid.uuid4(), "object/1")
    key = object_key(session_id, datetime.now(UTC), object_id, "video")

    meter = Meter()
    data_key, wrapped = keyring.new_data_key(object_id)
    async with (
        make_client(policy) as client,
        open_artifact(
            client, target.url, "video", policy, expected_size=target.size, expected_sha256=target.sha256
        ) as download,
    ):
        stored_bytes = await objects.store_encrypted(key, download.chunks(), data_key.encryptor(object_id.bytes))
    transfer = meter.stop()
    if download.size != target.size or download.sha256 != target.sha256:
        raise RuntimeError("the download does not match the artifact")
    figures: dict[str, Any] = dict(
        transfer=transfer,
        stored_bytes=stored_bytes,
        key=key,
        object_id=str(object_id),
        key_id=wrapped.key_id,
        wrapped=wrapped.wrapped.hex(),
    )
    return figures, keyring, objects


def read_back(figures: dict[str, Any], keyring: Keyring, objects: ObjectStore, size: int) -> dict[str, Any]:
    """What a download link streams: unwrap the data key, decrypt the object chunk by chunk."""
    object_id = uuid.UUID(figures["object_id"])
    meter = Meter()
    data_key = keyring.unwrap(object_id, WrappedKey(figures["key_id"], bytes.fromhex(figures["wrapped"])))
    read = 0
    for chunk in objects.open_decrypted(figures["key"], data_key, object_id.bytes):
        read += len(chunk)
    readback = meter.stop()
    if read != size:
        raise RuntimeError(f"read back {read} bytes of {size}")
    return {"readback": readback}


def run_child(mode: str, target: Target, store: Path) -> dict[str, Any]:
    if mode == "http":
        return asyncio.run(child_http(target))
    if mode == "fetch":
        return asyncio.run(child_fetch(target, store))
    if mode == "archive":
        figures, keyring, objects = asyncio.run(archive_transfer(target, store))
        figures.update(read_back(figures, keyring, objects, target.size))
        return figures
    raise ValueError(f"unknown mode {mode!r}")


# ====================================================================== the parent: ceilings


def fill_file(path: Path, size: int, block: bytes) -> None:
    with path.open("wb") as out:
        for chunk in blocks(size, block):
            out.write(chunk)


def plain_copy(source: Path, target: Path, *, fsync: bool) -> dict[str, float]:
    """One copy (with an fsync of the target inside the clock if asked)."""
    target.unlink(missing_ok=True)
    os.sync()  # the previous step's dirty pages are written before the clock starts
    meter = Meter(memory=False)
    shutil.copyfile(source, target)
    if fsync:
        with target.open("rb+") as written:
            os.fsync(written.fileno())
    figures = meter.stop()
    target.unlink()
    return figures


def in_memory(size: int, block: bytes) -> dict[str, dict[str, float]]:
    """SHA-256 alone and Tink encryption alone (a fresh data key, the archive's template) over
    `size` bytes in 1 MiB chunks, output discarded."""
    results: dict[str, dict[str, float]] = {}
    meter = Meter(memory=False)
    digest = hashlib.sha256()
    for chunk in blocks(size, block):
        digest.update(chunk)
    digest.hexdigest()
    results["sha256"] = meter.stop()

    kek_id, kek = new_kek()
    keyring = Keyring(parse_keks(json.dumps({kek_id: kek})), kek_id)
    object_id = uuid.uuid4()
    data_key, _ = keyring.new_data_key(object_id)
    meter = Meter(memory=False)
    encryptor = data_key.encryptor(object_id.bytes)
    for chunk in blocks(size, block):
        encryptor.update(chunk)
    encryptor.finish()
    results["encrypt"] = meter.stop()
    return results


# ====================================================================== the parent: rounds


STAGES = ("copy", "copy_fsync", "http", "fetch", "archive", "readback", "sha256", "encrypt")
LABELS = {
    "copy": "plain copy (shutil.copyfile, no fsync)",
    "copy_fsync": "plain copy + fsync",
    "http": "HTTP only (httpx GET into nothing)",
    "fetch": "guarded fetch + SHA-256 check, not stored",
    "archive": "archive: fetch + hash + encrypt + store",
    "readback": "read-back: unwrap + decrypt (open_decrypted)",
    "sha256": "in memory: SHA-256 alone",
    "encrypt": "in memory: Tink streaming encryption alone",
}


@dataclass
class Sample:
    seconds: float
    client_cpu: float  # the process doing the stage
    machine_cpu: float  # every process on the machine, during the stage
    server_cpu: float | None = None  # this process while a child ran: the simulator

    @classmethod
    def of(cls, figures: dict[str, float], server_cpu: float | None = None) -> Sample:
        return cls(figures["seconds"], figures["cpu"], figures["machine"], server_cpu)


@dataclass
class SizeResult:
    size: int
    samples: dict[str, list[Sample]] = field(default_factory=lambda: defaultdict(list))
    rss: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))  # (baseline, peak) KiB
    stored_bytes: int = 0
    load: list[str] = field(default_factory=list)

    def rate(self, stage: str) -> float:
        return statistics.median(self.size / MB / s.seconds for s in self.samples[stage])

    def spread(self, stage: str) -> tuple[float, float]:
        rates = [self.size / MB / s.seconds for s in self.samples[stage]]
        return min(rates), max(rates)

    def cpu_share(self, stage: str) -> tuple[float, float | None, float]:
        """Median % of one core: the stage's own process, the simulator, the whole machine."""
        runs = self.samples[stage]
        client = statistics.median(100 * s.client_cpu / s.seconds for s in runs)
        served = [100 * s.server_cpu / s.seconds for s in runs if s.server_cpu is not None]
        machine = statistics.median(100 * s.machine_cpu / s.seconds for s in runs)
        return client, statistics.median(served) if served else None, machine

    def cpu_per_mb(self, stage: str) -> float:
        """Median CPU milliseconds per MB of the stage's own process."""
        return statistics.median(1000 * s.client_cpu / (self.size / MB) for s in self.samples[stage])

    def rss_mib(self, stage: str) -> tuple[float, float]:
        """Median baseline and highest peak over the rounds, MiB."""
        pairs = self.rss[stage]
        return statistics.median(b for b, _ in pairs) / 1024, max(p for _, p in pairs) / 1024


async def child(mode: str, target: Target, store: Path) -> tuple[dict[str, Any], float]:
    """Runs one transfer in a fresh interpreter; its figures, and this process's CPU meanwhile
    (the simulator serving it: nothing else runs here during a child)."""
    await asyncio.to_thread(os.sync)  # earlier steps' dirty pages go to disk before this one starts
    args = ["--child", mode, "--url", target.url, "--size", str(target.size), "--sha256", target.sha256]
    before = cpu_seconds()
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), *args, "--store", str(store), stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    served = cpu_seconds() - before
    if process.returncode != 0:
        raise RuntimeError(f"the {mode} child exited with {process.returncode}")
    for line in out.decode().splitlines():
        if line.startswith(RESULT):
            figures: dict[str, Any] = json.loads(line.removeprefix(RESULT))
            return figures, served
    raise RuntimeError(f"the {mode} child printed no figures")


async def measure_size(
    platform_: MeetingPlatform, size: int, rounds: int, work: Path, block: bytes, room: str
) -> SizeResult:
    result = SizeResult(size)
    note(f"{size / MB:,.0f} MB: the session's artifacts and their checksums")
    artifacts = platform_.add_session(room, video_bytes=size, audio_bytes=1 << 20)
    video = next(a for a in artifacts if a.kind == "video")
    assert video.sha256 is not None  # the simulator declares every checksum
    target = Target(str(video.url), video.size_bytes, video.sha256)

    source, copied = work / f"source-{size}", work / f"copy-{size}"
    await asyncio.to_thread(fill_file, source, size, block)
    store = work / f"store-{size}"
    try:
        for n in range(1, rounds + 1):
            result.load.append(load_average())
            note(f"{size / MB:,.0f} MB round {n}/{rounds} (load {result.load[-1]})")
            for stage, fsync in (("copy", False), ("copy_fsync", True)):
                figures = await asyncio.to_thread(plain_copy, source, copied, fsync=fsync)
                result.samples[stage].append(Sample.of(figures))
            for mode in ("http", "fetch", "archive"):
                measured, served = await child(mode, target, store)
                # This process's CPU spans the child's whole life, but the simulator only works
                # while the child downloads: it is divided by the transfer's seconds.
                transfer = measured["transfer"]
                result.samples[mode].append(Sample.of(transfer, served))
                result.rss[mode].append((transfer["baseline_kib"], transfer["peak_kib"]))
                if mode == "archive":
                    readback = measured["readback"]
                    result.samples["readback"].append(Sample.of(readback))
                    result.rss["readback"].append((readback["baseline_kib"], readback["peak_kib"]))
                    result.stored_bytes = measured["stored_bytes"]
                    await asyncio.to_thread(shutil.rmtree, store)
            for stage, figures in (await asyncio.to_thread(in_memory, size, block)).items():
                result.samples[stage].append(Sample.of(figures))
    finally:
        source.unlink(missing_ok=True)
        copied.unlink(missing_ok=True)
        platform_.remove_session(room)
    return result


async def measure(sizes: Sequence[int], rounds: int, work: Path) -> list[SizeResult]:
    block = pattern_block()
    results = []
    async with MeetingPlatform(host=HOST) as platform_:
        note(f"meeting-platform simulator on {platform_.base_url}")
        for i, size in enumerate(sizes):
            results.append(await measure_size(platform_, size, rounds, work, block, f"abench-{i}"))
    return results


# ====================================================================== the report


def table(results: Sequence[SizeResult]) -> list[str]:
    lines = [
        "| size MB | plain copy MB/s | copy + fsync MB/s | HTTP only MB/s | archive MB/s | archive / copy "
        "| read-back MB/s | archive RSS baseline → peak MiB | read-back peak MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        base, peak = r.rss_mib("archive")
        _, back_peak = r.rss_mib("readback")
        lines.append(
            f"| {r.size / MB:,.0f} | {r.rate('copy'):,.0f} | {r.rate('copy_fsync'):,.0f} | {r.rate('http'):,.0f} "
            f"| {r.rate('archive'):,.0f} | {r.rate('archive') / r.rate('copy'):.0%} | {r.rate('readback'):,.0f} "
            f"| {base:.0f} → {peak:.0f} (+{peak - base:.0f}) | {back_peak:.0f} |"
        )
    return lines


def stage_table(r: SizeResult) -> list[str]:
    copy = r.rate("copy")
    rounds = len(r.samples["copy"])
    lines = [
        f"{r.size / MB:,.0f} MB, by stage (median of {rounds} round{'s' * (rounds != 1)}; min–max;"
        " CPU as % of one core, the machine's out of 100 × cores):",
        "",
        "| stage | MB/s | min–max | ratio to copy | CPU ms/MB | its process CPU % | simulator CPU % "
        "| machine CPU % | RSS baseline → peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in STAGES:
        if not r.samples[stage]:
            continue
        low, high = r.spread(stage)
        client, served, machine = r.cpu_share(stage)
        simulator = "-" if served is None else f"{served:.0f}"
        rss = "-"
        if r.rss[stage]:
            base, peak = r.rss_mib(stage)
            rss = f"{base:.0f} → {peak:.0f}"
        lines.append(
            f"| {LABELS[stage]} | {r.rate(stage):,.0f} | {low:,.0f}–{high:,.0f} | {r.rate(stage) / copy:.0%} "
            f"| {r.cpu_per_mb(stage):.2f} | {client:.0f} | {simulator} | {machine:.0f} | {rss} |"
        )
    lines += ["", f"stored {r.stored_bytes:,} bytes for {r.size:,} ({r.stored_bytes / r.size - 1:+.4%})"]
    lines.append(f"load average before each round: {' | '.join(r.load)}")
    return lines


def report(results: Sequence[SizeResult], facts: Sequence[str], started: datetime) -> None:
    say()
    say(f"Archive benchmark, {started:%Y-%m-%d %H:%M} UTC")
    for fact in facts:
        say(f"  {fact}")
    say()
    for line in table(results):
        say(line)
    for r in results:
        say()
        for line in stage_table(r):
            say(line)


# ====================================================================== main


def megabytes(text: str) -> int:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("a size is not negative")
    return int(value * MB)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mb", type=megabytes, default=500 * MB, help="the large artifact (default 500)")
    parser.add_argument(
        "--small-mb", type=megabytes, default=100 * MB, help="a second, smaller size (default 100; 0: none)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (default 3); medians are printed")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp"), help="where the temporary folder goes")
    # The child's side: one transfer, its figures on one line of stdout.
    parser.add_argument("--child", choices=("http", "fetch", "archive"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sha256", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        figures = run_child(args.child, Target(args.url, args.size, args.sha256), args.store)
        print(RESULT + json.dumps(figures), flush=True)
        return 0

    sizes = sorted({s for s in (args.small_mb, args.size_mb) if s > 0})
    if not sizes or args.repeat < 1:
        raise SystemExit("nothing to measure: give a positive --size-mb and --repeat")
    args.workdir.mkdir(parents=True, exist_ok=True)
    # At most a source, its copy and one stored object of the largest size at a time.
    needed = 3 * max(sizes) + 64 * MIB
    if shutil.disk_usage(args.workdir).free < needed:
        raise SystemExit(f"{args.workdir} has less than {needed / MB:,.0f} MB free")
    # SIGTERM unwinds like Ctrl-C, so that the temporary folder is removed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="glv-archive-bench-", dir=args.workdir))
    facts = machine_facts(work)
    for fact in facts:
        note(fact)
    try:
        results = asyncio.run(measure(sizes, args.repeat, work))
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
        note(f"removed {work}")
    report(results, facts, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
