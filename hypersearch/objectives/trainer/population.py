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
  zeroed and masked out of the epoch's remaining updates (``torch.where``, so NaN never enters
  arithmetic with others' values), then it leaves the stack, and the others go on undisturbed
  (bit for bit in the tests, float64 on the CPU; in float32 a kernel may round differently for
  another k, e.g. mkldnn's grouped convolution, by ~1e-7). Nothing else mixes members:
  matmuls, grouped convolutions and BatchNorm are per member, and the summed loss gives each
  member's loss a gradient of exactly 1.
  Between two checks a doomed member's NaN stays in its own rows for the same reason.
* Stopping: after each epoch every member reports as ``train()`` does (``epoch_done``, per
  member); one that is told to stop has its metrics of that epoch as its outcome (the executor
  records it PRUNED). Stopped and failed members leave the stack at the epoch's end (its rows
  of the parameters, momentum, BatchNorm statistics and loss scale go; ``StackedModel.keep``):
  masking them instead would still compute them, so a stop would save nothing. Since nothing
  mixes members, the others then compute what they would have with them. Training stops when
  no member is left.
* Mixed precision on CUDA follows ``train()`` (``loop._autocast``); where that needs a gradient
  scaler (fp16), each member has its own loss scale and skips its own steps on inf/NaN gradients,
  as ``torch.amp.GradScaler`` does for a single trial, so one member's overflow never skips others.
