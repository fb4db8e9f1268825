"""The learning-rate range test itself (Smith 2015, sec. 3.3; fastai's ``lr_find``): one short
run of the built-in trainer whose learning rate grows exponentially each step from ``start`` to
``end``, recording each step's loss and its smoothed value, stopped once the smoothed loss passes
``STOP_FACTOR`` times its best (or the loss is no longer finite).

Every step is a trial's step: the same model built from the same seed, the same data and batch
layout (micro-batches and gradient accumulation), SGD with the trial's momentum, weight decay and
Nesterov setting, and the same mixed precision on CUDA (``loop.Fit``: bf16 autocast, or fp16 with
a gradient scaler). Only the schedule differs: ``torch.optim.lr_scheduler.ExponentialLR``.

Why not the ``torch-lr-finder`` package (its ``LRFinder.range_test`` does the same ramp): it keeps
only the smoothed loss (lr_find.csv has the raw one too), runs on through NaN (``nan > 4 * best``
is false), prints to stdout and draws a tqdm bar, wants a ``GradScaler`` whenever autocast is on
(the trainer's bf16 runs have none), and would train its own step rather than the trial's. Reusing
``loop.Fit`` keeps the test and a trial from drifting apart, with ~40 lines of loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hypersearch.errors import ExperimentError, HypersearchError, UserInputError
from hypersearch.objectives.trainer.data import Dataset
from hypersearch.objectives.trainer.loop import Fit, amp_dtype, prepare_device, seeded_model
from hypersearch.objectives.trainer.settings import TrainerSpec

STOP_FACTOR = 4.0  # fastai's: stop once the smoothed loss exceeds 4x its best
SMOOTHING = 0.05  # weight of each new loss in the moving average (torch-lr-finder's smooth_f)


@dataclass(frozen=True)
class Curve:
    """One range test: per step the learning rate used, the batch loss and its smoothed value
    (an exponential moving average, bias-corrected as fastai's), and why it stopped."""

    label: str
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    stopped: str


def range_test(
    settings: TrainerSpec,
    data: Dataset,
    *,
    seed: int,
    device: str,
    start: float,
    end: float,
    steps: int,
    label: str = "",
) -> Curve:
    """Train ``settings`` for up to ``steps`` steps with the learning rate going from ``start``
    to ``end`` geometrically (step ``i`` uses ``start * (end / start) ** (i / (steps - 1))``)."""
    dev = prepare_device(settings, device, 1)
    try:
        model = seeded_model(settings, data, seed).to(dev)
    except ValueError as err:  # build_model: a convnet for flat features
        raise ExperimentError("objective.trainer.model", str(err)) from None
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    constant = settings.model_copy(update={"lr": start, "schedule": "constant"})
    fit = Fit.create(constant, model, len(x), dev, torch.float32)
    gamma = (end / start) ** (1 / (steps - 1))
    fit.scheduler = torch.optim.lr_scheduler.ExponentialLR(fit.optimizer, gamma=gamma)
    shuffle = torch.Generator(device="cpu").manual_seed(seed % 2**63)  # as train() shuffles
    rows = fit.micro * fit.accum
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    order = torch.empty(0, dtype=torch.long)
    stopped = f"ran all {steps} steps"
    for step in range(steps):
        at = step % fit.steps_per_epoch
        if at == 0:  # a fresh shuffled pass over the training split, as each epoch of a trial
            fit.model.train()
            order = torch.randperm(len(x), generator=shuffle).to(dev)
        lrs.append(float(fit.optimizer.param_groups[0]["lr"]))
        fit.optimizer.zero_grad(set_to_none=True)
        parts = list(fit.backward(x, y, order[at * rows : (at + 1) * rows]))
        loss = float(sum(part * size for part, size in parts)) / sum(n for _, n in parts)
        fit.step()
        average = (1 - SMOOTHING) * average + SMOOTHING * loss
        smooth = average / (1 - (1 - SMOOTHING) ** (step + 1))
        losses.append(loss)
        smoothed.append(smooth)
        best = min(best, smooth)
        if not math.isfinite(smooth) or smooth > STOP_FACTOR * best:
            why = "not finite" if not math.isfinite(smooth) else f"above {STOP_FACTOR:g}x its best"
            stopped = (
                f"stopped at step {step + 1} of {steps} (lr {lrs[-1]:.3g}): smoothed loss {why}"
            )
            break
    return Curve(label, lrs, losses, smoothed, stopped)


def resolve_device(requested: str) -> str:
    """``auto``: CUDA when torch sees a GPU (as a trial's worker pinned to one), else the CPU."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device: cuda requested, but torch sees no GPU here")
    return requested


def precision(settings: TrainerSpec, device: str) -> str:
    """The arithmetic a trial uses on ``device``, in words (``loop.amp_dtype`` decides it)."""
    dtype = amp_dtype(torch.device(device), settings.amp)
    if dtype is None:
        return "float32"
    if dtype == torch.bfloat16:
        return "mixed precision, bf16"
    return "mixed precision, fp16 with a gradient scaler"


def range_tests(
    curves: list[tuple[str, TrainerSpec]],
    *,
    seed: int,
    device: str,
    ramp: tuple[float, float, int],
    done: Callable[[Curve], None] | None = None,
) -> list[Curve]:
    """One range test per (label, settings), each from the same initial weights (``seed``), on
    the data of the first (the curves differ only in tuned settings, never in data); ``done``
    hears each curve as it finishes."""
    from hypersearch.objectives.trainer import load_data

    start, end, steps = ramp
    data = load_data(curves[0][1])
    finished = []
    try:
        for label, settings in curves:
            finished.append(
                range_test(
                    settings,
                    data,
                    seed=seed,
                    device=device,
                    start=start,
                    end=end,
                    steps=steps,
                    label=label,
                )
            )
            if done is not None:
                done(finished[-1])
    except torch.cuda.OutOfMemoryError as err:
        raise HypersearchError(
            f"lr-find ran out of GPU memory at batch {curves[0][1].batch_size}: lower "
            f"objective.trainer.batch_size ({' '.join(str(err).split())[:120]})"
        ) from None
    return finished
