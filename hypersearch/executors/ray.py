"""The Ray executor: trials as Ray tasks, on a local Ray instance or on a cluster.

Each trial is one Ray task asking for ``budget.cpus_per_trial`` CPUs and ``budget.gpus_per_trial``
GPUs (Ray pins its GPUs with ``CUDA_VISIBLE_DEVICES``). The task is a generator: it yields a start
acknowledgement once its worker holds the resources and has built the objective, then the
trial's ``TrialResult``. So, as with the local executor, ``trial_timeout`` counts from when the
trial starts, not while it waits for a worker or for free GPUs.

Failures read as they do with the local executor. The task runs ``execute`` with the timeout
enforced inside the worker (SIGALRM for Python objectives, Ray runs tasks on the worker's main
thread; the command objective kills its own process group), then kills whatever the timed-out
trial left in the worker's process group. The driver is the backstop: a trial still running
``TIMEOUT_GRACE_S`` after its timeout has its worker killed (``ray.cancel(force=True)``). A worker
that dies fails its trial with ``worker_lost``; one killed by Ray's memory monitor with ``oom``.

Reports and stops travel through a small actor (``ray_reports``): a trial's report waits there
for the driver's verdict, which the driver gives as it polls, as the local executor does.
Connecting to Ray (a cluster at ``--ray-address``, or a private local instance bound to
127.0.0.1 and stopped at the end) and the trials' ``runtime_env`` are ``ray_cluster``'s job.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import ray.exceptions

from hypersearch.executors.base import Executor, TrialRequest, TrialResult, execute

# LOCAL_OBJECT_STORE_BYTES, check_address and _laptop_mode: still importable from here
from hypersearch.executors.ray_cluster import (
    LOCAL_OBJECT_STORE_BYTES as LOCAL_OBJECT_STORE_BYTES,
)
from hypersearch.executors.ray_cluster import _laptop_mode as _laptop_mode
from hypersearch.executors.ray_cluster import check_address as check_address
from hypersearch.executors.ray_cluster import connect, runtime_env
from hypersearch.executors.ray_reports import BoardChannel, ReportRelay
from hypersearch.objectives.base import Objective
from hypersearch.processes import group_members, kill_all, kill_group

if TYPE_CHECKING:
    from hypersearch.experiment import RaySpec

STARTED = "started"
TIMEOUT_GRACE_S = 2.0  # the worker enforces the timeout itself; the driver kills it after this

# -- in the Ray worker -------------------------------------------------------------------------

_objectives: dict[str, Objective] = {}  # per worker process: spec JSON -> built objective


def _objective(spec_json: str) -> Objective:
    """Build the objective once per worker process (a reused worker skips imports and setup)."""
    if spec_json not in _objectives:
        from hypersearch.experiment import ObjectiveSpec
        from hypersearch.objectives import build_objective

        _objectives[spec_json] = build_objective(ObjectiveSpec.model_validate_json(spec_json))
    return _objectives[spec_json]


def _device() -> str:
    """``cuda:<id>`` for a task holding a GPU (visible to it as its only GPU), else ``cpu``."""
    ids = ray.get_gpu_ids()
    return f"cuda:{ids[0]}" if ids else "cpu"


def _lead_own_group() -> bool:
    """Make this worker lead its own process group (recent Ray already does), so what a trial
    starts can be told apart from Ray's processes; False if that is not possible."""
    with contextlib.suppress(OSError):
        if os.getpgid(0) != os.getpid():
            os.setpgid(0, 0)
    return os.getpgid(0) == os.getpid()


def _kill_group_members() -> None:
    """SIGKILL every other process in this worker's group: what a timed-out trial left running
    (the local executor kills the worker's group instead; a Ray worker stays for the next trial).
    """
    if _lead_own_group():
        kill_all(group_members(os.getpid(), besides=os.getpid()))


