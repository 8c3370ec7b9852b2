"""The `scheduling-round` job: an office's round, decided once across replicas.

perform (outside any transaction): read what waits for the round and the office's bookings,
then solve in a thread (HiGHS releases the GIL: the consumer and the lease renewal go on).
succeeded (the job's own unit of work, fenced by its lease): write the decision
(`SchedulerUseCase.decide_round`) and mark the round done, in one commit. A runner killed
at any point leaves the round pending; its lease lapses and another replica decides it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable
from datetime import datetime

from prometheus_client import Counter, Histogram

from glv_runtime.jobs import Job, JobKind
from glv_runtime.jobs_store import JsonObject
from glv_runtime.logs import get_logger
from glv_runtime.unit_of_work import Database, UnitOfWork
from glv_scheduler import store
from glv_scheduler.assignment import InMemoryBusy, Proposal, SlotSearch
from glv_scheduler.handlers import SchedulerUseCase
from glv_scheduler.round_policy import ROUND_JOB
from glv_scheduler.rounds import RoundTicket, plan_round, round_reads
from glv_scheduler.settings import SchedulerSettings

log = get_logger(__name__)

ROUND_SECONDS = Histogram(
    "glv_scheduler_round_seconds", "Time to solve one round", buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 60)
)
ROUND_FALLBACKS = Counter(
    "glv_scheduler_round_fallbacks_total", "Rounds decided by the greedy: the solver had no better answer in time"
)


class RoundRunner:
    def __init__(
        self, use_case: SchedulerUseCase, db: Database, settings: SchedulerSettings, clock: Callable[[], datetime]
    ) -> None:
        self._use_case = use_case
        self._db = db
        self._settings = settings
        self._clock = clock

    def kind(self) -> JobKind:
        limit = self._settings.round_time_limit_s
        return JobKind(
            name=ROUND_JOB,
            perform=self.perform,
            succeeded=self.succeeded,
            timeout_s=limit * 3 + 60,
            lease_s=self._settings.round_lease_s,
            # One solve at a time per process: it takes a core.
            concurrency=1,
            max_attempts=50,
            backoff_base_s=1.0,
            backoff_max_s=30.0,
        )

    async def perform(self, job: Job) -> JsonObject:
        office_code = job.payload["office_code"]
        round_at = datetime.fromisoformat(job.payload["round_at"])
        now = max(self._clock(), round_at)
        async with self._db.pool.acquire() as conn:
            if (
                await conn.fetchval(
                    "SELECT status FROM scheduling_round WHERE office_code = $1 AND round_at = $2",
                    office_code,
                    round_at,
                )
                == "done"
            ):
                return {"done": True}
            view = await store.load_catalog_view(conn)
            services = {s: view.services[s] for o, s in view.rounds if o == office_code and s in view.services}
            office = view.offices.get(office_code)
            records = await store.round_requests(conn, office_code, round_at, list(services))
            # Its own search: the consumer's is in use on the event loop while this one solves in a thread.
            search = SlotSearch(view.officers, view.closures)
            busy = store.BatchBusy(conn)
            if office is not None:
                await busy.read(round_reads(search, office, services.values(), now))
        tickets = [
            RoundTicket(r.ticket_id, r.service_code, arrival, r.windows)
            for arrival, r in enumerate(records)
            if r.service_code in services
        ]
        if office is None or not tickets:
            return {"now": now.isoformat(), "placements": [], "method": "optimal", "windows": 0, "seconds": 0.0}
        memory = InMemoryBusy({officer: list(held) for officer, held in busy.booked.items()})
        result = await asyncio.to_thread(
            plan_round, search, memory, office, services, tickets, now, time_limit_s=self._settings.round_time_limit_s
        )
        ROUND_SECONDS.observe(result.seconds)
        if result.method == "greedy":
            ROUND_FALLBACKS.inc()
            log.warning("round decided by the greedy", office_code=office_code, reason=result.fallback_reason)
        if self._settings.round_crash_after_solve:  # tests: a runner killed between solve and write
            os.kill(os.getpid(), signal.SIGKILL)
        return {
            "now": now.isoformat(),
            "placements": [
                {
                    "ticket_id": str(p.ticket_id),
                    "starts_at": p.proposal.starts_at.isoformat(),
                    "ends_at": p.proposal.ends_at.isoformat(),
                    "officer_ids": list(p.proposal.officer_ids),
                    "in_window": p.proposal.in_preferred_window,
                }
                for p in result.placements
            ],
            "method": result.method,
            "fallback_reason": result.fallback_reason,
            "windows": result.windows_honoured,
            "seconds": result.seconds,
            "tickets": len(tickets),
        }

    async def succeeded(self, uow: UnitOfWork, job: Job, result: JsonObject) -> None:
        if result.get("done"):
            return
        planned = {
            uuid.UUID(p["ticket_id"]): Proposal(
                starts_at=datetime.fromisoformat(p["starts_at"]),
                ends_at=datetime.fromisoformat(p["ends_at"]),
                officer_ids=tuple(p["officer_ids"]),
                in_preferred_window=p["in_window"],
            )
            for p in result["placements"]
        }
        figures = store.RoundFigures(
            tickets=int(result.get("tickets", 0)),
            placed=len(planned),
            windows_honoured=int(result["windows"]),
            method=str(result["method"]),
            fallback_reason=result.get("fallback_reason"),
            solve_seconds=float(result["seconds"]),
        )
        messages = await self._use_case.decide_round(
            uow.conn,
            job.payload["office_code"],
            datetime.fromisoformat(job.payload["round_at"]),
            planned,
            figures,
            datetime.fromisoformat(result["now"]),
        )
        uow.publish_messages(messages)
