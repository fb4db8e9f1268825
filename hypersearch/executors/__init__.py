"""Executors: where trials run (in the driver, in local worker processes, on Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypersearch.errors import UserInputError
from hypersearch.executors.base import COMPLETE, FAIL, Executor, TrialRequest, TrialResult

if TYPE_CHECKING:
    from hypersearch.experiment import RaySpec

EXECUTORS = ("inline", "local", "ray")


def check_executor(kind: str, ray_address: str | None = None) -> None:
    """Reject an unknown executor, a missing Ray, ``--ray-address`` without Ray or with nothing
    answering there, before a run folder is created."""
    if kind not in EXECUTORS:
        raise UserInputError(
            f"--executor: unknown executor {kind!r} (choose from: {', '.join(EXECUTORS)})"
        )
    if ray_address is not None and kind != "ray":
        raise UserInputError(f"--ray-address: only used with --executor ray (got {kind!r})")
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserInputError(
                '--executor: ray is not installed (pip install "hypersearch[ray]")'
            ) from None
        if ray_address is not None:
            from hypersearch.executors.ray_cluster import check_address

            check_address(ray_address)


def make_executor(
    kind: str,
    objective_spec: Any,
    parallel: int,
    log_dir: Path | None = None,
    *,
    ray_address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    gpus: list[str] | None = None,
    trials_per_gpu: int = 1,
    ray_spec: RaySpec | None = None,
) -> Executor:
    """Build an executor by name (``--executor``); the Ray options (``ray_spec``: the
    experiment's ``ray:``) apply to ``ray`` only."""
    check_executor(kind, ray_address)
    if kind == "inline":
        from hypersearch.executors.inline import InlineExecutor

        return InlineExecutor(objective_spec, parallel)
    if kind == "local":
        from hypersearch.devices import discover_gpus, plan_slots
        from hypersearch.executors.local import LocalExecutor

        found = discover_gpus() if gpus is None else gpus
        slots = plan_slots(found, trials_per_gpu, parallel=None if found else parallel)
        return LocalExecutor(objective_spec, slots=slots, log_dir=log_dir)
    from hypersearch.executors.ray import RayExecutor

    return RayExecutor(
        objective_spec,
        parallel,
        address=ray_address,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        log_dir=log_dir,
        ray_spec=ray_spec,
    )


__all__ = [
    "COMPLETE",
    "EXECUTORS",
    "FAIL",
    "Executor",
    "TrialRequest",
    "TrialResult",
    "check_executor",
    "make_executor",
]