@contextlib.contextmanager
def _output_to(log_dir: str | None) -> Iterator[None]:
    """Send the trial's stdout and stderr to ``<log_dir>/ray-worker-<pid>.log`` (the local
    executor's worker logs) when this node sees that folder; else they stay in Ray's logs."""
    if log_dir is None or not os.path.isdir(log_dir):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(
        os.path.join(log_dir, f"ray-worker-{os.getpid()}.log"),
        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
        0o644,
    )
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _run_trial(
    spec_json: str, request: TrialRequest, log_dir: str | None, board: Any, attempt: int
) -> Iterator[Any]:
    """The Ray task: acknowledge the start, run the trial (its reports to ``board``, if any,
    as ``attempt``), clean up after a timeout."""
    device = _device()
    if device == "cpu":  # as the local executor's CPU workers: no GPU to pick up by accident
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    group = os.getpid() if _lead_own_group() else None
    try:
        objective = _objective(spec_json)
    except Exception as exc:  # e.g. the function's module is missing on this node
        yield TrialResult.failed(
            request, "exception", f"cannot build the objective: {exc}", device=device
        )
        return
    yield (STARTED, device, group, ray.get_runtime_context().get_node_id())
    channel = None if board is None else BoardChannel(board, attempt)
    with _output_to(log_dir):
        result = execute(objective, request, device, enforce_timeout=True, channel=channel)
    if result.reason == "timeout":
        _kill_group_members()
    elif result.reason == "oom":
        _objectives.pop(spec_json, None)  # rebuild it, rather than reuse what failed
    yield result


# -- in the driver -----------------------------------------------------------------------------


@dataclass
class _Trial:
    request: TrialRequest
    task: Any  # the task's ObjectRefGenerator
    submitted: float
    attempt: int  # its reports' key (a retry of the same trial is another attempt)
    started: float | None = None  # when its acknowledgement arrived
    device: str = "cpu"
    group: int | None = None  # its worker's process group, if the worker leads one
    node: str | None = None  # the Ray node it runs on

    def deadline(self) -> float:
        """When the trial is overdue. One not started yet waits for free resources as long as
        it takes (a cluster may be busy, or still adding nodes)."""
        if self.started is None or self.request.timeout is None:
            return math.inf
        return self.started + self.request.timeout + TIMEOUT_GRACE_S