* Cost accounting: ``train_seconds`` (and the ``seconds`` of ``epochs.csv``) is a member's share
  of the population's wall time: each epoch's time divided by the members in the stack, summed
  over its epochs (members run at once, so no member's own time can be measured); on CUDA
  ``peak_memory_mb`` is the population's peak divided by k.
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
from torch.nn import functional as F

from hypersearch.errors import TrialFailure
from hypersearch.objectives.trainer.data import Dataset
from hypersearch.objectives.trainer.loop import (
    CHECK_EVERY,
    EpochDone,
    _autocast,
    _loss_dtype,
    _scheduler,
    _write_history,
    divergence,
    prepare_device,
    reported,
    seeded_model,
    trial_metrics,
)
from hypersearch.objectives.trainer.settings import PER_MEMBER, TrainerSpec, population_key
from hypersearch.objectives.trainer.stacked import ParameterStore, StackedBatchNorm, StackedModel
from hypersearch.objectives.trainer.stacked_data import evaluate_members, gather
from hypersearch.objectives.trainer.stacked_optim import MemberScaler, StackedSGD

__all__ = ["PER_MEMBER", "population_key", "train_population"]

Outcome = dict[str, float] | TrialFailure


def train_population(
    members: list[TrainerSpec],
    data: Dataset,
    *,
    seeds: list[int],
    device: str,
    trial_dirs: list[Path | None] | None = None,
    dtype: torch.dtype = torch.float32,
    epoch_done: list[EpochDone | None] | None = None,
) -> list[Outcome]:
    """Train ``members`` together; per member, ``train()``'s metrics or its ``TrialFailure``.

    ``epoch_done[i]`` hears member ``i``'s epochs as ``train()``'s ``epoch_done`` does; when it
    answers True, member ``i`` leaves the population there (its metrics so far are its
    outcome) and the others go on. Raises ``ValueError`` when the members do not share
    ``population_key`` (or the lists differ in length), and torch's out-of-memory error like
    ``train()`` (simulated above ``HYPERSEARCH_SIMULATE_OOM_ABOVE_BATCH`` for the population's
    total batch, members × batch).
    """
    _check_members(members, seeds, [trial_dirs, epoch_done])
    run = _Run(members, data, seeds, device, trial_dirs, dtype, epoch_done)
    for epoch in range(members[0].epochs):
        losses = run.train_epoch(epoch)
        if losses is None or not run.end_epoch(epoch, *losses):
            break  # every member has failed or was stopped
    return run.outcomes()


def _check_members(members: list[TrainerSpec], seeds: list[int], lists: list[Any]) -> None:
    """Refuse members that cannot share one stacked model, before any work is done."""
    k = len(members)
    if k == 0:
        raise ValueError("a population needs at least one member")
    if len(seeds) != k or any(other is not None and len(other) != k for other in lists):
        raise ValueError(f"{k} members need {k} seeds, trial_dirs and epoch_done")
    key = population_key(members[0])
    for i, member in enumerate(members[1:], 1):
        if population_key(member) != key:
            differ = sorted(n for n, v in dict(population_key(member)).items() if dict(key)[n] != v)
            raise ValueError(f"member {i} differs from member 0 in {', '.join(differ)}")


class _Run:
    """One population's training state: the stacked model and its optimizer, every member's data
    stream, and per member its history and outcome (``None`` while it trains). An object, so the
    phases of an epoch (steps, checks, evaluation) can each be a short method over shared state.

    Members are numbered as given (``i``); ``slots`` lists those still in the stack, in its
    order (member ``slots[j]`` is the stack's row ``j``). A member that fails mid-epoch is
    masked out until the epoch's end; then every member with an outcome leaves the stack."""

    def __init__(
        self,
        members: list[TrainerSpec],
        data: Dataset,
        seeds: list[int],
        device: str,
        trial_dirs: list[Path | None] | None,
        dtype: torch.dtype,
        epoch_done: list[EpochDone | None] | None,
    ) -> None:
        self.settings = settings = members[0]
        self.data, self.k, self.dtype = data, len(members), dtype
        self.slots = list(range(self.k))
        self.dirs = list(trial_dirs) if trial_dirs is not None else [None] * self.k
        self.epoch_done = list(epoch_done) if epoch_done is not None else [None] * self.k
        self.dev = dev = prepare_device(settings, device, self.k)
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
        self.scaler = MemberScaler(self.k, torch_scaler, dev) if torch_scaler is not None else None
        self.shuffles = [torch.Generator(device="cpu").manual_seed(s % 2**63) for s in seeds]
        self.loss_dtype = _loss_dtype(dtype)
        self.results: list[Outcome | None] = [None] * self.k
        self.alive = torch.ones(self.k, dtype=torch.bool, device=dev)  # per slot
        self.histories: list[list[dict[str, float]]] = [[] for _ in range(self.k)]
        self.first_loss: list[float] | None = None
        self.first_loss_t: torch.Tensor | None = None
        self.seconds = [0.0] * self.k  # each member's share of the time it trained
        self.clock = time.perf_counter()

    def train_epoch(self, epoch: int) -> tuple[torch.Tensor, int] | None:
        """One pass over each member's own shuffled data; returns the summed losses per slot and
        the rows each member saw, or None once every member has failed."""
        self.model.train()
        n, k = len(self.x_train), len(self.slots)
        orders = torch.stack([torch.randperm(n, generator=self.shuffles[i]) for i in self.slots])
        orders = orders.to(self.dev)
        epoch_rates = self.rates.take(self.steps_per_epoch)[:, self.slots]  # (steps, slots)
        epoch_rates = epoch_rates.to(self.dev, self.dtype)
        loss_sum, seen = torch.zeros(k, device=self.dev, dtype=self.loss_dtype), 0
        rows = self.micro * self.accum
        for step in range(self.steps_per_epoch):
            self.store.flat.grad = None
            batch = orders[:, step * rows : (step + 1) * rows]
            self._backward(batch, loss_sum)
            seen += batch.shape[1]
            if step % CHECK_EVERY == CHECK_EVERY - 1 and not self._check(loss_sum, epoch, step):
                return None
            self._step(epoch_rates[step])
        return (loss_sum, seen) if self._training() else None

    def _training(self) -> list[int]:
        """The members in the stack still training (no outcome yet)."""
        return [i for i in self.slots if self.results[i] is None]

    def _check(self, loss_sum: torch.Tensor, epoch: int, step: int) -> bool:
        """Fail the members whose running loss is no longer finite (one sync, like ``train()``'s
        check, hence only every ``CHECK_EVERY`` steps); returns whether any member is left."""
        running = loss_sum.tolist()
        for j, i in enumerate(self.slots):
            if self.results[i] is None and not math.isfinite(running[j]):
                self.fail(i, f"loss became {running[j]} at epoch {epoch + 1}, step {step + 1}")
        return bool(self._training())

    def _backward(self, batch: torch.Tensor, loss_sum: torch.Tensor) -> None:
        """Gradients of one step's rows, (slots, rows) indices, in micro-batches (gradient
        accumulation); adds each member's summed loss to ``loss_sum`` without a sync."""
        for chunk in batch.split(self.micro, dim=1):
            with self.autocast:
                logits = self.model(gather(self.x_train, chunk, self.conv))
            losses = F.cross_entropy(
                logits.to(self.loss_dtype).flatten(0, 1),
                self.y_train[chunk].flatten(),
                reduction="none",
            )
            loss = losses.view(len(self.slots), -1).mean(1)  # each member's mean, as train()'s
            scaled = loss * (chunk.shape[1] / batch.shape[1])
            (self.scaler.scale(scaled) if self.scaler else scaled).sum().backward()
            loss_sum += loss.detach() * chunk.shape[1]
            if self.first_loss_t is None:  # every member is in the stack still
                self.first_loss_t = loss.detach().clone()

    def _step(self, rates: torch.Tensor) -> None:
        """One SGD step for the members still training (under fp16, those without overflow)."""
        if self.scaler is not None:
            found_inf = self.scaler.unscale(self.store.flat.grad)
            self.optimizer.step(rates, self.alive & ~found_inf)
            self.scaler.update(found_inf)
        else:  # the masks cost a few kernels: skipped while every member is alive
            everyone = len(self._training()) == len(self.slots)
            self.optimizer.step(rates, None if everyone else self.alive)

    def end_epoch(self, epoch: int, loss_sum: torch.Tensor, seen: int) -> bool:
        """Evaluate, record each training member's epoch and fail those that diverged, as
        ``train()`` does; tell each the epoch (``epoch_done``), let those stopped and those
        failed leave; returns whether any member is still training."""
        assert self.first_loss_t is not None
        if self.first_loss is None:
            self.first_loss = self.first_loss_t.tolist()
        train_losses = [total / seen for total in loss_sum.tolist()]
        k = len(self.slots)
        val_losses, val_accuracies = evaluate_members(
            self.model, self.x_valid, self.y_valid, self.autocast, k, self.conv, self.dtype
        )
        now = time.perf_counter()
        share, self.clock = (now - self.clock) / k, now  # the epoch's time, split evenly
        for j, i in enumerate(self.slots):
            if self.results[i] is not None:
                continue  # failed in this epoch's steps
            self.seconds[i] += share
            entry = {
                "epoch": epoch + 1,
                "train_loss": train_losses[j],
                "val_loss": val_losses[j],
                "val_accuracy": val_accuracies[j],
                "seconds": self.seconds[i],
            }
            self.histories[i].append(entry)
            _write_history(self.dirs[i], self.histories[i])
            why = divergence(
                self.settings, epoch, entry["train_loss"], entry["val_loss"], self.first_loss[i]
            )
            if why is not None:
                self.fail(i, why)
            elif (done := self.epoch_done[i]) is not None and done(epoch + 1, reported(entry)):
                self.results[i] = self._metrics(i)  # stopped: what train() returns then
        self._leave()
        return bool(self.slots)

    def fail(self, i: int, message: str) -> None:
        """Member ``i`` fails alone: its slice is zeroed and masked out of the epoch's remaining
        updates; it leaves the stack at the epoch's end."""
        self.results[i] = TrialFailure("non_finite", message)
        j = self.slots.index(i)
        self.alive[j] = False
        with torch.no_grad():  # finite values from now on: nothing can turn NaN in a kernel
            self.store.flat[j] = 0
            self.optimizer.buffer[j] = 0
            for module in self.model.modules():
                if isinstance(module, StackedBatchNorm):
                    module.reset_member(j)

    def _leave(self) -> None:
        """Members with an outcome (stopped or failed) leave the stack, so that they cost
        nothing from now on; the others go on exactly as they would have with them."""
        stay = [j for j, i in enumerate(self.slots) if self.results[i] is None]
        if len(stay) == len(self.slots):
            return
        self.slots = [self.slots[j] for j in stay]
        if not stay:
            return
        self.model.keep(stay)
        self.optimizer.keep(stay, self.store.flat)
        if self.scaler is not None:
            self.scaler.keep(stay)
        self.alive = torch.ones(len(stay), dtype=torch.bool, device=self.dev)

    def _metrics(self, i: int) -> dict[str, float]:
        """Member ``i``'s metrics now, with its share of the time and of the peak memory
        (members run at once, so no member's own can be measured)."""
        peak_mb = None
        if self.dev.type == "cuda":
            peak_mb = torch.cuda.max_memory_allocated(self.dev) / 2**20 / self.k
        history = self.histories[i]
        return trial_metrics(
            self.settings, self.data, history, self.seconds[i], self.n_params, peak_mb
        )

    def outcomes(self) -> list[Outcome]:
        """Each member's failure, or its metrics (those still training: as they are now)."""
        return [self._metrics(i) if r is None else r for i, r in enumerate(self.results)]


def _stacked_model(
    settings: TrainerSpec, data: Dataset, seeds: list[int], conv: bool
) -> tuple[StackedModel, ParameterStore, float]:
    """The members' networks, each built as ``train()`` builds it, stacked; with one member's
    parameter count. The single networks are dropped once their weights are copied."""
    singles = [seeded_model(settings, data, seed) for seed in seeds]  # train()'s very weights
    n_params = float(sum(p.numel() for p in singles[0].parameters()))
    store = ParameterStore(len(seeds))
    return StackedModel(singles, store, conv), store, n_params


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
