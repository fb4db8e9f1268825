"""A pool of worker processes on this machine, one trial at a time each.

Workers are fresh interpreters (``python -m hypersearch.executors.worker``: spawn semantics, no
forked driver state, CUDA-safe, and no re-run of the caller's ``__main__``), each leading its own
process group so the driver can kill a trial together with everything it started. The driver
enforces ``trial_timeout`` by killing that group; a worker that dies for any reason fails its
trial with ``worker_lost`` and is replaced. A worker's stdout and stderr go to
``<log_dir>/worker-<slot>.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from hypersearch.database import trial_environment
from hypersearch.devices import Slot, plan_slots
from hypersearch.executors.base import Executor, TrialRequest, TrialResult
from hypersearch.executors.worker import REPORT, STARTED, VERDICT
from hypersearch.processes import kill_group
from hypersearch.trials import Report

TIMEOUT_GRACE_S = 1.0
STARTUP_LIMIT_S = 300.0
# Workers run a little nicer than the driver, so that when trials fill every core the driver's
# short bursts (record a result, ask for the next point, dispatch it) are not queued behind them.
WORKER_NICE = 5  # a worker that cannot start a trial in this long counts as lost


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection
    device: str
    request: TrialRequest | None = None
    submitted: float = 0.0
    started: float | None = None  # when the worker acknowledged the request

    def deadline(self) -> float | None:
        """When the current trial is overdue (start-up limit first, then its timeout)."""
        if self.request is None:
            return None
        if self.started is None:
            return self.submitted + STARTUP_LIMIT_S
        if self.request.timeout is None:
            return None
        return self.started + self.request.timeout + TIMEOUT_GRACE_S


class LocalExecutor(Executor):
    def __init__(
        self,
        objective_spec: Any,
        parallel: int = 1,
        slots: list[Slot] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        """One worker per slot (``devices.plan_slots``); default ``parallel`` CPU workers."""
        self._spec = objective_spec.model_dump(mode="json")
        self._log_dir = log_dir
        self._slots = slots or plan_slots([], parallel=parallel)
        self._workers = [self._start(index) for index in range(len(self._slots))]

    def _start(self, index: int) -> _Worker:
        slot = self._slots[index]
        ours, theirs = socket.socketpair()
        log: Any = subprocess.DEVNULL
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            log = (self._log_dir / f"worker-{index}.log").open("ab")
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hypersearch.executors.worker",
                    str(theirs.fileno()),
                    slot.device,
                    str(os.getpid()),
                ],
                pass_fds=[theirs.fileno()],
                process_group=0,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**trial_environment(), **slot.env},
            )
        finally:
            theirs.close()
            if log is not subprocess.DEVNULL:
                log.close()
        with contextlib.suppress(OSError):  # workers yield the CPU to the driver: see WORKER_NICE
            os.setpriority(os.PRIO_PROCESS, process.pid, WORKER_NICE)
        conn = Connection(ours.detach())
        conn.send(self._spec)
        return _Worker(process, conn, slot.device)

    def free_slots(self) -> int:
        return sum(w.request is None for w in self._workers)

    def submit(self, request: TrialRequest) -> int:
        index = next(i for i, w in enumerate(self._workers) if w.request is None)
        try:
            self._workers[index].conn.send(request)
        except OSError:  # the idle worker died (e.g. the OOM killer): start another
            self._replace(index)
            self._workers[index].conn.send(request)
        worker = self._workers[index]
        worker.request, worker.submitted, worker.started = request, time.monotonic(), None
        return request.number

    def poll(self, timeout: float | None) -> list[TrialResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            results = self._collect()
            busy = [w for w in self._workers if w.request is not None]
            now = time.monotonic()
            if results or not busy or (deadline is not None and now >= deadline):
                return results
            waits = [d - now for d in [deadline, *(w.deadline() for w in busy)] if d is not None]
            # A dead worker's socket reads as EOF, so waiting on the sockets also wakes on death.
            wait([w.conn for w in busy], timeout=max(0.0, min(waits)) if waits else None)

    def _collect(self) -> list[TrialResult]:
        results = []
        for index, worker in enumerate(self._workers):
            if worker.request is None:
                continue
            result, lost = _receive(worker, self.heard)
            if result is not None and _cuda_error(result):
                self._replace(index)  # a CUDA error can leave the context broken: fresh worker
            if result is None:
                failure = _failure(worker, lost)
                if failure is None:
                    continue  # still running, in time
                elapsed = time.monotonic() - (worker.started or worker.submitted)
                result = TrialResult.failed(
                    worker.request, *failure, duration_s=elapsed, device=worker.device
                )
                self._replace(index)
            results.append(result)
        return results

    def _replace(self, index: int) -> None:
        self._kill(self._workers[index])
        self._workers[index] = self._start(index)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        kill_group(worker.process.pid)  # the worker and everything it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(timeout=5)
        worker.conn.close()

    def shutdown(self) -> None:
        for worker in self._workers:
            if worker.request is None:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
        deadline = time.monotonic() + 2.0
        for worker in self._workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._kill(worker)
        self._workers = []


def _receive(worker: _Worker, heard: Callable[[Report], bool]) -> tuple[TrialResult | None, bool]:
    """Read what the worker sent: its start acknowledgement, reports (each judged at once, the
    verdict sent back) and/or its result; (result, lost)."""
    while worker.conn.poll():
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return None, True  # its end of the socket closed: it died
        if message == STARTED:
            worker.started = time.monotonic()
        elif isinstance(message, tuple) and message[:1] == (REPORT,):
            _, seq, report = message
            stop = heard(report)
            with contextlib.suppress(OSError):  # a dead worker is found by the next read
                worker.conn.send((VERDICT, seq, report.number, stop))
        else:
            worker.request = None
            return message, False
    return None, False


def _failure(worker: _Worker, lost: bool) -> tuple[str, str] | None:
    """(reason, error) if the worker's trial is lost or overdue; None while it runs in time."""
    if lost or worker.process.poll() is not None:
        return "worker_lost", _how_it_ended(worker)
    deadline = worker.deadline()
    if deadline is None or time.monotonic() <= deadline:
        return None
    if worker.started is None:
        return "worker_lost", f"worker did not start the trial within {STARTUP_LIMIT_S:g}s"
    assert worker.request is not None and worker.request.timeout is not None
    return "timeout", (
        f"trial still running after {worker.request.timeout:g}s (its process group was killed)"
    )


def _cuda_error(result: TrialResult) -> bool:
    """Out of memory, or any CUDA error (device-side assert, illegal address, …)."""
    return result.reason == "oom" or "CUDA error" in (result.error or "")


def _how_it_ended(worker: _Worker) -> str:
    try:
        code = worker.process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        return "worker process closed its connection"
    if code < 0:
        return f"worker process was killed by {signal.Signals(-code).name}"
    return f"worker process exited with status {code}"
