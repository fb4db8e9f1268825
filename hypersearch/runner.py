"""Everything between "run this trial" and "this trial finished", on the executor's side of
the engine (as SMAC's runner): the queue of trials waiting for a slot, grouping compatible
trials into populations, splitting a population that ran out of memory, and running a failed
attempt again when the objective's ``DispatchPolicy`` says so (the trainer's batch ladder).

The engine only submits trials and collects finished ones. A failure the policy wants retried
as a *new* trial (a lost worker) is reported with ``retry`` set: new trials are the engine's
to create. Reports reach the engine's ``listen``-er as the executor hears them (inside
``collect``); its answer goes back to the trial as a stop.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from hypersearch.executors.base import Executor
from hypersearch.objectives.base import DispatchPolicy
from hypersearch.trials import PopulationRequest, Report, TrialRequest, TrialResult


@dataclass(frozen=True)
class Finished:
    """A trial that is done: its request as submitted, its result, what its record adds
    (``oom_ladder``, ``population``, ``population_oom``, ``retry_of``) and whether the policy
    wants its config run again as a new trial."""

    request: TrialRequest
    result: TrialResult
    extra: dict[str, Any]
    retry: bool = False

    @property
    def number(self) -> int:
        return self.request.number


class Runner:
    """Keeps the executor's slots busy with the submitted trials."""

    def __init__(self, executor: Executor, policy: DispatchPolicy) -> None:
        self.executor, self.policy = executor, policy
        self.queue: deque[TrialRequest] = deque()
        self.running: dict[int, list[TrialRequest]] = {}  # handle -> the trial(s) it runs
        self.submitted: dict[int, TrialRequest] = {}  # number -> the request as submitted
        self.earlier: dict[int, list[TrialRequest]] = {}  # attempts that were run again
        self.caps: dict[int, int] = {}  # the largest population a trial may join
        self.splits: dict[int, list[int]] = {}  # population sizes that ran out of memory
        self.retry_of: dict[int, int] = {}  # a retry's number -> the trial it retries

    def listen(self, listener: Callable[[Report], bool] | None) -> None:
        """Hear every trial's reports; answering True stops that trial."""
        self.executor.listen(listener)

    def submit(self, request: TrialRequest, retry_of: int | None = None) -> None:
        self.queue.append(request)
        self.submitted[request.number] = request
        if retry_of is not None:
            self.retry_of[request.number] = retry_of

    def capacity(self) -> int:
        """How many more trials could start now (whole populations per free slot)."""
        return self.executor.free_slots() * self.policy.population - len(self.queue)

    def dispatch(self) -> bool:
        """Start queued trials on the free slots; whether any started."""
        groups = self._groups(self.executor.free_slots())
        for group in groups:
            for request in group:
                self.queue.remove(request)
            sent = group[0] if len(group) == 1 else PopulationRequest.of(group)
            self.executor.submit(sent)
            self.running[sent.number] = group
        return bool(groups)

    def collect(self, timeout: float) -> list[Finished]:
        """Wait up to ``timeout`` s for results; trials the policy runs again are requeued."""
        finished: list[Finished] = []
        for outcome in self.executor.poll(timeout):
            group = self.running.pop(outcome.number)
            if len(group) > 1 and not outcome.members:
                if outcome.reason == "oom":  # too big for the device: two halves, again
                    self._split(group)
                    continue
                results = [dataclasses.replace(outcome, number=r.number) for r in group]
            else:
                results = list(outcome.members) or [outcome]
            for request, result in zip(group, results, strict=True):
                done = self._settle(request, result, len(group))
                if done is not None:
                    finished.append(done)
        return finished

    def _settle(self, request: TrialRequest, result: TrialResult, size: int) -> Finished | None:
        """The attempt's outcome: run again under its number (None), or finished."""
        overrides = self.policy.run_again(request, result)
        if overrides is not None:
            self.earlier.setdefault(request.number, []).append(request)
            self.queue.appendleft(dataclasses.replace(request, overrides=overrides))
            return None
        earlier = self.earlier.pop(request.number, [])
        result, extra = self.policy.final(request, result, earlier)
        if request.number in self.splits:
            extra["population_oom"] = self.splits.pop(request.number)
        if size > 1:
            extra["population"] = size
        retry_of = self.retry_of.pop(request.number, None)
        if retry_of is not None:
            extra["retry_of"] = retry_of
        self.caps.pop(request.number, None)
        retry = retry_of is None and self.policy.retry_as_new_trial(result)
        return Finished(self.submitted.pop(request.number), result, extra, retry)

    def _split(self, group: list[TrialRequest]) -> None:
        half = (len(group) + 1) // 2
        for request in reversed(group):
            self.splits.setdefault(request.number, []).append(len(group))
            self.caps[request.number] = half
            self.queue.appendleft(request)

    def _groups(self, slots: int) -> list[list[TrialRequest]]:
        """At most ``slots`` groups of compatible trials, in queue order. Trials are spread
        evenly over the free slots (16 trials, 2 slots: two populations of 8), no group larger
        than the population or than the cap a split after running out of memory set."""
        items = list(self.queue)
        if self.policy.population == 1 or slots <= 0:
            return [[item] for item in items[:slots]]
        by_key: dict[Hashable, list[TrialRequest]] = {}
        for item in items:
            by_key.setdefault(self.policy.group_key(item), []).append(item)
        even = -(-len(items) // slots)
        groups = []
        for members in by_key.values():
            caps = [self.caps[m.number] for m in members if m.number in self.caps]
            size = min([self.policy.population, even, *caps])
            groups += [members[i : i + size] for i in range(0, len(members), size)]
        position = {id(item): i for i, item in enumerate(items)}
        return sorted(groups, key=lambda g: position[id(g[0])])[:slots]
