"""Datasets for the built-in trainer: train/validation tensors, normalized, cached per process.

Names (``DATASETS``): ``digits`` (scikit-learn's bundled 8×8 digits, offline), ``mnist`` and
``fashion-mnist`` (IDX files), ``cifar10`` (the official binary batches), ``folder:PATH`` (one
sub-folder of images per class) and ``npz:PATH`` (arrays ``x``, ``y`` and optionally ``x_valid``,
``y_valid``). The files of mnist, fashion-mnist and cifar10 live in ``<cache_dir>/<name>/``; when
they are missing they are downloaded there from their official locations (checksums verified).

The validation set is a seeded ``valid_fraction`` hold-out of the *training* data unless the data
brings its own (npz ``x_valid``/``y_valid``, folder ``train/`` + ``valid/``). The official test
sets of mnist, fashion-mnist and cifar10 are never read, so they stay untouched for a final
evaluation of the tuned configuration (tuning on them would make that evaluation optimistic).

Inputs are float32, normalized with training-split statistics (per channel for images, per
feature for flat inputs); labels are int64 in ``0..n_classes-1``. Loaded datasets are cached in
the process (a worker runs many trials on the same data), so callers share the same tensors and
must never modify them in place.

Modules, one job each: ``registry`` (names and their readers), ``idx`` (MNIST, Fashion-MNIST),
``cifar10``, ``folder``, ``npz``, ``download`` (fetching and extracting), ``prepare`` (split and
normalize), ``cache`` (``load_dataset`` and the per-process cache), ``dataset`` (shared types).
"""

from __future__ import annotations

from hypersearch.objectives.trainer.data.cache import clear_cache, default_cache_dir, load_dataset
from hypersearch.objectives.trainer.data.cifar10 import CIFAR10_URL
from hypersearch.objectives.trainer.data.dataset import Dataset, DatasetError
from hypersearch.objectives.trainer.data.folder import FOLDER_MAX_SIDE
from hypersearch.objectives.trainer.data.registry import DATASETS, check_dataset_name

__all__ = [
    "CIFAR10_URL",
    "DATASETS",
    "FOLDER_MAX_SIDE",
    "Dataset",
    "DatasetError",
    "check_dataset_name",
    "clear_cache",
    "default_cache_dir",
    "load_dataset",
]
