"""Train a population of trials as one stacked model: k members, one forward/backward per step.

Members share every setting except ``PER_MEMBER`` (``lr``, ``weight_decay``, ``momentum``,
``nesterov``) and their seeds; ``population_key`` says what must be equal. Member ``i`` computes
what ``train(members[i], data, seed=seeds[i])`` computes, only alongside the others:

* Model: every member's network is built exactly as ``train()`` builds it (``manual_seed(seed)``
  then ``build_model``) and stacked into one module (``stacked.py``: batched matmuls, grouped
  convolutions, per-member BatchNorm), so each member starts from its single trial's very weights.
* Data: each member has its own data stream: its own shuffle generator seeded like ``train()``'s
  and its own ``randperm`` per epoch, so member ``i`` sees the very mini-batches of its single
  trial. Shared mini-batches would be a little cheaper (no gather of ``k*B`` rows per step) but
  would break that equivalence and correlate the members' gradient noise, so differences between
  members would partly reflect a shared data order rather than their hyperparameters. The
  gather is cheap: 16 x 64 digits rows take ~15 µs on one CPU core, under 1% of an mlp step.
* Loss: the sum over members of each member's mean cross-entropy, so each member's gradient is its
  single-trial gradient (no member's loss scales another's).
* Optimizer (``stacked_optim.py``): a vectorized ``torch.optim.SGD`` step (weight decay added to
  the gradient, momentum buffer started at the first gradient, dampening 0, Nesterov when set and
  momentum > 0) with per-member ``lr``, ``weight_decay`` and ``momentum``. All members' parameters
  live in one flat tensor, so a step is a dozen elementwise kernels whatever the depth. Each
  member's learning rate at each step is read from a real torch scheduler (``loop._scheduler``) on
  a dummy optimizer, so constant, cosine and one-cycle schedules give exactly the single trainer's
  values.
* Divergence: checked as ``train()`` checks it (the running loss every ``CHECK_EVERY`` steps; at
  each epoch's end ``train_loss > divergence_factor * first_loss`` or a non-finite ``val_loss``).
  A member that fails gets ``TrialFailure("non_finite")`` with ``train()``'s message; its slice is
  zeroed and masked out of every later update (``torch.where``, so NaN never enters arithmetic
  with others' values), and the others go on undisturbed (bit for bit in the tests, float64 on
  the CPU; in float32 a kernel may round differently for another k, e.g. mkldnn's grouped
  convolution, by ~1e-7). Nothing else mixes members: matmuls, grouped convolutions and
  BatchNorm are per member, and the summed loss gives each member's loss a gradient of exactly 1.
  Between two checks a doomed member's NaN stays in its own rows for the same reason. When every
  member has failed, training stops.
* Mixed precision on CUDA follows ``train()`` (``loop._autocast``); where that needs a gradient
  scaler (fp16), each member has its own loss scale and skips its own steps on inf/NaN gradients,
  as ``torch.amp.GradScaler`` does for a single trial, so one member's overflow never skips others.
* Cost accounting: ``train_seconds`` (and the ``seconds`` of ``epochs.csv``) is the population's
  wall time divided by k, each member's share (members run at once, so no member's own time can
  be measured); on CUDA ``peak_memory_mb`` is the population's peak divided by k.
  ``train_flops`` counts a member's own operations, exactly what its trial alone reports: the
  cost objective to use when trials may be grouped.

Where it pays: on one CPU core 16 digits mlps train 3.5x faster as a population than as 16
trials (per-step overhead is shared), while small convnets gain nothing there (a grouped
convolution costs what the k single ones cost). Small models on a GPU are overhead-bound too.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hypersearch.errors import TrialFailure
from hypersearch.objectives.trainer.data import Dataset
from hypersearch.objectives.trainer.loop import (
    CHECK_EVERY,
    EVAL_BATCH,
    _autocast,
    _loss_dtype,
    _scheduler,
    _write_history,
    divergence,
    prepare_device,
    seeded_model,
    trial_metrics,
)
from hypersearch.objectives.trainer.settings import PER_MEMBER, TrainerSpec, population_key
from hypersearch.objectives.trainer.stacked import ParameterStore, StackedBatchNorm, StackedModel
from hypersearch.objectives.trainer.stacked_optim import MemberScaler, StackedSGD

__all__ = ["PER_MEMBER", "population_key", "train_population"]

# Validation rows per member per evaluation batch (train() takes EVAL_BATCH). Fixed rather than
# EVAL_BATCH // k, so the evaluation's float32 sums do not depend on the population's size;
# k * 256 rows without saved activations take about what a training step takes.
EVAL_ROWS = EVAL_BATCH // 4

Outcome = dict[str, float] | TrialFailure


def train_population(
    members: list[TrainerSpec],
    data: Dataset,
    *,
    seeds: list[int],
    device: str,
    trial_dirs: list[Path | None] | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[Outcome]:
    """Train ``members`` together; per member, ``train()``'s metrics or its ``TrialFailure``.

    Raises ``ValueError`` when the members do not share ``population_key`` (or the lists differ
    in length), and torch's out-of-memory error like ``train()`` (simulated above
    ``HYPERSEARCH_SIMULATE_OOM_ABOVE_BATCH`` for the population's total batch, members × batch).
    """
    _check_members(members, seeds, trial_dirs)
    run = _Run(members, data, seeds, device, trial_dirs, dtype)
    for epoch in range(members[0].epochs):
        losses = run.train_epoch(epoch)
        if losses is None or not run.end_epoch(epoch, *losses):
            break  # every member has failed
    return run.outcomes(data)


def _check_members(
    members: list[TrainerSpec], seeds: list[int], trial_dirs: list[Path | None] | None
) -> None:
    """Refuse members that cannot share one stacked model, before any work is done."""
    k = len(members)
    if k == 0:
        raise ValueError("a population needs at least one member")
    if len(seeds) != k or (trial_dirs is not None and len(trial_dirs) != k):
        raise ValueError(f"{k} members need {k} seeds and {k} trial_dirs")
    key = population_key(members[0])
    for i, member in enumerate(members[1:], 1):
        if population_key(member) != key:
            differ = sorted(n for n, v in dict(population_key(member)).items() if dict(key)[n] != v)
            raise ValueError(f"member {i} differs from member 0 in {', '.join(differ)}")


class _Run:
    """One population's training state: the stacked model and its optimizer, every member's data
    stream, and per member its history and outcome (``None`` while it trains). An object, so the
    phases of an epoch (steps, checks, evaluation) can each be a short method over shared state."""

    def __init__(
        self,
        members: list[TrainerSpec],
        data: Dataset,
        seeds: list[int],
        device: str,
        trial_dirs: list[Path | None] | None,
        dtype: torch.dtype,
    ) -> None:
        self.settings = settings = members[0]
        self.k = k = len(members)
        self.dtype = dtype
        self.dirs = list(trial_dirs) if trial_dirs is not None else [None] * k
        self.dev = dev = prepare_device(settings, device, k)
        self.conv = settings.model != "mlp"
        self.model, self.store, self.n_params = _stacked_model(settings, data, seeds, self.conv)
        self.store.finish(dev, dtype)
        self.model.to(dev, dtype)  # the buffers (BatchNorm running statistics); parameters: store
        self.x_train, self.y_train = data.x_train.to(dev, dtype), data.y_train.to(dev)
        self.x_valid, self.y_valid = data.x_valid.to(dev, dtype), data.y_valid.to(dev)
        self.micro, self.accum = settings.batch_size, settings.grad_accum
        self.steps_per_epoch = math.ceil(len(self.x_train) / (self.micro * self.accum))
        self.rates = _Rates(members, self.steps_per_epoch * settings.epochs)
        self.optimizer = StackedSGD(self.store, members)
        self.autocast, torch_scaler = _autocast(dev, settings.amp)
        self.scaler = MemberScaler(k, torch_scaler, dev) if torch_scaler is not None else None
        self.shuffles = [torch.Generator(device="cpu").manual_seed(s % 2**63) for s in seeds]
        self.loss_dtype = _loss_dtype(dtype)
        self.results: list[Outcome | None] = [None] * k
        self.alive = torch.ones(k, dtype=torch.bool, device=dev)
        self.histories: list[list[dict[str, float]]] = [[] for _ in range(k)]
        self.first_loss: list[float] | None = None
        self.first_loss_t: torch.Tensor | None = None
        self.started = time.perf_counter()

    def train_epoch(self, epoch: int) -> tuple[torch.Tensor, int] | None:
        """One pass over each member's own shuffled data; returns the summed losses (k,) and the
        rows each member saw, or None once every member has failed."""
        self.model.train()
        n = len(self.x_train)
        orders = torch.stack([torch.randperm(n, generator=g) for g in self.shuffles]).to(self.dev)
        epoch_rates = self.rates.take(self.steps_per_epoch).to(self.dev, self.dtype)  # (steps, k)
        loss_sum, seen = torch.zeros(self.k, device=self.dev, dtype=self.loss_dtype), 0
        rows = self.micro * self.accum
        for step in range(self.steps_per_epoch):
            self.store.flat.grad = None
            batch = orders[:, step * rows : (step + 1) * rows]
            self._backward(batch, loss_sum)
            seen += batch.shape[1]
            if step % CHECK_EVERY == CHECK_EVERY - 1 and not self._check(loss_sum, epoch, step):
                return None
            self._step(epoch_rates[step])
        return (loss_sum, seen) if _alive(self.results) else None

    def _check(self, loss_sum: torch.Tensor, epoch: int, step: int) -> bool:
        """Fail the members whose running loss is no longer finite (one sync, like ``train()``'s
        check, hence only every ``CHECK_EVERY`` steps); returns whether any member is left."""
        running = loss_sum.tolist()
        for i in _alive(self.results):
            if not math.isfinite(running[i]):
                self.fail(i, f"loss became {running[i]} at epoch {epoch + 1}, step {step + 1}")
        return bool(_alive(self.results))

    def _backward(self, batch: torch.Tensor, loss_sum: torch.Tensor) -> None:
        """Gradients of one step's rows, (k, rows) indices, in micro-batches (gradient
        accumulation); adds each member's summed loss to ``loss_sum`` without a sync."""
        for chunk in batch.split(self.micro, dim=1):
            with self.autocast:
                logits = self.model(_gather(self.x_train, chunk, self.conv))
            losses = F.cross_entropy(
                logits.to(self.loss_dtype).flatten(0, 1),
                self.y_train[chunk].flatten(),
                reduction="none",
            )
            loss = losses.view(self.k, -1).mean(1)  # each member's mean, as train() takes it
            scaled = loss * (chunk.shape[1] / batch.shape[1])
            (self.scaler.scale(scaled) if self.scaler else scaled).sum().backward()
            loss_sum += loss.detach() * chunk.shape[1]
            if self.first_loss_t is None:
                self.first_loss_t = loss.detach().clone()

    def _step(self, rates: torch.Tensor) -> None:
        """One SGD step for the members still training (under fp16, those without overflow)."""
        if self.scaler is not None:
            found_inf = self.scaler.unscale(self.store.flat.grad)
            self.optimizer.step(rates, self.alive & ~found_inf)
            self.scaler.update(found_inf)
        else:  # the masks cost a few kernels: skipped while every member is alive
            everyone = len(_alive(self.results)) == self.k
            self.optimizer.step(rates, None if everyone else self.alive)

    def end_epoch(self, epoch: int, loss_sum: torch.Tensor, seen: int) -> bool:
        """Evaluate, record each living member's epoch and fail those that diverged, as
        ``train()`` does; returns whether any member is still training."""
        assert self.first_loss_t is not None
        if self.first_loss is None:
            self.first_loss = self.first_loss_t.tolist()
        train_losses = [total / seen for total in loss_sum.tolist()]
        val_losses, val_accuracies = _evaluate(
            self.model, self.x_valid, self.y_valid, self.autocast, self.k, self.conv, self.dtype
        )
        seconds = (time.perf_counter() - self.started) / self.k
        for i in _alive(self.results):
            self.histories[i].append(
                {
                    "epoch": epoch + 1,
                    "train_loss": train_losses[i],
                    "val_loss": val_losses[i],
                    "val_accuracy": val_accuracies[i],
                    "seconds": seconds,
                }
            )
            _write_history(self.dirs[i], self.histories[i])
            first = self.first_loss[i]
            why = divergence(self.settings, epoch, train_losses[i], val_losses[i], first)
            if why is not None:
                self.fail(i, why)
        return bool(_alive(self.results))

    def fail(self, i: int, message: str) -> None:
        """Member ``i`` fails alone: its slice is zeroed and masked out of every later update."""
        self.results[i] = TrialFailure("non_finite", message)
        self.alive[i] = False
        with torch.no_grad():  # finite values from now on: nothing can turn NaN in a kernel
            self.store.flat[i] = 0
            self.optimizer.buffer[i] = 0
            for module in self.model.modules():
                if isinstance(module, StackedBatchNorm):
                    module.reset_member(i)

    def outcomes(self, data: Dataset) -> list[Outcome]:
        """Each member's failure, or its metrics with its share of the population's time and
        peak memory (members run at once, so no member's own can be measured)."""
        seconds = (time.perf_counter() - self.started) / self.k
        peak_mb = None
        if self.dev.type == "cuda":
            peak_mb = torch.cuda.max_memory_allocated(self.dev) / 2**20 / self.k
        return [
            trial_metrics(self.settings, data, history, seconds, self.n_params, peak_mb)
            if result is None
            else result
            for result, history in zip(self.results, self.histories, strict=True)
        ]


