"""Train a population of trials as one stacked model: k members, one forward/backward per step.

Members share every setting except ``PER_MEMBER`` (``lr``, ``weight_decay``, ``momentum``,
``nesterov``) and their seeds; ``population_key`` says what must be equal. Member ``i`` computes
what ``train(members[i], data, seed=seeds[i])`` computes, only alongside the others:

* Model: every member's network is built exactly as ``train()`` builds it (``manual_seed(seed)``
  then ``build_model``), and its weights are copied into stacked tensors, so each member starts
  from its single trial's very weights. Linear layers become batched matmuls (weights
  ``(k, in, out)``); convolutions become one grouped convolution over the members' channels
  (input ``(B, k*C, H, W)``, ``groups=k``), and a BatchNorm over those ``k*C`` channels is exactly
  per-member BatchNorm (statistics are per channel). ReLU, pooling and dropout work per element
  or per channel, so they need no change; dropout masks are drawn for the whole population, so
  with ``dropout > 0`` members do not reproduce their single trials (the statistics are the same).
  mlp, cnn and resnet are supported.
* Data: each member has its own data stream: its own shuffle generator seeded like ``train()``'s
  and its own ``randperm`` per epoch, so member ``i`` sees the very mini-batches of its single
  trial. Shared mini-batches would be a little cheaper (no gather of ``k*B`` rows per step) but
  would break that equivalence and correlate the members' gradient noise, so differences between
  members would partly reflect a shared data order rather than their hyperparameters. The
  gather is cheap: 16 x 64 digits rows take ~15 µs on one CPU core, under 1% of an mlp step.
* Loss: the sum over members of each member's mean cross-entropy, so each member's gradient is its
  single-trial gradient (no member's loss scales another's).
* Optimizer: a vectorized ``torch.optim.SGD`` step (weight decay added to the gradient, momentum
  buffer started at the first gradient, dampening 0, Nesterov when set and momentum > 0) with
  per-member ``lr``, ``weight_decay`` and ``momentum``. All members' parameters live in one flat
  tensor, so a step is a dozen elementwise kernels whatever the depth. Each member's learning rate
  at each step is read from a real torch scheduler (``loop._scheduler``) on a dummy optimizer, so
  constant, cosine and one-cycle schedules give exactly the single trainer's values.
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
    prepare_device,
    seeded_model,
    training_flops,
)
from hypersearch.objectives.trainer.models import BasicBlock
from hypersearch.objectives.trainer.settings import PER_MEMBER, TrainerSpec, population_key

__all__ = ["PER_MEMBER", "population_key", "train_population"]

# Validation rows per member per evaluation batch (train() takes EVAL_BATCH). Fixed rather than
# EVAL_BATCH // k, so the evaluation's float32 sums do not depend on the population's size;
# k * 256 rows without saved activations take about what a training step takes.
EVAL_ROWS = EVAL_BATCH // 4


def train_population(
    members: list[TrainerSpec],
    data: Dataset,
    *,
    seeds: list[int],
    device: str,
    trial_dirs: list[Path | None] | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[dict[str, float] | TrialFailure]:
    """Train ``members`` together; per member, ``train()``'s metrics or its ``TrialFailure``.

    Raises ``ValueError`` when the members do not share ``population_key`` (or the lists differ
    in length), and torch's out-of-memory error like ``train()`` (simulated above
    ``HYPERSEARCH_SIMULATE_OOM_ABOVE_BATCH`` for the population's total batch, members × batch).
    """
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
    settings = members[0]
    dirs = list(trial_dirs) if trial_dirs is not None else [None] * k

    dev = prepare_device(settings, device, k)

    singles = [seeded_model(settings, data, seed) for seed in seeds]  # train()'s very weights
    n_params = float(sum(p.numel() for p in singles[0].parameters()))
    conv = settings.model != "mlp"
    store = _Store(k)
    model = _Population(singles, store, conv)
    store.finish(dev, dtype)
    model.to(dev, dtype)  # the buffers (BatchNorm running statistics); parameters are in store
    del singles

    x_train, y_train = data.x_train.to(dev, dtype), data.y_train.to(dev)
    x_valid, y_valid = data.x_valid.to(dev, dtype), data.y_valid.to(dev)
    micro, accum = settings.batch_size, settings.grad_accum
    steps_per_epoch = math.ceil(len(x_train) / (micro * accum))
    total_steps = steps_per_epoch * settings.epochs
    rates = _Rates(members, total_steps)
    optimizer = _SGD(store, members)
    autocast, torch_scaler = _autocast(dev, settings.amp)
    scaler = _Scaler(k, torch_scaler, dev) if torch_scaler is not None else None
    shuffles = [torch.Generator(device="cpu").manual_seed(seed % 2**63) for seed in seeds]
    loss_dtype = _loss_dtype(dtype)

    results: list[dict[str, float] | TrialFailure | None] = [None] * k
    alive = torch.ones(k, dtype=torch.bool, device=dev)
    histories: list[list[dict[str, float]]] = [[] for _ in range(k)]
    first_loss: list[float] | None = None
    first_loss_t: torch.Tensor | None = None

    def fail(i: int, message: str) -> None:
        results[i] = TrialFailure("non_finite", message)
        alive[i] = False
        with torch.no_grad():  # finite values from now on: nothing can turn NaN in a kernel
            store.flat[i] = 0
            optimizer.buffer[i] = 0
            for module in model.modules():
                if isinstance(module, _BatchNorm):
                    module.reset_member(i)

    started = time.perf_counter()
    for epoch in range(settings.epochs):
        model.train()
        orders = torch.stack([torch.randperm(len(x_train), generator=g) for g in shuffles]).to(dev)
        epoch_rates = rates.take(steps_per_epoch).to(dev, dtype)  # (steps, k)
        loss_sum, seen = torch.zeros(k, device=dev, dtype=loss_dtype), 0
        for step in range(steps_per_epoch):
            store.flat.grad = None
            batch = orders[:, step * micro * accum : (step + 1) * micro * accum]
            for chunk in batch.split(micro, dim=1):
                with autocast:
                    logits = model(_gather(x_train, chunk, conv))
                losses = F.cross_entropy(
                    logits.to(loss_dtype).flatten(0, 1), y_train[chunk].flatten(), reduction="none"
                )
                loss = losses.view(k, -1).mean(1)  # each member's mean, as train() takes it
                scaled = loss * (chunk.shape[1] / batch.shape[1])
                (scaler.scale(scaled) if scaler else scaled).sum().backward()
                loss_sum += loss.detach() * chunk.shape[1]
                seen += chunk.shape[1]
                if first_loss_t is None:
                    first_loss_t = loss.detach().clone()
            if step % CHECK_EVERY == CHECK_EVERY - 1:
                running = loss_sum.tolist()  # one sync, like train()'s check
                for i in _alive(results):
                    if not math.isfinite(running[i]):
                        fail(i, f"loss became {running[i]} at epoch {epoch + 1}, step {step + 1}")
                if not _alive(results):
                    break
            if scaler is not None:
                found_inf = scaler.unscale(store.flat.grad)
                stepping: torch.Tensor | None = alive & ~found_inf
                optimizer.step(epoch_rates[step], stepping)
                scaler.update(found_inf)
            else:  # the masks cost a few kernels: skipped while every member is alive
                stepping = None if len(_alive(results)) == k else alive
                optimizer.step(epoch_rates[step], stepping)
        if not _alive(results):
            break
        assert first_loss_t is not None
        if first_loss is None:
            first_loss = first_loss_t.tolist()
        train_losses = [total / seen for total in loss_sum.tolist()]
        val_losses, val_accuracies = _evaluate(model, x_valid, y_valid, autocast, k, conv, dtype)
        seconds = (time.perf_counter() - started) / k
        for i in _alive(results):
            histories[i].append(
                {
                    "epoch": epoch + 1,
                    "train_loss": train_losses[i],
                    "val_loss": val_losses[i],
                    "val_accuracy": val_accuracies[i],
                    "seconds": seconds,
                }
            )
            _write_history(dirs[i], histories[i])
            if (
                not math.isfinite(val_losses[i])
                or train_losses[i] > settings.divergence_factor * first_loss[i]
            ):
                fail(
                    i,
                    f"training diverged at epoch {epoch + 1} "
                    f"(train_loss {train_losses[i]:.4g}, first step "
                    f"{first_loss[i]:.4g}, val_loss {val_losses[i]:.4g})",
                )
        if not _alive(results):
            break

    seconds = (time.perf_counter() - started) / k
    peak_mb = torch.cuda.max_memory_allocated(dev) / 2**20 / k if dev.type == "cuda" else None
    for i in _alive(results):
        last = histories[i][-1]
        metrics = {
            "val_loss": last["val_loss"],
            "val_accuracy": last["val_accuracy"],
            "train_loss": last["train_loss"],
            "train_seconds": seconds,
            "train_flops": training_flops(settings, data, len(histories[i])),
            "epochs_run": float(len(histories[i])),
            "n_params": n_params,
            "used_batch_size": float(micro),
            "used_grad_accum": float(accum),
        }
        if peak_mb is not None:
            metrics["peak_memory_mb"] = peak_mb
        results[i] = metrics
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


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


class _Store:
    """Every member's parameters in one (k, P) leaf tensor, row i holding member i's.

    One tensor makes the optimizer step a dozen kernels whatever the depth, with per-member
    settings as (k, 1) columns. Each forward splits it into per-layer views (one autograd node,
    so backward writes one (k, P) gradient).
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.shapes: list[tuple[int, ...]] = []  # per slot: one member's shape
        self._pending: list[torch.Tensor] = []
        self.flat = torch.empty(0)
        self._parts: list[torch.Tensor] = []

    def add(self, tensors: list[torch.Tensor]) -> int:
        """Register one parameter (a tensor per member); returns its slot."""
        self._pending.append(torch.stack([t.detach() for t in tensors]).reshape(self.k, -1))
        self.shapes.append(tuple(tensors[0].shape))
        return len(self.shapes) - 1

    def finish(self, device: torch.device, dtype: torch.dtype) -> None:
        self.flat = torch.cat(self._pending, 1).to(device, dtype).requires_grad_()
        self._pending = []

    def split(self) -> None:
        """Views of this forward pass (call once per forward)."""
        sizes = [math.prod(shape) for shape in self.shapes]
        self._parts = [
            part.view(self.k, *shape)
            for part, shape in zip(self.flat.split(sizes, dim=1), self.shapes, strict=True)
        ]

    def __getitem__(self, slot: int) -> torch.Tensor:
        """Slot's parameter for all members: (k, *shape)."""
        return self._parts[slot]


