"""A service's typed router: which event types it handles, which it ignores on purpose.

At start the runtime checks the two lists against the topic registry: together
they must be exactly the event types on the topics the service consumes, so a
new event type can never fall through silently. Each message is handled with its
log context (event id, ticket id, trace id, type) bound once, here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog
from pydantic import BaseModel

from glv_runtime.consumer import Inbound
from glv_runtime.unit_of_work import UnitOfWork
from glv_schemas import Topic

BatchContext = TypeVar("BatchContext")
Handler = Callable[[UnitOfWork, BatchContext, Inbound], Awaitable[None]]


class RouterMismatch(RuntimeError):
    """The handled and ignored types do not match what the service's topics carry."""


class Router(Generic[BatchContext]):
    """Dispatches each message of a batch to the handler of its type.

    `prepare` loads what the whole batch needs once (e.g. the tickets it names);
    `finish` writes what the batch changed in set-based statements.
    """

    def __init__(
        self,
        service: str,
        *,
        prepare: Callable[[UnitOfWork, Sequence[Inbound]], Awaitable[BatchContext]],
        finish: Callable[[UnitOfWork, BatchContext], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self._prepare = prepare
        self._finish = finish
        self._handlers: dict[type[BaseModel], Handler[BatchContext]] = {}
        self._ignored: set[type[BaseModel]] = set()

    def on(self, *types: type[BaseModel]) -> Callable[[Handler[BatchContext]], Handler[BatchContext]]:
        def register(handler: Handler[BatchContext]) -> Handler[BatchContext]:
            for model in types:
                self.handle(model, handler)
            return handler

        return register

    def handle(self, model: type[BaseModel], handler: Handler[BatchContext]) -> Router[BatchContext]:
        if model in self._handlers or model in self._ignored:
            raise RouterMismatch(f"{self.service}: {model.__name__} is registered twice")
        self._handlers[model] = handler
        return self

    def ignore(self, *types: type[BaseModel]) -> Router[BatchContext]:
        for model in types:
            if model in self._handlers:
                raise RouterMismatch(f"{self.service}: {model.__name__} is both handled and ignored")
            self._ignored.add(model)
        return self

    def check(self, topics: Sequence[Topic]) -> None:
        """Handled plus ignored must equal the event types of the consumed topics.

        Types that no topic carries (a service's own decoder may produce one, like
        ticketing's InvalidFiling) are allowed among the handled ones.
        """
        carried = {model for topic in topics for model in topic.events}
        declared = set(self._handlers) | self._ignored
        missing = sorted(m.__name__ for m in carried - declared)
        stray = sorted(m.__name__ for m in self._ignored - carried)
        if missing or stray:
            raise RouterMismatch(
                f"{self.service}: event types neither handled nor ignored: {missing or 'none'}; "
                f"ignored types no consumed topic carries: {stray or 'none'}"
            )

    async def apply(self, uow: UnitOfWork, items: Sequence[Inbound]) -> None:
        """The service's Applier: prepare, dispatch each message in order, finish."""
        context = await self._prepare(uow, items)
        for item in items:
            handler = self._handlers.get(type(item.event))
            if handler is None:
                continue  # ignored on purpose (check() proved it is declared)
            ticket_id = getattr(item.event, "ticket_id", None)
            with structlog.contextvars.bound_contextvars(
                event_id=item.cloud_event.id,
                event_type=item.cloud_event.type,
                # The catalog's subject is an office code, not a ticket.
                **({"ticket_id": str(ticket_id)} if ticket_id is not None else {"subject": item.cloud_event.subject}),
                trace_id=item.cloud_event.trace_id,
            ):
                await handler(uow, context, item)
        if self._finish is not None:
            await self._finish(uow, context)
