"""Whether a session's archive is complete: the artifacts its SessionHeld declared,
reconciled against those stored. Pure rules, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from glv_schemas.events import ArtifactKind, ArtifactProblem

ArtifactStatus = Literal["pending", "stored", "late", "failed", "erased"]
Verdict = Literal["waiting", "complete", "incomplete"]

# Reasons a transfer can still succeed later (the platform still encoding, a network
# fault, a corrupted transfer, our own store unreachable: "transfer_failed" is any error
# that is not a verdict on the artifact): the artifact turns "late" and is checked again.
# The others (a forbidden host or address, a wrong type, too large) will not change by waiting.
RETRYABLE_REASONS = frozenset(
    {"not_found", "upstream_error", "unreachable", "truncated", "size_mismatch", "checksum_mismatch", "transfer_failed"}
)


@dataclass(frozen=True)
class ArtifactState:
    kind: ArtifactKind
    status: ArtifactStatus
    reason: str | None = None
    detail: str | None = None


def verdict(artifacts: Sequence[ArtifactState]) -> Verdict:
    """waiting while any transfer is still on; then complete when every one was stored."""
    if any(a.status == "pending" for a in artifacts):
        return "waiting"
    if all(a.status == "stored" for a in artifacts):
        return "complete"
    return "incomplete"


def problems(artifacts: Sequence[ArtifactState]) -> list[ArtifactProblem]:
    """What ArchiveFailed says: each artifact not stored, and why."""
    return [
        ArtifactProblem(kind=a.kind, reason=a.reason or "missing", detail=(a.detail or "")[:500])
        for a in artifacts
        if a.status != "stored"
    ]


def retryable(artifacts: Sequence[ArtifactState]) -> bool:
    """Whether the archive still tries: some artifact is late (it may yet arrive)."""
    return any(a.status == "late" for a in artifacts)


def split_error(error: str) -> tuple[str, str]:
    """A failed fetch job's error ("<reason>: <detail>") as (reason, detail)."""
    reason, sep, detail = error.partition(": ")
    if sep and reason and reason.replace("_", "").isalnum() and reason == reason.lower():
        return reason, detail
    return "transfer_failed", error


def after_attempts(reason: str, *, past_give_up: bool) -> ArtifactStatus:
    """What an artifact becomes when its fetch job failed for good."""
    return "late" if reason in RETRYABLE_REASONS and not past_give_up else "failed"
