"""The stacked model: k members' equal networks computed side by side as one module.

Every member's network is built as ``train()`` builds it and its weights are copied in, so each
member starts from its single trial's very weights. Linear layers become batched matmuls (weights
``(k, in, out)``); convolutions become one grouped convolution over the members' channels (input
``(B, k*C, H, W)``, ``groups=k``), and a BatchNorm over those ``k*C`` channels is exactly
per-member BatchNorm (statistics are per channel). ReLU, pooling and dropout work per element or
per channel, so they need no change; dropout masks are drawn for the whole population, so with
``dropout > 0`` members do not reproduce their single trials (the statistics are the same). mlp,
cnn and resnet are supported. All members' parameters live in one ``ParameterStore``.

Members can leave (``StackedModel.keep``): the stack shrinks to the others, whose parameters and
statistics are kept as they are, so a member that stopped costs nothing from then on.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from hypersearch.objectives.trainer.models import BasicBlock

__all__ = ["ParameterStore", "StackedBatchNorm", "StackedModel"]


class ParameterStore:
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
        """Join the registered parameters into the one leaf tensor, on the training device."""
        self.flat = torch.cat(self._pending, 1).to(device, dtype).requires_grad_()
        self._pending = []

    def keep(self, rows: list[int]) -> None:
        """Only members ``rows`` (positions in the stack, in order) stay: a new, smaller leaf."""
        with torch.no_grad():
            self.flat = self.flat[rows].requires_grad_()
        self.k = len(rows)
        self._parts = []

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

    def __init__(self, layers: list[nn.Linear], store: ParameterStore) -> None:
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

    def __init__(self, convs: list[nn.Conv2d], store: ParameterStore) -> None:
        super().__init__()
        first = convs[0]
        if first.padding_mode != "zeros":
            raise ValueError(f"population training cannot stack padding_mode={first.padding_mode}")
        self.store = store
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.member_groups = first.groups  # one member's; the stack has store.k times as many
        self.weight_slot = store.add([conv.weight for conv in convs])
        self.bias_slot = None
        if first.bias is not None:
            self.bias_slot = store.add([_present(c.bias, "a bias in every member") for c in convs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.store[self.weight_slot].flatten(0, 1)
        bias = None if self.bias_slot is None else self.store[self.bias_slot].flatten()
        groups = self.member_groups * self.store.k
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)


class StackedBatchNorm(nn.Module):
    """k BatchNorms as one over k*C channels: statistics are per channel, so per member."""

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, norms: list[nn.BatchNorm2d], store: ParameterStore) -> None:
        super().__init__()
        first = norms[0]
        if not (first.affine and first.track_running_stats and first.momentum is not None):
            raise ValueError("population training needs affine BatchNorm with running stats")
        self.store, self.eps, self.momentum = store, first.eps, first.momentum
        self.weight_slot = store.add([norm.weight for norm in norms])
        self.bias_slot = store.add([norm.bias for norm in norms])
        means = [_present(n.running_mean, "BatchNorm running statistics") for n in norms]
        variances = [_present(n.running_var, "BatchNorm running statistics") for n in norms]
        self.register_buffer("running_mean", torch.stack(means))
        self.register_buffer("running_var", torch.stack(variances))

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

    def keep(self, rows: list[int]) -> None:
        """Only members ``rows``' running statistics stay (``StackedModel.keep``)."""
        self.running_mean = self.running_mean[rows]
        self.running_var = self.running_var[rows]


class _Flatten(nn.Module):
    """``nn.Flatten`` to the members' (k, B, features) layout."""

    def __init__(self, store: ParameterStore, conv: bool) -> None:
        super().__init__()
        self.store, self.conv = store, conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv:  # (B, k*C, H, W) -> (k, B, C*H*W)
            return x.reshape(x.shape[0], self.store.k, -1).transpose(0, 1)
        return x.flatten(2)  # (k, B, ...) -> (k, B, features)


class _Block(nn.Module):
    """k ``BasicBlock`` s: relu(body(x) + shortcut(x)), each part stacked."""

    def __init__(self, blocks: list[BasicBlock], store: ParameterStore, conv: bool) -> None:
        super().__init__()
        self.body = _stack([block.body for block in blocks], store, conv)
        self.shortcut = _stack([block.shortcut for block in blocks], store, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


# Modules without parameters that act per element or per channel: shared as they are.
_PER_CHANNEL = (nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Dropout, nn.Identity)


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _all(modules: list[nn.Module], kind: type[ModuleT]) -> list[ModuleT] | None:
    """``modules`` as a list of ``kind`` when the first is exactly one (then all are: the
    members' models have the same architecture), else None."""
    if type(modules[0]) is not kind:
        return None
    return [m for m in modules if isinstance(m, kind)]


def _stack(modules: list[nn.Module], store: ParameterStore, conv: bool) -> nn.Module:
    """One module computing ``modules`` (the members' equal-shaped layers) side by side."""
    first = modules[0]
    if (sequences := _all(modules, nn.Sequential)) is not None:
        return nn.Sequential(
            *(_stack([s[j] for s in sequences], store, conv) for j in range(len(sequences[0])))
        )
    if (blocks := _all(modules, BasicBlock)) is not None:
        return _Block(blocks, store, conv)
    if (linears := _all(modules, nn.Linear)) is not None:
        return _Linear(linears, store)
    if (convs := _all(modules, nn.Conv2d)) is not None:
        return _Conv(convs, store)
    if (norms := _all(modules, nn.BatchNorm2d)) is not None:
        return StackedBatchNorm(norms, store)
    if isinstance(first, nn.Flatten) and (first.start_dim, first.end_dim) == (1, -1):
        return _Flatten(store, conv)
    if type(first) in _PER_CHANNEL:
        return first
    raise ValueError(
        f"population training supports mlp, cnn and resnet (cannot stack {type(first).__name__})"
    )


def _present(tensor: torch.Tensor | None, what: str) -> torch.Tensor:
    if tensor is None:
        raise ValueError(f"population training needs {what}")
    return tensor


class StackedModel(nn.Module):
    """The stacked model: per-member inputs in, (k, B, n_classes) logits out."""

    def __init__(self, singles: list[nn.Module], store: ParameterStore, conv: bool) -> None:
        super().__init__()
        self.store = store
        self.body = _stack(singles, store, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.store.split()
        return self.body(x)

    def keep(self, rows: list[int]) -> None:
        """Only members ``rows`` (positions in the stack, in order) stay, as they are: every
        computation is per member, so the others compute from here what they would have
        computed with the leavers still there."""
        self.store.keep(rows)
        for module in self.modules():
            if isinstance(module, StackedBatchNorm):
                module.keep(rows)
