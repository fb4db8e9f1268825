"""The stacked model's inputs: each member's own rows in the stacked layout, for a training step
(``gather``) and for an evaluation over a whole split (``evaluate_members``, every member on the
same rows)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hypersearch.objectives.trainer.loop import EVAL_BATCH, _loss_dtype

__all__ = ["EVAL_ROWS", "evaluate_members", "gather"]

# Validation rows per member per evaluation batch (train() takes EVAL_BATCH). Fixed rather than
# EVAL_BATCH // k, so the evaluation's float32 sums do not depend on the population's size;
# k * 256 rows without saved activations take about what a training step takes.
EVAL_ROWS = EVAL_BATCH // 4


def gather(x: torch.Tensor, index: torch.Tensor, conv: bool) -> torch.Tensor:
    """Each member's rows ``index`` (k, b) of ``x``: (k, b, ...), or (b, k*C, H, W) for convs."""
    k, b = index.shape
    if conv:  # sample j of member m lies in channels m*C .. (m+1)*C of row j
        return x.index_select(0, index.t().reshape(-1)).view(b, k * x.shape[1], *x.shape[2:])
    return x.index_select(0, index.reshape(-1)).view(k, b, *x.shape[1:])


@torch.no_grad()
def evaluate_members(
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