class _Linear(nn.Module):
    """k linear layers as one batched matmul: (k, B, in) -> (k, B, out)."""

    def __init__(self, layers: list[nn.Linear], store: _Store) -> None:
        super().__init__()
        self.store = store
        self.weight_slot = store.add([layer.weight.t() for layer in layers])  # (in, out)
        self.bias_slot = (
            None if layers[0].bias is None else store.add([m.bias[None] for m in layers])
        )  # (1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias_slot is None:
            return torch.bmm(x, self.store[self.weight_slot])
        return torch.baddbmm(self.store[self.bias_slot], x, self.store[self.weight_slot])


class _Conv(nn.Module):
    """k convolutions as one grouped convolution over the members' channels."""

    def __init__(self, convs: list[nn.Conv2d], store: _Store) -> None:
        super().__init__()
        first = convs[0]
        if first.padding_mode != "zeros":
            raise ValueError(f"population training cannot stack padding_mode={first.padding_mode}")
        self.store = store
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.groups = first.groups * len(convs)
        self.weight_slot = store.add([conv.weight for conv in convs])
        self.bias_slot = None if first.bias is None else store.add([conv.bias for conv in convs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.store[self.weight_slot].flatten(0, 1)
        bias = None if self.bias_slot is None else self.store[self.bias_slot].flatten()
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class _BatchNorm(nn.Module):
    """k BatchNorms as one over k*C channels: statistics are per channel, so per member."""

    def __init__(self, norms: list[nn.BatchNorm2d], store: _Store) -> None:
        super().__init__()
        first = norms[0]
        if not (first.affine and first.track_running_stats and first.momentum is not None):
            raise ValueError("population training needs affine BatchNorm with running stats")
        self.store, self.eps, self.momentum = store, first.eps, first.momentum
        self.weight_slot = store.add([norm.weight for norm in norms])
        self.bias_slot = store.add([norm.bias for norm in norms])
        self.register_buffer("running_mean", torch.stack([n.running_mean for n in norms]))
        self.register_buffer("running_var", torch.stack([n.running_var for n in norms]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x,
            self.running_mean.view(-1),  # views: batch_norm updates the buffers in place
            self.running_var.view(-1),
            self.store[self.weight_slot].flatten(),
            self.store[self.bias_slot].flatten(),
            self.training,
            self.momentum,
            self.eps,
        )

    def reset_member(self, i: int) -> None:
        self.running_mean[i] = 0
        self.running_var[i] = 1


class _Flatten(nn.Module):
    """``nn.Flatten`` to the members' (k, B, features) layout."""

    def __init__(self, k: int, conv: bool) -> None:
        super().__init__()
        self.k, self.conv = k, conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv:  # (B, k*C, H, W) -> (k, B, C*H*W)
            return x.reshape(x.shape[0], self.k, -1).transpose(0, 1)
        return x.flatten(2)  # (k, B, ...) -> (k, B, features)


class _Block(nn.Module):
    """k ``BasicBlock`` s: relu(body(x) + shortcut(x)), each part stacked."""

    def __init__(self, blocks: list[BasicBlock], store: _Store, conv: bool) -> None:
        super().__init__()
        self.body = _stack([block.body for block in blocks], store, conv)
        self.shortcut = _stack([block.shortcut for block in blocks], store, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


# Modules without parameters that act per element or per channel: shared as they are.
_PER_CHANNEL = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity)


def _stack(modules: list[nn.Module], store: _Store, conv: bool) -> nn.Module:
    """One module computing ``modules`` (the members' equal-shaped layers) side by side."""
    first = modules[0]
    if type(first) is nn.Sequential:
        return nn.Sequential(
            *(_stack([m[j] for m in modules], store, conv) for j in range(len(first)))
        )
    if type(first) is BasicBlock:
        return _Block(modules, store, conv)  # type: ignore[arg-type]
    if type(first) is nn.Linear:
        return _Linear(modules, store)  # type: ignore[arg-type]
    if type(first) is nn.Conv2d:
        return _Conv(modules, store)  # type: ignore[arg-type]
    if type(first) is nn.BatchNorm2d:
        return _BatchNorm(modules, store)  # type: ignore[arg-type]
    if type(first) is nn.Flatten and (first.start_dim, first.end_dim) == (1, -1):
        return _Flatten(len(modules), conv)
    if type(first) in _PER_CHANNEL:
        return first
    raise ValueError(
        f"population training supports mlp, cnn and resnet (cannot stack {type(first).__name__})"
    )


class _Population(nn.Module):
    """The stacked model: per-member inputs in, (k, B, n_classes) logits out."""

    def __init__(self, singles: list[nn.Module], store: _Store, conv: bool) -> None:
        super().__init__()
        self.store = store
        self.body = _stack(singles, store, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.store.split()
        return self.body(x)


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


class _SGD:
    """``torch.optim.SGD``'s update for every member at once, settings as (k, 1) columns.

    The momentum buffer starts at zero rather than at the first gradient: ``0 * m + d`` is
    exactly ``d``, so the first step is SGD's bit for bit. ``mask`` (k,) leaves members out of
    a step (failed ones, or an fp16 overflow); ``torch.where`` keeps their NaN out of arithmetic.
    """

    def __init__(self, store: _Store, members: list[TrainerSpec]) -> None:
        self.flat = store.flat

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=self.flat.dtype, device=self.flat.device)[:, None]

        self.weight_decay = column([m.weight_decay for m in members])
        self.momentum = column([m.momentum for m in members])
        nesterov = [m.nesterov and m.momentum > 0 for m in members]
        self.nesterov = (
            torch.tensor(nesterov, device=self.flat.device)[:, None] if any(nesterov) else None
        )
        self.buffer = torch.zeros_like(self.flat, requires_grad=False)

    @torch.no_grad()
    def step(self, lr: torch.Tensor, mask: torch.Tensor | None) -> None:
        """One step with per-member rates ``lr`` (k,), for the members in ``mask`` (all: None)."""
        param, grad = self.flat, self.flat.grad
        assert grad is not None
        keep = None if mask is None else mask[:, None]
        if keep is not None:
            grad = torch.where(keep, grad, 0)
        grad = torch.addcmul(grad, self.weight_decay, param)  # SGD: d = g + wd * p
        buffer = torch.addcmul(grad, self.momentum, self.buffer)  # b = m * b + d
        if keep is not None:
            buffer = torch.where(keep, buffer, self.buffer)
        self.buffer = buffer
        direction = buffer
        if self.nesterov is not None:  # d + m * b where Nesterov, else b
            direction = torch.where(
                self.nesterov, torch.addcmul(grad, self.momentum, buffer), buffer
            )
        updated = torch.addcmul(param, lr[:, None], direction, value=-1)
        param.copy_(updated if keep is None else torch.where(keep, updated, param))


class _Scaler:
    """``torch.amp.GradScaler``'s dynamic loss scaling (fp16 on CUDA), one scale per member, so
    an overflow skips only that member's step (a shared scaler would skip everyone's)."""

    def __init__(self, k: int, template: torch.amp.GradScaler, device: torch.device) -> None:
        self.factor = torch.full((k,), template.get_scale(), dtype=torch.float32, device=device)
        self.tracker = torch.zeros(k, dtype=torch.int32, device=device)
        self.growth = template.get_growth_factor()
        self.backoff = template.get_backoff_factor()
        self.interval = template.get_growth_interval()

    def scale(self, losses: torch.Tensor) -> torch.Tensor:
        return losses * self.factor

    @torch.no_grad()
    def unscale(self, grad: torch.Tensor | None) -> torch.Tensor:
        """Divide each member's gradient (row) by its scale; returns who overflowed, (k,)."""
        assert grad is not None
        inverse = self.factor.double().reciprocal().float()  # as GradScaler computes it
        grad.mul_(inverse.to(grad.dtype)[:, None])
        return ~torch.isfinite(grad).all(1)

    @torch.no_grad()
    def update(self, found_inf: torch.Tensor) -> None:
        """Back off where a member overflowed; grow after ``interval`` clean steps in a row."""
        tracker = torch.where(found_inf, 0, self.tracker + 1)
        grown = self.factor * self.growth
        grow = (tracker == self.interval) & torch.isfinite(grown)
        self.factor = torch.where(
            found_inf, self.factor * self.backoff, torch.where(grow, grown, self.factor)
        )
        self.tracker = torch.where(tracker == self.interval, 0, tracker)
