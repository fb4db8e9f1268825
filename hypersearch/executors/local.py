"""A pool of worker processes on this machine, one trial at a time each.

Workers are started with ``spawn`` (no forked driver state, CUDA-safe) and each leads its own
process group, so the driver can kill a trial together with every process it started. The driver
enforces ``trial_timeout`` by killing that group; a worker that dies for any reason fails its
trial with ``worker_lost`` and is replaced. Workers ignore Ctrl-C: the driver handles it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from hypersearch.executors.base import Executor, TrialRequest, TrialResult, execute
from hypersearch.objectives.command import kill_group

TIMEOUT_GRACE_S = 1.0


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    device: str
    request: TrialRequest | None = None
    started: float = 0.0


def _worker_main(conn: Connection, objective_spec: dict[str, Any], device: str) -> None:
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from hypersearch.experiment import ObjectiveSpec
    from hypersearch.objectives.base import build_objective

    objective = build_objective(ObjectiveSpec.model_validate(objective_spec))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        conn.send(execute(objective, request, device))


class LocalExecutor(Executor):
    def __init__(
        self,
        objective_spec: Any,
        parallel: int,
        devices: list[str] | None = None,
        env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self._spec = objective_spec.model_dump(mode="json")
        self._context = mp.get_context("spawn")
        devices = devices or ["cpu"]
        self._env = env or {}
        self._workers = [self._start(devices[i % len(devices)]) for i in range(parallel)]

    def _start(self, device: str) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(child, self._spec, device),
            daemon=True,
            name=f"hypersearch-worker-{device}",
        )
        saved = dict(os.environ)
        os.environ.update(self._env.get(device, {}))  # e.g. CUDA_VISIBLE_DEVICES, before import
        try:
            process.start()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        child.close()
        return _Worker(process, parent, device)

    def free_slots(self) -> int:
        return sum(w.request is None for w in self._workers)

    def submit(self, request: TrialRequest) -> int:
        worker = next(w for w in self._workers if w.request is None)
        worker.conn.send(request)
        worker.request, worker.started = request, time.monotonic()
        return request.number

    def poll(self, timeout: float | None) -> list[TrialResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            results = self._collect()
            busy = [w for w in self._workers if w.request is not None]
            now = time.monotonic()
            if results or not busy or (deadline is not None and now >= deadline):
                return results
            waits = [deadline - now] if deadline is not None else []
            waits += [
                w.started + w.request.timeout + TIMEOUT_GRACE_S - now
                for w in busy
                if w.request and w.request.timeout is not None
            ]
            handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
            wait(handles, timeout=max(0.0, min(waits)) if waits else None)

    def _collect(self) -> list[TrialResult]:
        results = []
        for i, worker in enumerate(self._workers):
            request = worker.request
            if request is None:
                continue
            elapsed = time.monotonic() - worker.started
            if worker.conn.poll():
                try:
                    results.append(worker.conn.recv())
                    worker.request = None
                    continue
                except (EOFError, OSError):
                    pass  # the worker died mid-send: handled as lost below
            if not worker.process.is_alive() or worker.conn.closed:
                code = worker.process.exitcode
                how = (
                    f"killed by {signal.Signals(-code).name}"
                    if code and code < 0
                    else f"exited with status {code}"
                )
                results.append(
                    TrialResult.failed(
                        request,
                        "worker_lost",
                        f"worker process {how}",
                        duration_s=elapsed,
                        device=worker.device,
                    )
                )
                self._replace(i)
            elif request.timeout is not None and elapsed > request.timeout + TIMEOUT_GRACE_S:
                results.append(
                    TrialResult.failed(
                        request,
                        "timeout",
                        f"trial still running after {request.timeout:g}s "
                        "(its process group was killed)",
                        duration_s=elapsed,
                        device=worker.device,
                    )
                )
                self._replace(i)
        return results

    def _replace(self, index: int) -> None:
        old = self._workers[index]
        self._kill(old)
        self._workers[index] = self._start(old.device)

    @staticmethod
    def _kill(worker: _Worker) -> None:
        kill_group(worker.process.pid)  # the worker and everything it started
        worker.process.join(timeout=5)
        worker.conn.close()

    def shutdown(self) -> None:
        for worker in self._workers:
            if worker.request is None and worker.process.is_alive():
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
        deadline = time.monotonic() + 2.0
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            self._kill(worker)
        self._workers = []
