"""Run trials in the driver process, one at a time, in submission order: deterministic.

Up to ``parallel`` trials may be queued, so algorithms see the same batch sizes as with real
workers. Timeouts are enforced with SIGALRM (and by the command objective for its process);
the processes a timed-out trial started are killed with it.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from hypersearch.executors.base import Executor, TrialRequest, TrialResult, execute
from hypersearch.objectives import build_objective
from hypersearch.processes import descendants, kill_all
from hypersearch.trials import Report


class InlineExecutor(Executor):
    def __init__(self, objective_spec: Any, parallel: int = 1) -> None:
        self.objective = build_objective(objective_spec)
        self.parallel = parallel
        self._queue: deque[TrialRequest] = deque()
        self._stopped: set[int] = set()  # trials the listener stopped

    def report(self, report: Report) -> None:
        """The trial's channel: the listener judges each report as it is made."""
        if self.heard(report):
            self._stopped.add(report.number)

    def stopped(self, number: int) -> bool:
        return number in self._stopped

    def submit(self, request: TrialRequest) -> int:
        self._queue.append(request)
        return request.number

    def poll(self, timeout: float | None) -> list[TrialResult]:
        if not self._queue:
            return []
        request = self._queue.popleft()
        self._stopped.clear()  # stops were for earlier trials (maybe of an earlier run)
        before = descendants(os.getpid()) if request.timeout is not None else set()
        result = execute(self.objective, request, "cpu", enforce_timeout=True, channel=self)
        if result.reason == "timeout":  # what the trial started runs on without it: stop it
            kill_all(descendants(os.getpid()) - before)
        return [result]

    def free_slots(self) -> int:
        return self.parallel - len(self._queue)

    def shutdown(self) -> None:
        self._queue.clear()
