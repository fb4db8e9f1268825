"""The built-in PyTorch trainer: ``objective: {trainer: {dataset: digits, model: cnn, …}}``.

Search-space parameters named like a tunable setting override it per trial; the trial runs on
the device its worker was given (``cuda`` when pinned to a GPU, else the CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hypersearch.errors import TrialFailure
from hypersearch.objectives.base import DispatchPolicy, Objective, TrialContext, register


@register("trainer")
class TrainerObjective(Objective):
    def settings(
        self, config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> Any:
        """The trial's settings: the experiment's, overridden by same-named parameters, then by
        what the executor forces (a smaller batch after an out-of-memory error)."""
        from hypersearch.objectives.trainer.settings import TUNABLE

        update = {k: v for k, v in config.items() if k in TUNABLE} | dict(overrides or {})
        return self.spec.model_copy(update=update)

    def dispatch_policy(self, population: int) -> DispatchPolicy:
        """Populations of compatible trials, and the out-of-memory batch ladder."""
        from hypersearch.objectives.trainer.policy import TrainerPolicy

        return TrainerPolicy(self.spec, self.settings, population)

    def evaluate(self, config: Mapping[str, Any], ctx: TrialContext) -> dict[str, float]:
        from hypersearch.objectives.trainer.loop import train

        settings = self.settings(config, ctx.overrides)
        return train(
            settings,
            load_data(settings),
            seed=ctx.seed,
            device=_device(ctx),
            trial_dir=ctx.trial_dir,
            epoch_done=_reporter(ctx),
        )

    def evaluate_population(
        self, configs: list[Mapping[str, Any]], contexts: list[TrialContext]
    ) -> list[dict[str, float] | TrialFailure]:
        """Train the configs as one stacked model (``population.py``); they must share
        ``settings.population_key`` (the engine groups them so). Each member reports on its
        own context and leaves the population when its trial is stopped."""
        from hypersearch.objectives.trainer.population import train_population

        members = [
            self.settings(c, ctx.overrides) for c, ctx in zip(configs, contexts, strict=True)
        ]
        data = load_data(members[0])
        device = _device(contexts[0])
        size = _members_that_fit(members[0], len(members)) if device == "cuda" else len(members)
        outcomes: list[dict[str, float] | TrialFailure] = []
        for start in range(0, len(members), size):  # in turn, when not all fit at once
            outcomes += train_population(
                members[start : start + size],
                data,
                seeds=[ctx.seed for ctx in contexts[start : start + size]],
                device=device,
                trial_dirs=[ctx.trial_dir for ctx in contexts[start : start + size]],
                epoch_done=[_reporter(ctx) for ctx in contexts[start : start + size]],
            )
        return outcomes


def _reporter(ctx: TrialContext) -> Callable[[int, dict[str, float]], bool]:
    """The trainer's ``epoch_done`` for a trial: report every epoch (step = epoch), stop when
    the scheduler says so."""

    def epoch_done(epoch: int, metrics: dict[str, float]) -> bool:
        ctx.report(epoch, metrics)
        return ctx.should_stop()

    return epoch_done


def _members_that_fit(settings: Any, wanted: int, headroom: float = 0.8) -> int:
    """How many members fit in the GPU's free memory, from a probe: one member trained for one
    step (and one evaluation) on one batch of data. Its peak is an upper bound per member (the
    data is shared), so this errs small; if it errs large, the population runs out of memory and
    the engine splits it."""
    import torch

    from hypersearch.objectives.trainer.population import train_population

    batch = settings.batch_size * settings.grad_accum
    probe = settings.model_copy(update={"epochs": 1, "max_train": batch})
    data = load_data(probe)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    train_population([probe], data, seeds=[0], device="cuda")
    per_member = max(torch.cuda.max_memory_allocated() - before, 1)
    free, _ = torch.cuda.mem_get_info()
    return max(1, min(wanted, int(headroom * free / per_member)))


def load_data(settings: Any) -> Any:
    """The dataset and split the settings name (loaded in the worker, cached on disk); public
    so that lr-find trains on exactly the data a trial trains on."""
    from hypersearch.objectives.trainer.data import load_dataset

    return load_dataset(
        settings.dataset,
        valid_fraction=settings.valid_fraction,
        split_seed=settings.split_seed,
        max_train=settings.max_train,
        cache_dir=settings.cache_dir,
    )


def _device(ctx: TrialContext) -> str:
    """``cuda`` for a worker pinned to a GPU that torch can use, else ``cpu``."""
    import torch

    return "cuda" if ctx.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
