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
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import os
import shutil
import struct
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from hypersearch.errors import ExperimentError, UserInputError

if TYPE_CHECKING:  # torch is imported when data is loaded, so name checks stay cheap
    import torch

_BUILTIN = ("digits", "mnist", "fashion-mnist", "cifar10")
DATASETS: tuple[str, ...] = (*_BUILTIN, "folder:PATH", "npz:PATH")
_PREFIXES = ("folder:", "npz:")
_FIELD = "objective.trainer.dataset"

# Images of a folder dataset take the first image's size, scaled down (aspect kept) so that its
# longer side is at most this many pixels: small networks, and tensors that fit in memory.
FOLDER_MAX_SIDE = 64
_IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

_IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# name -> (display name, base URL, md5 of each .gz file, as published with the data)
_IDX_SOURCES: dict[str, tuple[str, str, dict[str, str]]] = {
    "mnist": (
        "MNIST",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": (
        "Fashion-MNIST",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR10_MD5 = {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}
_CIFAR10_DIR = "cifar-10-batches-bin"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR10_RECORD = 1 + 3 * 32 * 32

# IDX type codes (the third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CHUNK_VALUES = 1 << 22  # values per chunk when computing statistics (bounded float64 temps)


class DatasetError(UserInputError):
    """A dataset that cannot be found, downloaded or parsed; the message says where and what."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train/validation tensors on the CPU, inputs normalized with training-set statistics.

    Shared by every trial of a process (see ``load_dataset``): never modify the tensors in place.
    """

    name: str
    x_train: torch.Tensor  # float32, (N, C, H, W) for images; (N, D) for flat features
    y_train: torch.Tensor  # int64 class labels 0..n_classes-1, shape (N,)
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={tuple(self.x_train.shape)}, "
            f"valid={tuple(self.x_valid.shape)}, n_classes={self.n_classes})"
        )


def default_cache_dir() -> Path:
    """Where downloaded datasets live: ``$HYPERSEARCH_DATA``, else ~/.cache/hypersearch/datasets."""
    env = os.environ.get("HYPERSEARCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hypersearch" / "datasets"


def check_dataset_name(name: object) -> None:
    """Reject an unknown dataset name at validation time, without touching any file."""
    if not isinstance(name, str):
        raise ExperimentError(_FIELD, f"must be a string (got {name!r})")
    if name in _BUILTIN:
        return
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            if not name[len(prefix) :].strip():
                raise ExperimentError(_FIELD, f"{prefix} needs a path, e.g. {prefix}data/x")
            return
    raise ExperimentError(_FIELD, f"unknown dataset {name!r} (choose from: {', '.join(DATASETS)})")


def load_dataset(
    name: str,
    *,
    valid_fraction: float = 0.2,
    split_seed: int = 0,
    max_train: int | None = None,
    cache_dir: str | Path | None = None,
) -> Dataset:
    """Load (or take from this process's cache) one dataset, split and normalized.

    ``valid_fraction`` of the training data is held out for validation, chosen by ``split_seed``
    (ignored where the data has its own validation set). ``max_train`` keeps a seeded subset of
    the training split for quick runs; it is applied after the split and after the normalization
    statistics are taken, so validation is the same with or without it. ``folder:`` and ``npz:``
    paths are resolved against the current directory; ``Dataset.name`` holds the resolved path.
    """
    check_dataset_name(name)
    if isinstance(valid_fraction, bool) or not 0 < valid_fraction < 1:
        raise ExperimentError(
            "objective.trainer.valid_fraction", f"must be in (0, 1) (got {valid_fraction!r})"
        )
    if max_train is not None and (
        isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 1
    ):
        raise ExperimentError("objective.trainer.max_train", f"must be >= 1 (got {max_train!r})")
    prefix = next((p for p in _PREFIXES if name.startswith(p)), None)
    if prefix is not None:  # a path of its own: the cache folder plays no part
        path = Path(name[len(prefix) :].strip()).expanduser().resolve()
        key_name, key_dir = prefix + str(path), None
    else:
        key_name = name
        key_dir = str(Path(cache_dir or default_cache_dir()).expanduser().resolve())
    return _load_cached(key_name, float(valid_fraction), int(split_seed), max_train, key_dir)


def clear_cache() -> None:
    """Forget the datasets loaded by this process (e.g. after replacing their files)."""
    _load_cached.cache_clear()


# Few entries: one float32 CIFAR-10 is 600 MB; a worker rarely needs more than one dataset.
@functools.lru_cache(maxsize=4)
def _load_cached(
    name: str, valid_fraction: float, split_seed: int, max_train: int | None, cache_dir: str | None
) -> Dataset:
    x, y, x_valid, y_valid, n_classes = _read(name, Path(cache_dir) if cache_dir else None)
    return _prepare(name, x, y, x_valid, y_valid, n_classes, valid_fraction, split_seed, max_train)


_Raw = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, int]


def _read(name: str, cache_dir: Path | None) -> _Raw:
    """Raw arrays: x as (N, C, H, W) or (N, D) in its stored dtype, y as int64 0..K-1."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images[:, None], digits.target.astype(np.int64), None, None, 10
    if name.startswith("folder:"):
        return _read_folder(Path(name[len("folder:") :]))
    if name.startswith("npz:"):
        return _read_npz(Path(name[len("npz:") :]))
    assert cache_dir is not None  # load_dataset resolves it for every built-in name
    if name == "cifar10":
        x, y = _read_cifar10(cache_dir / "cifar10")
    else:
        x, y = _read_mnist_like(name, cache_dir / name)
    return x, y, None, None, 10


# ---------------------------------------------------------------------------------------------
# split, subsample, normalize


def _prepare(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    x_valid: np.ndarray | None,
    y_valid: np.ndarray | None,
    n_classes: int,
    valid_fraction: float,
    split_seed: int,
    max_train: int | None,
) -> Dataset:
    import torch

    rng = np.random.default_rng(split_seed)
    if x_valid is None or y_valid is None:
        n = len(y)
        if n < 2:
            raise DatasetError(f"dataset {name!r} has {n} sample(s); a split needs at least 2")
        n_valid = min(max(round(valid_fraction * n), 1), n - 1)
        order = rng.permutation(n)
        # Sorted, so both splits keep the stored order (reproducible, easy to inspect).
        valid_idx, train_idx = np.sort(order[:n_valid]), np.sort(order[n_valid:])
        x, y, x_valid, y_valid = x[train_idx], y[train_idx], x[valid_idx], y[valid_idx]
    mean, std = _statistics(x)
    if max_train is not None and max_train < len(y):
        keep = np.sort(rng.choice(len(y), size=max_train, replace=False))
        x, y = x[keep], y[keep]
    return Dataset(
        name=name,
        x_train=torch.from_numpy(_normalize(x, mean, std)),
        y_train=torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
        x_valid=torch.from_numpy(_normalize(x_valid, mean, std)),
        y_valid=torch.from_numpy(np.ascontiguousarray(y_valid, dtype=np.int64)),
        n_classes=int(n_classes),
    )


def _statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (images) or per-feature (flat) mean and std, two-pass in float64 chunks."""
    n, channels = x.shape[0], x.shape[1]
    view = x.reshape(n, channels, -1)
    step = max(1, _CHUNK_VALUES // max(1, view[0].size))
    count = n * view.shape[2]
    total = np.zeros(channels)
    for start in range(0, n, step):
        total += view[start : start + step].sum(axis=(0, 2), dtype=np.float64)
    mean = total / count
    squares = np.zeros(channels)
    for start in range(0, n, step):
        diff = view[start : start + step].astype(np.float64) - mean[:, None]
        squares += np.einsum("ncp,ncp->c", diff, diff)
    std = np.sqrt(squares / count)
    std[~(std > 1e-8)] = 1.0  # a constant channel/feature is only centered, never blown up
    return mean, std


def _normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, std = mean.reshape(shape), std.reshape(shape)
    out = np.empty(x.shape, dtype=np.float32)
    step = max(1, _CHUNK_VALUES // max(1, x[0].size))
    for start in range(0, len(x), step):
        out[start : start + step] = (x[start : start + step].astype(np.float64) - mean) / std
    return out


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files


def _read_mnist_like(name: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = _IDX_NAMES[0], _IDX_NAMES[1]
    if _find_idx(folder, images_name) is None or _find_idx(folder, labels_name) is None:
        _download_idx(name, folder)
    images_path, labels_path = _find_idx(folder, images_name), _find_idx(folder, labels_name)
    assert images_path is not None and labels_path is not None  # the download put them there
    images, labels = _read_idx(images_path), _read_idx(labels_path)
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: expected images (N, H, W), got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(
            f"{labels_path}: expected {len(images)} labels, got shape {labels.shape}"
        )
    return images[:, None], _check_labels(labels, 10, labels_path)


def _find_idx(folder: Path, base: str) -> Path | None:
    """The file ``base`` in ``folder``, gzipped or not."""
    for candidate in (folder / f"{base}.gz", folder / base):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file: magic (0, 0, type code, number of dims), big-endian dims, then the data."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DatasetError(f"{path}: broken gzip file ({err}); delete it and retry") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: IDX header cut short ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise DatasetError(
            f"{path}: IDX header says {dims} x {dtype.itemsize} bytes, "
            f"file holds {len(raw) - header} bytes of data"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _download_idx(name: str, folder: Path) -> None:
    label, base_url, md5s = _IDX_SOURCES[name]
    missing = [f"{base}.gz" for base in _IDX_NAMES if _find_idx(folder, base) is None]
    _announce(label, base_url, folder)
    for file_name in missing:
        _download(base_url + file_name, folder / file_name, md5s.get(file_name), label, missing)


def _check_labels(labels: np.ndarray, n_classes: int, where: Path) -> np.ndarray:
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(
            f"{where}: labels must be in 0..{n_classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return labels


# ---------------------------------------------------------------------------------------------
# CIFAR-10: binary batches


def _read_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    paths = _find_cifar10(folder)
    if paths is None:
        _download_cifar10(folder)
        paths = _find_cifar10(folder)
        if paths is None:
            raise DatasetError(
                f"{CIFAR10_URL} did not contain {_CIFAR10_DIR}/{_CIFAR10_TRAIN[0]} … "
                f"{_CIFAR10_TRAIN[-1]}; place the extracted files in {folder}"
            )
    images, labels = [], []
    for path in paths:
        records = np.fromfile(path, dtype=np.uint8)
        if records.size == 0 or records.size % _CIFAR10_RECORD:
            raise DatasetError(
                f"{path}: {records.size} bytes is not a whole number of CIFAR-10 records "
                f"({_CIFAR10_RECORD} bytes: 1 label + 3072 pixels)"
            )
        records = records.reshape(-1, _CIFAR10_RECORD)
        labels.append(_check_labels(records[:, 0], 10, path))
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))  # R, G, B planes, row-major
    return np.concatenate(images), np.concatenate(labels)


def _find_cifar10(folder: Path) -> list[Path] | None:
    """The five training batches, in cifar-10-batches-bin/ (as extracted) or in the folder."""
    for where in (folder / _CIFAR10_DIR, folder):
        paths = [where / name for name in _CIFAR10_TRAIN]
        if all(path.is_file() for path in paths):
            return paths
    return None


def _download_cifar10(folder: Path) -> None:
    archive_name = CIFAR10_URL.rsplit("/", 1)[1]
    expected = [f"{_CIFAR10_DIR}/{name}" for name in _CIFAR10_TRAIN]
    _announce("CIFAR-10", CIFAR10_URL, folder)
    archive = folder / archive_name
    _download(CIFAR10_URL, archive, _CIFAR10_MD5[archive_name], "CIFAR-10", expected)
    try:
        _safe_extract(archive, folder)
    finally:
        archive.unlink(missing_ok=True)


def _safe_extract(archive: Path, folder: Path) -> None:
    """Extract regular files only, refusing absolute paths, ``..`` and links."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith(("/", "\\")) or ".." in parts or ":" in member.name:
                    raise DatasetError(f"{archive}: refusing unsafe member path {member.name!r}")
                if not (member.isfile() or member.isdir()):
                    raise DatasetError(f"{archive}: refusing link or special file {member.name!r}")
            for member in members:
                if not member.isfile():
                    continue
                target = folder.joinpath(*PurePosixPath(member.name).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has a stream
                part = target.with_name(f"{target.name}.part{os.getpid()}")
                with source, part.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                os.replace(part, target)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DatasetError(f"{archive}: cannot extract ({err}); delete it and retry") from err


# ---------------------------------------------------------------------------------------------
# downloads


def _announce(label: str, url: str, folder: Path) -> None:
    print(f"downloading {label} from {url} into {folder}", file=sys.stderr, flush=True)


def _download(url: str, target: Path, md5: str | None, label: str, files: Sequence[str]) -> None:
    """Fetch ``url`` into ``target`` atomically; any failure names the URL and the folder."""
    folder = target.parent
    manual = (
        f"download it yourself and place {', '.join(files)} in {folder} "
        "(or set HYPERSEARCH_DATA to a folder that holds them)"
    )
    part = target.with_name(f"{target.name}.part{os.getpid()}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Looked up at call time, so tests can replace the opener (there is no network there).
        with urllib.request.urlopen(url, timeout=60) as response, part.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, ValueError) as err:  # URLError, HTTPError and timeouts are OSErrors
        part.unlink(missing_ok=True)
        raise DatasetError(f"could not download {label} from {url} ({err}); {manual}") from err
    if md5 is not None:
        digest = _md5(part)
        if digest != md5:
            part.unlink(missing_ok=True)
            raise DatasetError(
                f"{url} downloaded with md5 {digest}, expected {md5} (incomplete or changed); "
                f"{manual}"
            )
    os.replace(part, target)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# folder:PATH — one sub-folder of images per class


def _read_folder(root: Path) -> _Raw:
    """Images per class folder, like fastai's ``ImageDataBunch.from_folder``.

    With ``train/`` (and ``valid/`` or ``val/``) under PATH those are the splits (any other
    sub-folder such as ``test/`` is ignored); without ``valid/`` the validation set is drawn from
    ``train/``; without ``train/`` PATH's own sub-folders are the classes. Classes are the
    training sub-folders that hold images, sorted by name. Images become 1-channel ("L") when
    every one of them is grayscale, else RGB (alpha dropped); all take the first training
    image's size, scaled down so its longer side is at most ``FOLDER_MAX_SIDE``.
    """
    if not root.is_dir():
        raise DatasetError(f"folder:{root}: no such folder")
    train_dir, valid_dir = root, None
    if (root / "train").is_dir():
        train_dir = root / "train"
        valid_dir = next((root / n for n in ("valid", "val") if (root / n).is_dir()), None)
    classes = [d.name for d in _class_dirs(train_dir) if _images(d)]
    if not classes:
        raise DatasetError(f"folder:{root}: no class sub-folders with images in {train_dir}")
    index = {name: i for i, name in enumerate(classes)}
    train_files = [(f, index[d.name]) for d in _class_dirs(train_dir) for f in _images(d)]
    valid_files: list[tuple[Path, int]] = []
    if valid_dir is not None:
        for d in _class_dirs(valid_dir):
            images = _images(d)
            if images and d.name not in index:
                raise DatasetError(
                    f"folder:{root}: class {d.name!r} is in {valid_dir} but not in {train_dir}"
                )
            valid_files += [(f, index[d.name]) for f in images]
        if not valid_files:
            raise DatasetError(f"folder:{root}: {valid_dir} holds no images in class folders")
    mode, size = _folder_format([f for f, _ in train_files + valid_files])
    x = _load_images([f for f, _ in train_files], mode, size)
    y = np.array([c for _, c in train_files], dtype=np.int64)
    if valid_dir is None:
        return x, y, None, None, len(classes)
    x_valid = _load_images([f for f, _ in valid_files], mode, size)
    y_valid = np.array([c for _, c in valid_files], dtype=np.int64)
    return x, y, x_valid, y_valid, len(classes)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(
        f
        for f in folder.iterdir()
        if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES and not f.name.startswith(".")
    )


def _folder_format(files: list[Path]) -> tuple[str, tuple[int, int]]:
    """The common mode (L or RGB) and (width, height), from the files' headers only."""
    from PIL import Image

    modes = set()
    first_size: tuple[int, int] | None = None
    for path in files:
        try:
            with Image.open(path) as image:
                modes.add(image.mode)
                first_size = first_size or image.size
        except (OSError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{path}: cannot read image ({err})") from err
    assert first_size is not None  # the caller found at least one file
    width, height = first_size
    scale = min(1.0, FOLDER_MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return ("L" if modes <= _GRAY_MODES else "RGB"), size


def _load_images(files: list[Path], mode: str, size: tuple[int, int]) -> np.ndarray:
    """Decoded images as uint8 (N, C, H, W)."""
    from PIL import Image

    channels = 1 if mode == "L" else 3
    out = np.empty((len(files), size[1], size[0], channels), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:
                image = image.convert(mode)
                if image.size != size:
                    image = image.resize(size, Image.Resampling.BILINEAR)
                out[i] = np.asarray(image).reshape(size[1], size[0], channels)
        except (OSError, Image.DecompressionBombError) as err:
            raise DatasetError(f"{path}: cannot read image ({err})") from err
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------
# npz:PATH — arrays x, y [, x_valid, y_valid]


def _read_npz(path: Path) -> _Raw:
    """x (N, D), (N, H, W), (N, H, W, C) with C in {1, 3}, or (N, C, H, W); y labels of any values.

    A 4-D x is channels-last when its last axis is 1 or 3 and its second is not; otherwise it is
    channels-first. Label values (train and valid together) are mapped in sorted order to
    0..K-1; floats must be whole numbers.
    """
    where = f"npz:{path}"
    if not path.is_file():
        raise DatasetError(f"{where}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DatasetError(f"{where}: cannot read ({err})") from err
    if "x" not in arrays or "y" not in arrays:
        raise DatasetError(f"{where}: needs arrays 'x' and 'y' (found: {', '.join(arrays)})")
    if ("x_valid" in arrays) != ("y_valid" in arrays):
        raise DatasetError(f"{where}: 'x_valid' and 'y_valid' go together; found only one")
    x = _npz_inputs(arrays["x"], f"{where}: x")
    y = _npz_labels(arrays["y"], len(x), f"{where}: y")
    if "x_valid" not in arrays:
        classes, codes = np.unique(y, return_inverse=True)
        return x, codes.reshape(-1).astype(np.int64), None, None, len(classes)
    x_valid = _npz_inputs(arrays["x_valid"], f"{where}: x_valid")
    if x_valid.shape[1:] != x.shape[1:]:
        raise DatasetError(
            f"{where}: x_valid samples have shape {x_valid.shape[1:]}, x samples {x.shape[1:]}"
        )
    y_valid = _npz_labels(arrays["y_valid"], len(x_valid), f"{where}: y_valid")
    if (y.dtype.kind in "US") != (y_valid.dtype.kind in "US"):  # numpy would make all strings
        raise DatasetError(f"{where}: y and y_valid hold different kinds of labels")
    classes, codes = np.unique(np.concatenate([y, y_valid]), return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    return x, codes[: len(y)], x_valid, codes[len(y) :], len(classes)


def _npz_inputs(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: must be numeric (got dtype {x.dtype})")
    if x.ndim < 2 or x.ndim > 4 or len(x) == 0:
        raise DatasetError(
            f"{where}: expected (N, D), (N, H, W), (N, H, W, C) or (N, C, H, W) with N > 0, "
            f"got shape {x.shape}"
        )
    if x.dtype.kind == "b":
        x = x.astype(np.uint8)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DatasetError(f"{where}: contains NaN or infinite values")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def _npz_labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DatasetError(f"{where}: expected {n} class labels of shape ({n},), got {y.shape}")
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DatasetError(f"{where}: class labels must be whole numbers (got floats)")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "biuUS":
        raise DatasetError(f"{where}: class labels must be integers or strings ({y.dtype})")
    return y
