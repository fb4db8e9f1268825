"""One training run: SGD with a schedule, per-epoch metrics, early stop on divergence.

Follows the habits of fastai's ``fit_one_cycle``: the one-cycle schedule warms up for 25% of the
steps from lr/25 and anneals to lr/1e4. Unlike fastai it does not cycle momentum, because
momentum is usually one of the tuned parameters. On CUDA it trains in mixed precision (bf16 where
the GPU supports it, else fp16 with a gradient scaler).
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hypersearch.errors import TrialFailure
from hypersearch.objectives.trainer.data import Dataset
from hypersearch.objectives.trainer.models import build_model, training_flops_per_sample
from hypersearch.objectives.trainer.settings import TrainerSpec

EVAL_BATCH = 1024
CHECK_EVERY = 10  # steps between checks for a NaN/inf loss (each check waits for the GPU)
# Testing aid: raise the real torch out-of-memory error when the batch is larger than this, so
# the out-of-memory ladder can be exercised on a machine without a GPU.
SIMULATE_OOM_ENV = "HYPERSEARCH_SIMULATE_OOM_ABOVE_BATCH"
# What a trial reports each epoch (``epoch_done``): one epoch's entry of epochs.csv, these keys.
REPORTED = ("train_loss", "val_loss", "val_accuracy")
# Hears a trial's epoch (counted from 1) and its REPORTED metrics; True stops the trial there.
EpochDone = Callable[[int, dict[str, float]], bool]


def _scheduler(
    settings: TrainerSpec, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=settings.lr,
            total_steps=total_steps,
            pct_start=0.25,
            div_factor=25.0,
            final_div_factor=1e4,
            cycle_momentum=False,
        )
    return None


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The dtype mixed precision computes in on ``device``: bf16 where the GPU has it, else fp16
    (with a gradient scaler); None for plain float32 (the CPU, or AMP off)."""
    if device.type != "cuda" or not enabled:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    """The autocast context and grad scaler for mixed precision (CUDA only)."""
    dtype = amp_dtype(device, enabled)
    if dtype is None:
        return torch.autocast(device.type, enabled=False), None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def _loss_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype logits are cast to for the loss: float32, or float64 for a float64 model."""
    return torch.promote_types(dtype, torch.float32)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast: Any,
    *,
    dtype: torch.dtype = torch.float32,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split (``dtype``: the model's)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), EVAL_BATCH):
        with autocast:
            logits = model(x[start : start + EVAL_BATCH]).to(_loss_dtype(dtype))
        target = y[start : start + EVAL_BATCH]
        loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        correct += int((logits.argmax(1) == target).sum())
    return loss_sum / len(x), correct / len(x)


def prepare_device(settings: TrainerSpec, device: str, members: int) -> torch.device:
    """The device, set up as the settings ask (cudnn autotuning, deterministic algorithms, a
    fresh peak-memory count). Raises the simulated out-of-memory error (``SIMULATE_OOM_ENV``)
    when a step's rows, ``members`` × batch size, exceed the test limit."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = not settings.deterministic
        torch.cuda.reset_peak_memory_stats(dev)
    if settings.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    limit = os.environ.get(SIMULATE_OOM_ENV)
    if limit is not None and members * settings.batch_size > int(limit):
        raise torch.cuda.OutOfMemoryError(
            f"CUDA out of memory (simulated: batch {members} x {settings.batch_size} > {limit})"
        )
    return dev


def training_flops(settings: TrainerSpec, data: Dataset, epochs: int) -> float:
    """``train_flops``: the operations of ``epochs`` passes over the training split, forward and
    backward, whatever the device, batch size, or population this trial trained in."""
    per_sample = training_flops_per_sample(
        settings.model, data.input_shape, data.n_classes, settings.width, settings.depth
    )
    return per_sample * len(data.x_train) * epochs