class RayExecutor(Executor):
    """Keeps up to ``parallel`` trials in flight as Ray tasks."""

    def __init__(
        self,
        objective_spec: Any,
        parallel: int,
        *,
        address: str | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        log_dir: Path | None = None,
        ray_spec: RaySpec | None = None,
    ) -> None:
        """``ray_spec`` (the experiment's ``ray:``) sets the runtime environment of every trial;
        on a cluster (``address``) the python objective's own module is shipped too."""
        self._spec_json = objective_spec.model_dump_json()
        self._parallel = parallel
        self._log_dir = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            self._log_dir = str(log_dir.resolve())
        self._trials: dict[int, _Trial] = {}
        env = runtime_env(objective_spec, ray_spec, ship_objective=address is not None)
        self._connected = connect(address, parallel, cpus_per_trial, gpus_per_trial, env)
        self._node = ray.get_runtime_context().get_node_id()
        self._relay = ReportRelay(self._node)
        # A worker that ran a GPU trial is not reused (Ray's default for GPU tasks): its CUDA
        # context is tied to that GPU, and the next trial may be given another one.
        self._task = ray.remote(
            num_cpus=cpus_per_trial,
            num_gpus=gpus_per_trial,
            num_returns="streaming",
            max_retries=0,
            max_calls=1 if gpus_per_trial > 0 else 0,
        )(_run_trial)

    def free_slots(self) -> int:
        return self._parallel - len(self._trials)

    def submit(self, request: TrialRequest) -> int:
        """Start a trial; its reports go to the board while someone listens."""
        board = None if self.listener is None else self._relay.board()
        attempt = self._relay.attempt()
        task = self._task.remote(self._spec_json, request, self._log_dir, board, attempt)
        self._trials[request.number] = _Trial(request, task, time.monotonic(), attempt)
        return request.number

    def poll(self, timeout: float | None) -> list[TrialResult]:
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            results = self._collect()
            now = time.monotonic()
            if results or not self._trials or now >= deadline:
                return results
            wake = min(deadline, *(t.deadline() for t in self._trials.values()))
            ray.wait(  # wakes on a task's message, or on reports waiting for a verdict
                [*(t.task for t in self._trials.values()), *self._relay.waitables()],
                num_returns=1,
                timeout=None if wake == math.inf else max(0.0, wake - now),
            )

    def _collect(self) -> list[TrialResult]:
        """Judge the waiting reports; take what the tasks sent (acknowledgements, results,
        failures); fail overdue ones."""
        self._relay.relay({t.attempt for t in self._trials.values()}, self.heard)
        results = []
        while self._trials:
            tasks = [t.task for t in self._trials.values()]
            ready, _ = ray.wait(tasks, num_returns=len(tasks), timeout=0)
            if not ready:
                break
            ready_ids = {id(task) for task in ready}
            for trial in [t for t in self._trials.values() if id(t.task) in ready_ids]:
                result = self._receive(trial)
                if result is not None:
                    del self._trials[trial.request.number]
                    results.append(result)
        now = time.monotonic()
        for trial in [t for t in self._trials.values() if now > t.deadline()]:
            self._end(trial)
            del self._trials[trial.request.number]
            results.append(_overdue(trial, now))
        return results

    def _receive(self, trial: _Trial) -> TrialResult | None:
        """One message from a ready task: None for its acknowledgement, else its result."""
        try:
            message = ray.get(next(trial.task))
        except StopIteration:  # ended without a result (should not happen): treat as lost
            return _lost(trial, "the trial's Ray task ended without a result")
        except ray.exceptions.RayError as err:
            self._sweep(trial)  # what a dead worker started may still run
            return _from_ray_error(trial, err)
        if isinstance(message, tuple) and message[0] == STARTED:
            trial.started = time.monotonic()
            trial.device, trial.group, trial.node = message[1:4]
            return None
        return message

    def _end(self, trial: _Trial) -> None:
        """Kill a trial's worker (``force`` kills the process) and what it started."""
        ray.cancel(trial.task, force=True)
        self._sweep(trial)

    def _sweep(self, trial: _Trial) -> None:
        """Kill the process group of a trial's worker, if it ran on this machine. Recent Ray
        kills the group of a worker it kills or loses; older Ray leaves the orphans."""
        if trial.group is not None and trial.node == self._node:
            kill_group(trial.group)

    def shutdown(self) -> None:
        for trial in self._trials.values():
            with contextlib.suppress(Exception):
                self._end(trial)
        self._trials = {}
        self._relay.close()
        if self._connected:
            self._connected = False
            ray.shutdown()  # stops the local instance, or disconnects from the cluster


def _overdue(trial: _Trial, now: float) -> TrialResult:
    assert trial.started is not None and trial.request.timeout is not None
    return TrialResult.failed(
        trial.request,
        "timeout",
        f"trial still running after {trial.request.timeout:g}s (its Ray worker was killed)",
        duration_s=now - trial.started,
        device=trial.device,
    )


def _lost(trial: _Trial, error: str) -> TrialResult:
    duration_s = time.monotonic() - (trial.started or trial.submitted)
    return TrialResult.failed(
        trial.request, "worker_lost", error, duration_s=duration_s, device=trial.device
    )


def _from_ray_error(trial: _Trial, err: ray.exceptions.RayError) -> TrialResult:
    """A task that did not return a result: its worker died (or was killed for memory)."""
    first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
    reason = "oom" if isinstance(err, ray.exceptions.OutOfMemoryError) else "worker_lost"
    message = f"{type(err).__name__}: {first.strip()}"
    if isinstance(err, ray.exceptions.RayTaskError):  # raised outside execute(): a bug here
        reason, message = "exception", f"{type(err.cause).__name__}: {err.cause}"
    if isinstance(err, ray.exceptions.RuntimeEnvSetupError):  # the experiment's ray: settings
        reason = "exception"
    elapsed = time.monotonic() - (trial.started or trial.submitted)
    return TrialResult.failed(
        trial.request, reason, message, duration_s=elapsed, device=trial.device
    )
