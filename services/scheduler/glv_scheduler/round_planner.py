"""Writing a round's decision: the optimizer's placements, each checked again against the
bookings as they are now (an immediate service may have taken an officer since), and the
greedy for every ticket the plan does not cover or can no longer have. Pure, like BatchPlanner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from glv_scheduler.assignment import BatchPlanner, InMemoryBusy, NewSlot, Placement, Proposal, SlotSearch, Want


class RoundPlanner(BatchPlanner):
    """Places wants the plan covers where the plan says (when still free), the others as the
    greedy would. `planned` is keyed by the id() of the Want objects handed to place_all."""

    def __init__(self, search: SlotSearch, busy: InMemoryBusy, planned: Mapping[int, Proposal]) -> None:
        super().__init__(search, busy)
        self._planned = dict(planned)

    async def _free(self, want: Want, proposal: Proposal) -> bool:
        held = proposal.occupied(want.request.service)
        # The day may not have been read for this batch (the plan chose it): read it first.
        await self.busy.prepare(list(proposal.officer_ids), *held)
        return all(self.busy.is_free(officer_id, *held) for officer_id in proposal.officer_ids)

    async def place_all(
        self, wants: Sequence[Want], *, stuck: Iterable[tuple[str, str]] = ()
    ) -> list[Placement | None]:
        """The plan's placements first (in the plan, a later filing may have a slot an earlier one
        has not: the optimizer decided), then the rest in order, first come first served."""
        placed: list[Placement | None] = [None] * len(wants)
        rest: list[int] = []
        for n, want in enumerate(wants):
            proposal = self._planned.get(id(want))
            if proposal is not None and await self._free(want, proposal):
                planned = NewSlot(self._new_slot_id(), proposal)
                self.apply(want, planned)
                placed[n] = planned
            else:
                rest.append(n)
        for n, found in zip(rest, await super().place_all([wants[n] for n in rest], stuck=stuck), strict=True):
            placed[n] = found
        return placed