def seeded_model(settings: TrainerSpec, data: Dataset, seed: int) -> nn.Module:
    """The network a trial with ``seed`` starts from (the population trainer copies it)."""
    torch.manual_seed(seed % 2**63)
    return build_model(
        settings.model,
        data.input_shape,
        data.n_classes,
        settings.width,
        settings.depth,
        settings.dropout,
    )


def train(
    settings: TrainerSpec,
    data: Dataset,
    *,
    seed: int,
    device: str,
    trial_dir: Path | None = None,
    dtype: torch.dtype = torch.float32,
    epoch_done: EpochDone | None = None,
) -> dict[str, float]:
    """Train ``settings.model`` on ``data``; returns the trial's metrics.

    ``epoch_done(epoch, metrics)`` hears each epoch's ``train_loss``, ``val_loss`` and
    ``val_accuracy`` (epochs count from 1); when it answers True, training stops there and the
    metrics of the epochs run so far are returned (a scheduler stopped the trial).

    Raises ``TrialFailure("non_finite")`` when the loss becomes NaN/inf or exceeds
    ``divergence_factor`` times its first value, and lets torch's out-of-memory error through
    (the executor retries the trial with a smaller batch). ``dtype`` is the model's and the
    inputs' (float64 lets tests compare trainers tightly); the loss is taken in float32, or in
    float64 for a float64 model.
    """
    dev = prepare_device(settings, device, 1)
    model = seeded_model(settings, data, seed).to(dev, dtype)
    x_train, y_train = data.x_train.to(dev, dtype), data.y_train.to(dev)
    x_valid, y_valid = data.x_valid.to(dev, dtype), data.y_valid.to(dev)
    fit = Fit.create(settings, model, len(x_train), dev, dtype)
    shuffle = torch.Generator(device="cpu").manual_seed(seed % 2**63)

    history: list[dict[str, float]] = []
    first_loss: float | None = None
    started = time.perf_counter()
    for epoch in range(settings.epochs):
        train_loss, first_loss = _train_epoch(fit, x_train, y_train, shuffle, epoch, first_loss)
        val_loss, val_accuracy = evaluate(model, x_valid, y_valid, fit.autocast, dtype=dtype)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "seconds": time.perf_counter() - started,
            }
        )
        _write_history(trial_dir, history)
        why = divergence(settings, epoch, train_loss, val_loss, first_loss)
        if why is not None:
            raise TrialFailure("non_finite", why)
        if epoch_done is not None and epoch_done(epoch + 1, reported(history[-1])):
            break

    seconds = time.perf_counter() - started
    peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    n_params = float(sum(p.numel() for p in model.parameters()))
    return trial_metrics(settings, data, history, seconds, n_params, peak_mb)


@dataclass
class Fit:
    """What every step of one run uses (model, SGD and its schedule, mixed precision, batch
    layout), bundled so that an epoch (or lr-find's range test) trains each step as a trial
    does."""

    model: nn.Module
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    autocast: Any
    scaler: torch.amp.GradScaler | None
    device: torch.device
    loss_dtype: torch.dtype
    micro: int
    accum: int
    steps_per_epoch: int

    @classmethod
    def create(
        cls,
        settings: TrainerSpec,
        model: nn.Module,
        n_train: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> Fit:
        """``torch.optim.SGD`` as the settings ask, with its schedule over every step of the run."""
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
            nesterov=settings.nesterov and settings.momentum > 0,
        )
        micro, accum = settings.batch_size, settings.grad_accum
        steps_per_epoch = math.ceil(n_train / (micro * accum))
        scheduler = _scheduler(settings, optimizer, steps_per_epoch * settings.epochs)
        autocast, scaler = _autocast(device, settings.amp)
        return cls(
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            autocast=autocast,
            scaler=scaler,
            device=device,
            loss_dtype=_loss_dtype(dtype),
            micro=micro,
            accum=accum,
            steps_per_epoch=steps_per_epoch,
        )

    def backward(
        self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor
    ) -> Iterator[tuple[torch.Tensor, int]]:
        """Forward and backward of one optimizer step's ``rows`` in micro-batches (gradients
        accumulate, each weighted by its share of the rows); yields each micro-batch's mean loss
        (detached, on the device) and its size once its backward is done."""
        for chunk in rows.split(self.micro):
            with self.autocast:
                loss = nn.functional.cross_entropy(
                    self.model(x[chunk]).to(self.loss_dtype), y[chunk]
                )
            scaled = loss * (len(chunk) / len(rows))
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            yield loss.detach(), len(chunk)

    def step(self) -> None:
        """The optimizer's step (through the gradient scaler under fp16), then the schedule's."""
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()


