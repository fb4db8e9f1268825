"""A tiny real training job: a PyTorch MLP on scikit-learn's bundled 8x8 digits, trained with SGD.

Use it as a python objective (``digits_sgd:train``) or as a command::

    python examples/digits_sgd.py --lr 0.1 --weight-decay 1e-4 --momentum 0.9

It prints its metrics as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


def train(config: dict[str, Any], ctx: Any = None) -> dict[str, float]:
    seed = int(config.get("seed", getattr(ctx, "seed", 0))) % 2**31
    epochs = int(config.get("epochs", 5))
    torch.manual_seed(seed)
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0)
    mean, std = x_train.mean(), x_train.std()
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    xv = torch.tensor((x_val - mean) / std, dtype=torch.float32)
    yt, yv = torch.tensor(y_train), torch.tensor(y_val)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(
        model.parameters(),
        lr=float(config["lr"]),
        weight_decay=float(config.get("weight_decay", 0.0)),
        momentum=float(config.get("momentum", 0.0)),
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            batch = order[i : i + 64]
            opt.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            opt.step()
    train_seconds = time.perf_counter() - start
    with torch.no_grad():
        logits = model(xv)
        val_loss = float(loss_fn(logits, yv))
        accuracy = float((logits.argmax(1) == yv).float().mean())
    return {
        "val_loss": val_loss if math.isfinite(val_loss) else float("nan"),
        "val_accuracy": accuracy,
        "train_seconds": train_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    metrics = train(
        {
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "momentum": args.momentum,
            "seed": args.seed,
            "epochs": args.epochs,
        }
    )
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
