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


def _autocast(device: torch.device, enabled: bool) -> tuple[Any, torch.amp.GradScaler | None]:
    """The autocast context and grad scaler for mixed precision (CUDA only)."""
    if device.type != "cuda" or not enabled:
        return torch.autocast(device.type, enabled=False), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


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
) -> dict[str, float]:
    """Train ``settings.model`` on ``data``; returns the trial's metrics.

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
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        nesterov=settings.nesterov and settings.momentum > 0,
    )
    micro, accum = settings.batch_size, settings.grad_accum
    steps_per_epoch = math.ceil(len(x_train) / (micro * accum))
    scheduler = _scheduler(settings, optimizer, steps_per_epoch * settings.epochs)
    autocast, scaler = _autocast(dev, settings.amp)
    shuffle = torch.Generator(device="cpu").manual_seed(seed % 2**63)

    history: list[dict[str, float]] = []
    first_loss: float | None = None
    started = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=shuffle).to(dev)
        # summed on the device: no per-step sync
        loss_sum, seen = torch.zeros((), device=dev, dtype=_loss_dtype(dtype)), 0
        for step in range(steps_per_epoch):
            optimizer.zero_grad(set_to_none=True)
            batch_indices = order[step * micro * accum : (step + 1) * micro * accum]
            for chunk in batch_indices.split(micro):
                with autocast:
                    loss = nn.functional.cross_entropy(
                        model(x_train[chunk]).to(_loss_dtype(dtype)), y_train[chunk]
                    )
                scaled = loss * (len(chunk) / len(batch_indices))
                (scaler.scale(scaled) if scaler else scaled).backward()
                loss_sum += loss.detach() * len(chunk)
                seen += len(chunk)
                if first_loss is None:
                    first_loss = float(loss.detach())
            if step % CHECK_EVERY == CHECK_EVERY - 1 and not torch.isfinite(loss_sum):
                raise TrialFailure(
                    "non_finite",
                    f"loss became {float(loss_sum)} at epoch {epoch + 1}, step {step + 1}",
                )
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
        train_loss = float(loss_sum) / seen
        val_loss, val_accuracy = evaluate(model, x_valid, y_valid, autocast, dtype=dtype)
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
        assert first_loss is not None
        if not math.isfinite(val_loss) or train_loss > settings.divergence_factor * first_loss:
            raise TrialFailure(
                "non_finite",
                f"training diverged at epoch {epoch + 1} "
                f"(train_loss {train_loss:.4g}, first step "
                f"{first_loss:.4g}, val_loss {val_loss:.4g})",
            )

    metrics = {
        "val_loss": val_loss,
        "val_accuracy": val_accuracy,
        "train_loss": train_loss,
        "train_seconds": time.perf_counter() - started,
        "train_flops": training_flops(settings, data, len(history)),
        "epochs_run": float(len(history)),
        "n_params": float(sum(p.numel() for p in model.parameters())),
        "used_batch_size": float(micro),
        "used_grad_accum": float(accum),
    }
    if dev.type == "cuda":
        metrics["peak_memory_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
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
