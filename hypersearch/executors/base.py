"""Executors run trials: ``submit`` a request, ``poll`` for results, ``free_slots``, ``shutdown``.

A trial that fails, in any way, comes back as a ``TrialResult`` with state FAIL and a reason
(exception, timeout, worker_lost, oom, non_finite); it never stops the run.
"""

from __future__ import annotations

import abc
import contextlib
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypersearch.errors import TrialFailure, TrialPruned
from hypersearch.objectives.base import Objective, TrialContext, as_metrics
from hypersearch.processes import holding_trial_dir
from hypersearch.trials import (
    COMPLETE,
    FAIL,
    PRUNED,
    Channel,
    PopulationRequest,
    Report,
    TrialRequest,
    TrialResult,
)

__all__ = [
    "COMPLETE",
    "FAIL",
    "Executor",
    "PopulationRequest",
    "TrialRequest",
    "TrialResult",
    "execute",
]


def execute(
    objective: Objective,
    request: TrialRequest,
    device: str,
    enforce_timeout: bool = False,
    channel: Channel | None = None,
) -> TrialResult:
    """Run one trial (or population) in this process and turn whatever happens into a
    ``TrialResult``; its reports go out through ``channel``."""
    timeout = request.timeout if enforce_timeout else None
    start = time.perf_counter()
    members = request.members if isinstance(request, PopulationRequest) else (request,)
    ctx = TrialContext(
        request.number,
        request.seed,
        device,
        request.trial_dir,
        timeout,
        request.overrides,
        channel,
    )
    try:
        with _alarm(timeout), contextlib.ExitStack() as held:
            for member in members:  # a trial's folder is never shared with a stray process
                held.enter_context(holding_trial_dir(member.trial_dir))
            if isinstance(request, PopulationRequest):
                return _population(objective, request, device, start, channel)
            metrics = as_metrics(objective.evaluate(request.config, ctx), "objective")
    except TrialPruned:
        return _pruned(ctx, None, device, time.perf_counter() - start)
    except TrialFailure as failure:
        return TrialResult.failed(
            request,
            failure.reason,
            str(failure),
            device=device,
            duration_s=time.perf_counter() - start,
        )
    except (Exception, SystemExit) as exc:  # sys.exit() in user code ends the trial, not the run
        reason = "oom" if type(exc).__name__ == "OutOfMemoryError" else "exception"
        return TrialResult.failed(
            request,
            reason,
            f"{type(exc).__name__}: {exc}",
            device=device,
            duration_s=time.perf_counter() - start,
            traceback=traceback.format_exc(limit=-8),
        )
    if ctx.should_stop():  # it returned its latest metrics after the scheduler stopped it
        return _pruned(ctx, metrics, device, time.perf_counter() - start)
    step = ctx.reports[-1].step if ctx.reports else None
    return TrialResult(
        request.number,
        COMPLETE,
        metrics,
        duration_s=time.perf_counter() - start,
        device=device,
        step=step,
    )


def _pruned(
    ctx: TrialContext, metrics: dict[str, float] | None, device: str, duration_s: float
) -> TrialResult:
    """A trial the scheduler stopped (or that gave up itself): its metrics (else the last
    reported ones) and the step it reached."""
    last = ctx.reports[-1] if ctx.reports else None
    if metrics is None:
        metrics = dict(last.metrics) if last is not None else {}
    step = None if last is None else last.step
    reason = f"stopped at step {step}" if step is not None else "stopped before any report"
    return TrialResult(
        ctx.number,
        PRUNED,
        metrics,
        error=reason,
        reason="pruned",
        duration_s=duration_s,
        device=device,
        step=step,
    )


def _population(
    objective: Objective,
    request: PopulationRequest,
    device: str,
    start: float,
    channel: Channel | None,
) -> TrialResult:
    """Train the members together; a member's failure fails only that member, and its
    duration is its share of the population's time, by the steps it trained (one that left
    early cost less). Members report each on their own; one the scheduler stopped is PRUNED,
    as a stopped single trial is."""
    contexts = [
        TrialContext(m.number, m.seed, device, m.trial_dir, None, m.overrides, channel)
        for m in request.members
    ]
    outcomes = objective.evaluate_population([m.config for m in request.members], contexts)
    weights = [max(len(ctx.reports), 1) for ctx in contexts]
    per_weight = (time.perf_counter() - start) / sum(weights)
    members = []
    for member, ctx, outcome, weight in zip(
        request.members, contexts, outcomes, weights, strict=True
    ):
        share = per_weight * weight
        try:
            if isinstance(outcome, TrialFailure):
                raise outcome
            metrics = as_metrics(outcome, "objective")
        except TrialFailure as failure:
            members.append(
                TrialResult.failed(
                    member, failure.reason, str(failure), device=device, duration_s=share
                )
            )
            continue
        if ctx.should_stop():  # it left the population when the scheduler stopped it
            members.append(_pruned(ctx, metrics, device, share))
            continue
        step = ctx.reports[-1].step if ctx.reports else None
        members.append(
            TrialResult(
                member.number, COMPLETE, metrics, duration_s=share, device=device, step=step
            )
        )
    return TrialResult(
        request.number,
        COMPLETE,
        duration_s=time.perf_counter() - start,
        device=device,
        members=tuple(members),
    )


@contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Interrupt an in-process trial after ``seconds`` (main thread only; SIGALRM)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TrialFailure("timeout", f"trial still running after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Executor(abc.ABC):
    """Runs trials somewhere; the engine keeps ``free_slots()`` of them busy. Trials' reports
    go to the ``listen``-er as they arrive; when it answers True the trial is told to stop
    (``ctx.should_stop()``; a command's process group gets SIGTERM)."""

    listener: Callable[[Report], bool] | None = None

    def listen(self, listener: Callable[[Report], bool] | None) -> None:
        """Hear every report (None: stop listening); the answer is whether the trial stops."""
        self.listener = listener

    def heard(self, report: Report) -> bool:
        """Pass a report on; whether its trial should stop."""
        return self.listener is not None and bool(self.listener(report))

    @abc.abstractmethod
    def submit(self, request: TrialRequest) -> int:
        """Start a trial; returns its handle (the trial number)."""

    @abc.abstractmethod
    def poll(self, timeout: float | None) -> list[TrialResult]:
        """Results finished since the last poll; waits up to ``timeout`` s for at least one."""

    @abc.abstractmethod
    def free_slots(self) -> int:
        """How many more trials can be submitted now."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop every worker; trials still running are abandoned (the store keeps them)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
