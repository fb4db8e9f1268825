"""The optimizer side of the stacked model: ``torch.optim.SGD``'s update and
``torch.amp.GradScaler``'s loss scaling, applied to every member's row of the ``ParameterStore``
at once with per-member settings, so one member's failure or overflow never touches the others.
"""

from __future__ import annotations

import torch

from hypersearch.objectives.trainer.settings import TrainerSpec
from hypersearch.objectives.trainer.stacked import ParameterStore

__all__ = ["MemberScaler", "StackedSGD"]


class StackedSGD:
    """``torch.optim.SGD``'s update for every member at once, settings as (k, 1) columns.

    The momentum buffer starts at zero rather than at the first gradient: ``0 * m + d`` is
    exactly ``d``, so the first step is SGD's bit for bit. ``mask`` (k,) leaves members out of
    a step (failed ones, or an fp16 overflow); ``torch.where`` keeps their NaN out of arithmetic.
    """

    def __init__(self, store: ParameterStore, members: list[TrainerSpec]) -> None:
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

    def keep(self, rows: list[int], flat: torch.Tensor) -> None:
        """Only members ``rows`` stay, with their settings and momentum; ``flat``: the store's
        new parameters (``ParameterStore.keep``)."""
        self.flat, self.buffer = flat, self.buffer[rows]
        self.weight_decay, self.momentum = self.weight_decay[rows], self.momentum[rows]
        if self.nesterov is not None:
            self.nesterov = self.nesterov[rows]


class MemberScaler:
    """``torch.amp.GradScaler``'s dynamic loss scaling (fp16 on CUDA), one scale per member, so
    an overflow skips only that member's step (a shared scaler would skip everyone's)."""

    def __init__(self, k: int, template: torch.amp.GradScaler, device: torch.device) -> None:
        self.factor = torch.full((k,), template.get_scale(), dtype=torch.float32, device=device)
        self.tracker = torch.zeros(k, dtype=torch.int32, device=device)
        self.growth = template.get_growth_factor()
        self.backoff = template.get_backoff_factor()
        self.interval = template.get_growth_interval()

    def keep(self, rows: list[int]) -> None:
        """Only members ``rows`` stay, each with its scale and its count of clean steps."""
        self.factor, self.tracker = self.factor[rows], self.tracker[rows]

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
