"""The built-in networks: ``mlp``, ``cnn`` (a small convnet) and ``resnet`` (a small residual
net sized for 32×32 inputs). ``width`` is the first layer's size; ``depth`` the number of
hidden layers, conv blocks or residual stages. All end in global pooling, so any image size works.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn


def mlp(
    input_shape: tuple[int, ...], n_classes: int, width: int, depth: int, dropout: float
) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    size = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
        size = width
    return nn.Sequential(*layers, nn.Linear(size, n_classes))


def cnn(
    input_shape: tuple[int, ...], n_classes: int, width: int, depth: int, dropout: float
) -> nn.Module:
    """Conv-BN-ReLU blocks; channels double and the image halves each block while it can."""
    channels, side = input_shape[0], min(input_shape[1:])
    layers: list[nn.Module] = []
    for block in range(depth):
        out = width * 2**block
        layers += [
            nn.Conv2d(channels, out, 3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(),
        ]
        if side >= 4:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        channels = out
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(channels, n_classes),
    )


class BasicBlock(nn.Module):
    """He et al. (2016) basic block: two 3×3 convs and a shortcut (1×1 conv when shapes change)."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(),
            nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False),
            nn.BatchNorm2d(outputs),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and inputs == outputs
            else nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet(
    input_shape: tuple[int, ...], n_classes: int, width: int, depth: int, dropout: float
) -> nn.Module:
    """A stem, then ``depth`` stages of one basic block each (stride 2 after the first)."""
    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
    ]
    channels = width
    for stage in range(depth):
        out = width * 2**stage
        layers.append(BasicBlock(channels, out, stride=1 if stage == 0 else 2))
        channels = out
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(channels, n_classes),
    )


MODELS = {"mlp": mlp, "cnn": cnn, "resnet": resnet}


def build_model(
    kind: str, input_shape: tuple[int, ...], n_classes: int, width: int, depth: int, dropout: float
) -> nn.Module:
    if kind != "mlp" and len(input_shape) != 3:
        raise ValueError(
            f"model {kind!r} needs images (C, H, W); this dataset has flat "
            f"features of shape {input_shape}: use model: mlp"
        )
    return MODELS[kind](input_shape, n_classes, width, depth, dropout)


@functools.cache
def training_flops_per_sample(
    kind: str, input_shape: tuple[int, ...], n_classes: int, width: int, depth: int
) -> float:
    """Floating-point operations of one training sample (forward and backward), counted by
    torch's ``FlopCounterMode`` (matrix products and convolutions) on a model built on the meta
    device: nothing is computed, no random number is drawn. The same for a trial trained alone
    or as a member of a population, so a cost objective built on it means one thing."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = 2  # BatchNorm needs two rows to train
    with torch.device("meta"):
        model = build_model(kind, input_shape, n_classes, width, depth, 0.0)
        x = torch.empty((batch, *input_shape))
        y = torch.zeros(batch, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch
