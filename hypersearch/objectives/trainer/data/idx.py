"""MNIST and Fashion-MNIST: their IDX training files (gzipped or not) in ``<cache_dir>/<name>/``,
downloaded there when missing. The test files are listed for the download only; never read."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

from hypersearch.objectives.trainer.data.dataset import DatasetError, check_labels
from hypersearch.objectives.trainer.data.download import announce, download

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
# IDX type codes (the third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_mnist_like(name: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training images as uint8 (N, 1, H, W) and their labels, downloading when missing."""
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
    return images[:, None], check_labels(labels, 10, labels_path)


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
    announce(label, base_url, folder)
    for file_name in missing:
        download(base_url + file_name, folder / file_name, md5s.get(file_name), label, missing)