def _train_epoch(
    fit: Fit,
    x: torch.Tensor,
    y: torch.Tensor,
    shuffle: torch.Generator,
    epoch: int,
    first_loss: float | None,
) -> tuple[float, float]:
    """One pass over the training split in a fresh shuffled order; returns the mean training
    loss and the run's first loss (taken on its very first micro-batch). The loss is summed on
    the device and checked only every ``CHECK_EVERY`` steps, since each check waits for it."""
    fit.model.train()
    order = torch.randperm(len(x), generator=shuffle).to(fit.device)
    rows = fit.micro * fit.accum
    loss_sum, seen = torch.zeros((), device=fit.device, dtype=fit.loss_dtype), 0
    for step in range(fit.steps_per_epoch):
        fit.optimizer.zero_grad(set_to_none=True)
        batch_indices = order[step * rows : (step + 1) * rows]
        for loss, size in fit.backward(x, y, batch_indices):
            loss_sum += loss * size
            seen += size
            if first_loss is None:
                first_loss = float(loss)
        if step % CHECK_EVERY == CHECK_EVERY - 1 and not torch.isfinite(loss_sum):
            raise TrialFailure(
                "non_finite",
                f"loss became {float(loss_sum)} at epoch {epoch + 1}, step {step + 1}",
            )
        fit.step()
    assert first_loss is not None
    return float(loss_sum) / seen, first_loss


def reported(entry: dict[str, float]) -> dict[str, float]:
    """What an epoch's entry of the history reports (``epoch_done``): ``REPORTED``."""
    return {name: entry[name] for name in REPORTED}


def divergence(
    settings: TrainerSpec, epoch: int, train_loss: float, val_loss: float, first_loss: float
) -> str | None:
    """Why a run counts as diverged after ``epoch`` (0-based), or None: a non-finite validation
    loss, or a training loss above ``divergence_factor`` times the first step's. Shared by
    ``train()`` and the population trainer, so both fail a trial for the same reason."""
    if not math.isfinite(val_loss) or train_loss > settings.divergence_factor * first_loss:
        return (
            f"training diverged at epoch {epoch + 1} "
            f"(train_loss {train_loss:.4g}, first step "
            f"{first_loss:.4g}, val_loss {val_loss:.4g})"
        )
    return None


def trial_metrics(
    settings: TrainerSpec,
    data: Dataset,
    history: list[dict[str, float]],
    seconds: float,
    n_params: float,
    peak_memory_mb: float | None,
) -> dict[str, float]:
    """A finished trial's metrics from its per-epoch history: the same keys in the same order
    whether it trained alone or in a population."""
    last = history[-1]
    metrics = {
        "val_loss": last["val_loss"],
        "val_accuracy": last["val_accuracy"],
        "train_loss": last["train_loss"],
        "train_seconds": seconds,
        "train_flops": training_flops(settings, data, len(history)),
        "epochs_run": float(len(history)),
        "n_params": n_params,
        "used_batch_size": float(settings.batch_size),
        "used_grad_accum": float(settings.grad_accum),
    }
    if peak_memory_mb is not None:
        metrics["peak_memory_mb"] = peak_memory_mb
    return metrics


def _write_history(trial_dir: Path | None, history: list[dict[str, float]]) -> None:
    """Per-epoch metrics to ``<trial_dir>/epochs.csv`` (rewritten each epoch)."""
    if trial_dir is None:
        return
    trial_dir.mkdir(parents=True, exist_ok=True)
    with (trial_dir / "epochs.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
