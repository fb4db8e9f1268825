"""Run trials in the driver process, one at a time, in submission order: deterministic.

Up to ``parallel`` trials may be queued, so algorithms see the same batch sizes as with real
workers. Timeouts are enforced with SIGALRM (and by the command objective for its process).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hypersearch.executors.base import Executor, TrialRequest, TrialResult, execute
from hypersearch.objectives.base import build_objective


class InlineExecutor(Executor):
    def __init__(self, objective_spec: Any, parallel: int = 1) -> None:
        self.objective = build_objective(objective_spec)
        self.parallel = parallel
        self._queue: deque[TrialRequest] = deque()

    def submit(self, request: TrialRequest) -> int:
        self._queue.append(request)
        return request.number

    def poll(self, timeout: float | None) -> list[TrialResult]:
        if not self._queue:
            return []
        request = self._queue.popleft()
        return [execute(self.objective, request, "cpu", enforce_timeout=True)]

    def free_slots(self) -> int:
        return self.parallel - len(self._queue)

    def shutdown(self) -> None:
        self._queue.clear()
