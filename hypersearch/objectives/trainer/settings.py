"""The built-in trainer's settings (``objective: {trainer: {...}}``), without importing torch.

Every setting has a default; any search-space parameter named like a tunable setting (``lr``,
``weight_decay``, ``momentum``, ``batch_size``, …) overrides it trial by trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from hypersearch.space import StrictModel, rule_error

BUILTIN_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
DATASET_PREFIXES = ("folder:", "npz:")
# Settings a search-space parameter may override, per trial.
TUNABLE = frozenset(
    {
        "model",
        "width",
        "depth",
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "momentum",
        "nesterov",
        "schedule",
        "dropout",
    }
)
METRICS = (
    "val_loss",
    "val_accuracy",
    "train_loss",
    "train_seconds",
    "train_flops",
    "epochs_run",
    "n_params",
    "peak_memory_mb",
    "used_batch_size",
    "used_grad_accum",
)


class TrainerSpec(StrictModel):
    """SGD training of a small network on a classification dataset."""

    dataset: str = "digits"
    model: Literal["mlp", "cnn", "resnet"] = "cnn"
    width: Annotated[int, Field(ge=1)] = 32
    depth: Annotated[int, Field(ge=1, le=8)] = 2
    epochs: Annotated[int, Field(ge=1)] = 8
    batch_size: Annotated[int, Field(ge=1)] = 64
    grad_accum: Annotated[int, Field(ge=1)] = 1  # micro-batches per optimizer step
    min_batch_size: Annotated[int, Field(ge=1)] = 16  # floor of the out-of-memory ladder
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.05
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 5e-4
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    schedule: Literal["constant", "cosine", "onecycle"] = "onecycle"
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + grad scaler)
    deterministic: bool = False
    valid_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    split_seed: int = 0  # the same train/validation split for every trial of a run
    max_train: Annotated[int, Field(ge=1)] | None = None
    cache_dir: str | None = None
    divergence_factor: Annotated[float, Field(gt=1)] = 5.0  # train loss above this x its start

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str, info: ValidationInfo) -> str:
        """A built-in name, or folder:/npz: with a path taken from the experiment's folder."""
        for prefix in DATASET_PREFIXES:
            if name.startswith(prefix):
                base = Path((info.context or {}).get("base_dir", "."))
                return prefix + str((base / Path(name[len(prefix) :]).expanduser()).resolve())
        if name not in BUILTIN_DATASETS:
            raise rule_error(
                None,
                f"unknown dataset {name!r} (choose from: "
                f"{', '.join(BUILTIN_DATASETS)}, folder:PATH, npz:PATH)",
            )
        return name


# Settings each member of a population may have its own value of (the population trainer keeps
# them as per-member tensors); every other setting must be equal across a population.
PER_MEMBER = frozenset({"lr", "weight_decay", "momentum", "nesterov"})


def population_key(settings: TrainerSpec) -> tuple[tuple[str, object], ...]:
    """What trials must share to be trained together as one population."""
    return tuple(sorted((k, v) for k, v in settings.model_dump().items() if k not in PER_MEMBER))