def _stacked_model(
    settings: TrainerSpec, data: Dataset, seeds: list[int], conv: bool
) -> tuple[StackedModel, ParameterStore, float]:
    """The members' networks, each built as ``train()`` builds it, stacked; with one member's
    parameter count. The single networks are dropped once their weights are copied."""
    singles = [seeded_model(settings, data, seed) for seed in seeds]  # train()'s very weights
    n_params = float(sum(p.numel() for p in singles[0].parameters()))
    store = ParameterStore(len(seeds))
    return StackedModel(singles, store, conv), store, n_params


def _alive(results: list[Any]) -> list[int]:
    """Members still training (no result yet)."""
    return [i for i, r in enumerate(results) if r is None]


def _gather(x: torch.Tensor, index: torch.Tensor, conv: bool) -> torch.Tensor:
    """Each member's rows ``index`` (k, b) of ``x``: (k, b, ...), or (b, k*C, H, W) for convs."""
    k, b = index.shape
    if conv:  # sample j of member m lies in channels m*C .. (m+1)*C of row j
        return x.index_select(0, index.t().reshape(-1)).view(b, k * x.shape[1], *x.shape[2:])
    return x.index_select(0, index.reshape(-1)).view(k, b, *x.shape[1:])


@torch.no_grad()
def _evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast: Any,
    k: int,
    conv: bool,
    dtype: torch.dtype,
) -> tuple[list[float], list[float]]:
    """Each member's mean cross-entropy and accuracy over a whole split, like ``evaluate``."""
    model.eval()
    loss_sum = torch.zeros(k, dtype=torch.float64, device=x.device)
    correct = torch.zeros(k, dtype=torch.long, device=x.device)
    for start in range(0, len(x), EVAL_ROWS):
        rows, target = x[start : start + EVAL_ROWS], y[start : start + EVAL_ROWS].expand(k, -1)
        inputs = rows.repeat(1, k, 1, 1) if conv else rows.expand(k, *rows.shape)
        with autocast:
            logits = model(inputs).to(_loss_dtype(dtype))
        losses = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        loss_sum += losses.view(k, -1).sum(1).double()
        correct += (logits.argmax(2) == target).sum(1)
    return [v / len(x) for v in loss_sum.tolist()], [c / len(x) for c in correct.tolist()]


class _Rates:
    """Each member's learning rate step by step, read from a real torch scheduler per member
    (``loop._scheduler`` on a dummy optimizer), so they are the single trainer's exactly."""

    def __init__(self, members: list[TrainerSpec], total_steps: int) -> None:
        self.optimizers = [
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=m.lr) for m in members
        ]
        self.schedulers = [
            _scheduler(m, opt, total_steps) for m, opt in zip(members, self.optimizers, strict=True)
        ]
        for opt in self.optimizers:
            opt.step()  # no gradients, so no update; schedulers then see a stepped optimizer

    def take(self, steps: int) -> torch.Tensor:
        """The next ``steps`` steps' rates, (steps, k) float64."""
        rows = []
        for _ in range(steps):
            rows.append([opt.param_groups[0]["lr"] for opt in self.optimizers])
            for scheduler in self.schedulers:
                if scheduler is not None:
                    scheduler.step()
        return torch.tensor(rows, dtype=torch.float64)
