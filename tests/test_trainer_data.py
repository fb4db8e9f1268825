"""Dataset loading for the built-in trainer: each format written small, in its real layout.

No test touches the network: an autouse fixture makes ``urllib.request.urlopen`` fail, as it
would on a machine without one; download tests serve bytes from memory instead.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hypersearch.errors import ExperimentError
from hypersearch.objectives.trainer import data
from hypersearch.objectives.trainer.data import (
    DATASETS,
    DatasetError,
    check_dataset_name,
    cifar10,
    default_cache_dir,
    idx,
    load_dataset,
)


@pytest.fixture(autouse=True)
def _no_network_and_fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: object, *args: object, **kwargs: object) -> object:
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    data.clear_cache()


# ---------------------------------------------------------------------------------------------
# helpers: files in the real formats, and a check that a Dataset is the raw data, split and
# normalized with training statistics


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype("uint8"): 0x08, np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D}
    header = bytes([0, 0, code[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    raw = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def mnist_like(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 28×28 images whose pixel (0, 0) is the sample's index; label = index % 10."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    return images, (np.arange(n) % 10).astype(np.uint8)


def check_split(ds: data.Dataset, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recover which raw sample each row is and check it is the normalized raw sample.

    Every raw sample's first value of channel 0 grows with its index, and the normalization is
    an increasing affine map per channel, so ranks give back the indices. Returns the training
    and validation indices.
    """
    xs = torch.cat([ds.x_train, ds.x_valid]).numpy().astype(np.float64)
    assert len(xs) == len(raw)
    ids = np.argsort(np.argsort(xs.reshape(len(xs), -1)[:, 0]))
    n_train = len(ds.x_train)
    train_ids, valid_ids = ids[:n_train], ids[n_train:]
    assert (np.diff(train_ids) > 0).all() and (np.diff(valid_ids) > 0).all()  # stored order
    raw3 = raw.reshape(len(raw), raw.shape[1], -1).astype(np.float64)
    mean = raw3[train_ids].mean(axis=(0, 2))
    std = raw3[train_ids].std(axis=(0, 2))
    shape = (1, -1) + (1,) * (raw.ndim - 2)
    expected = (raw[ids] - mean.reshape(shape)) / std.reshape(shape)
    np.testing.assert_allclose(xs, expected, atol=1e-4)
    return train_ids, valid_ids


def assert_standardized(x: torch.Tensor) -> None:
    per_channel = x.double().transpose(0, 1).reshape(x.shape[1], -1)
    np.testing.assert_allclose(per_channel.mean(dim=1).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(dim=1, correction=0).numpy(), 1.0, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# names, cache folder


def test_check_dataset_name_accepts_known_names_and_paths() -> None:
    for name in ("digits", "mnist", "fashion-mnist", "cifar10", "folder:imgs", "npz:/a/b.npz"):
        check_dataset_name(name)
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10", "folder:PATH", "npz:PATH")


@pytest.mark.parametrize("name", ["imagenet", "MNIST", "folder:", "npz: ", 3])
def test_check_dataset_name_rejects_unknown_names_in_one_line(name: object) -> None:
    with pytest.raises(ExperimentError) as info:
        check_dataset_name(name)
    assert info.value.field == "objective.trainer.dataset"
    assert "\n" not in str(info.value)
    if name in ("imagenet", "MNIST"):
        assert "digits, mnist, fashion-mnist, cifar10, folder:PATH, npz:PATH" in str(info.value)


def test_default_cache_dir_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HYPERSEARCH_DATA", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("HYPERSEARCH_DATA")
    assert default_cache_dir() == Path.home() / ".cache" / "hypersearch" / "datasets"


def test_bad_split_arguments_are_rejected() -> None:
    with pytest.raises(ExperimentError, match="valid_fraction"):
        load_dataset("digits", valid_fraction=1.0)
    with pytest.raises(ExperimentError, match="max_train"):
        load_dataset("digits", max_train=0)


# ---------------------------------------------------------------------------------------------
# digits; split, cache, max_train


def test_digits() -> None:
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.n_classes == 10
    assert ds.input_shape == (1, 8, 8)
    assert len(ds.x_train) + len(ds.x_valid) == 1797
    assert len(ds.x_valid) == round(0.2 * 1797)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert set(ds.y_train.tolist()) == set(range(10))
    assert_standardized(ds.x_train)


def test_split_is_seeded_and_cached_per_process(tmp_path: Path) -> None:
    first = load_dataset("digits", split_seed=0, cache_dir=tmp_path)
    assert load_dataset("digits", split_seed=0, cache_dir=str(tmp_path)) is first  # same key
    data.clear_cache()
    again = load_dataset("digits", split_seed=0, cache_dir=tmp_path)
    assert again is not first
    assert torch.equal(again.x_valid, first.x_valid) and torch.equal(again.y_train, first.y_train)
    other = load_dataset("digits", split_seed=1, cache_dir=tmp_path)
    assert len(other.x_valid) == len(first.x_valid)
    assert not torch.equal(other.x_valid, first.x_valid)


def test_max_train_subsamples_the_training_split_only(tmp_path: Path) -> None:
    n = 100
    x = np.random.default_rng(1).normal(size=(n, 5))
    x[:, 0] = np.arange(n)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(n) % 4)
    full = load_dataset(f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.25)
    small = load_dataset(f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.25, max_train=10)
    again = load_dataset(
        f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.25, max_train=10, split_seed=0
    )
    other = load_dataset(
        f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.25, max_train=10, split_seed=3
    )
    assert len(full.x_train) == 75 and len(small.x_train) == 10
    assert torch.equal(small.x_valid, full.x_valid) and torch.equal(small.y_valid, full.y_valid)
    # the kept rows are rows of the full training split, normalized the same way, in order
    rows = {tuple(row) for row in full.x_train.tolist()}
    assert all(tuple(row) in rows for row in small.x_train.tolist())
    assert (np.diff(small.x_train[:, 0].numpy()) > 0).all()
    assert again is small and not torch.equal(other.x_valid, small.x_valid)
    whole = load_dataset(f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.25, max_train=1000)
    assert torch.equal(whole.x_train, full.x_train)


# ---------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_files_load_split_and_normalize(tmp_path: Path, name: str, gz: bool) -> None:
    images, labels = mnist_like()
    write_idx(tmp_path / name / "train-images-idx3-ubyte", images, gz=gz)
    # labels as big-endian int32 (type code 0x0C): the header, not the file name, decides
    write_idx(tmp_path / name / "train-labels-idx1-ubyte", labels.astype(np.int32), gz=gz)
    ds = load_dataset(name, cache_dir=tmp_path)
    assert ds.input_shape == (1, 28, 28) and ds.n_classes == 10
    assert (len(ds.x_train), len(ds.x_valid)) == (48, 12)
    assert ds.x_train.dtype == torch.float32 and ds.y_valid.dtype == torch.int64
    train_ids, valid_ids = check_split(ds, images[:, None])
    assert ds.y_train.tolist() == (train_ids % 10).tolist()
    assert ds.y_valid.tolist() == (valid_ids % 10).tolist()
    assert_standardized(ds.x_train)


def test_idx_with_a_wrong_magic_number_or_size_is_a_clear_error(tmp_path: Path) -> None:
    images, labels = mnist_like(10)
    write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte", labels, gz=False)
    bad = bytearray(idx_bytes(images))
    bad[2] = 0x07  # no such type code
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match="not an IDX file"):
        load_dataset("mnist", cache_dir=tmp_path)
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(idx_bytes(images)[:-5])
    with pytest.raises(DatasetError, match="IDX header says"):
        load_dataset("mnist", cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("name", "label", "url"),
    [
        ("mnist", "MNIST", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
        (
            "fashion-mnist",
            "Fashion-MNIST",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        ("cifar10", "CIFAR-10", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"),
    ],
)
def test_missing_dataset_without_network_names_url_and_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, label: str, url: str
) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(name, cache_dir=tmp_path)
    message = str(info.value)
    assert f"could not download {label} from {url}" in message
    assert str(tmp_path / name) in message and "no network in tests" in message
    assert f"downloading {label} from {url} into {tmp_path / name}" in capsys.readouterr().err
    assert not [p for p in (tmp_path / name).iterdir() if ".part" in p.name]


def serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Answer urlopen from memory; returns the URLs asked for."""
    asked: list[str] = []

    def fake(url: str, *args: object, **kwargs: object) -> io.BytesIO:
        asked.append(url)
        if url not in files:
            raise urllib.error.HTTPError(url, 404, "not found", None, None)  # type: ignore[arg-type]
        return io.BytesIO(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return asked


def test_mnist_download_verifies_checksums_then_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = mnist_like(20)
    base = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    payload = {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
        "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels)),
        "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images[:5])),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels[:5])),
    }
    asked = serve(monkeypatch, {base + k: v for k, v in payload.items()})
    # the published checksums do not match these stand-ins: refused, nothing left behind
    with pytest.raises(DatasetError, match="expected f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        load_dataset("mnist", cache_dir=tmp_path)
    assert list((tmp_path / "mnist").iterdir()) == []
    md5s = {k: hashlib.md5(v).hexdigest() for k, v in payload.items()}
    monkeypatch.setitem(idx._IDX_SOURCES, "mnist", ("MNIST", base, md5s))
    asked.clear()
    ds = load_dataset("mnist", cache_dir=tmp_path)
    assert sorted(asked) == sorted(base + k for k in payload)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(payload)
    check_split(ds, images[:, None])


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (binary batches)


def cifar_batches(per_batch: int = 8) -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    """Five batches of records: label byte, then the R, G and B planes (32×32, row-major)."""
    rng = np.random.default_rng(2)
    n = 5 * per_batch
    planes = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    planes[:, :, 0, 0] = np.arange(n)[:, None]
    planes[:, 0, 5, :] = 255  # a bright row in the red plane only
    labels = (np.arange(n) * 7) % 10
    batches = {}
    for b in range(5):
        records = b"".join(
            bytes([labels[i]])
            + planes[i, 0].tobytes()
            + planes[i, 1].tobytes()
            + planes[i, 2].tobytes()
            for i in range(b * per_batch, (b + 1) * per_batch)
        )
        batches[f"data_batch_{b + 1}.bin"] = records
    return batches, planes, labels


@pytest.mark.parametrize("subfolder", [True, False], ids=["extracted", "flat"])
def test_cifar10_binary_batches(tmp_path: Path, subfolder: bool) -> None:
    batches, planes, labels = cifar_batches()
    folder = tmp_path / "cifar10" / ("cifar-10-batches-bin" if subfolder else "")
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in batches.items():
        (folder / file_name).write_bytes(content)
    (folder / "test_batch.bin").write_bytes(b"never read")
    ds = load_dataset("cifar10", cache_dir=tmp_path, valid_fraction=0.25)
    assert ds.input_shape == (3, 32, 32) and ds.n_classes == 10
    assert (len(ds.x_train), len(ds.x_valid)) == (30, 10)
    train_ids, valid_ids = check_split(ds, planes)
    assert ds.y_train.tolist() == labels[train_ids].tolist()
    assert ds.y_valid.tolist() == labels[valid_ids].tolist()
    assert_standardized(ds.x_train)


def test_cifar10_truncated_batch_is_a_clear_error(tmp_path: Path) -> None:
    batches, _, _ = cifar_batches(2)
    for file_name, content in batches.items():
        (tmp_path / "cifar10").mkdir(exist_ok=True)
        (tmp_path / "cifar10" / file_name).write_bytes(content[:-1])
    with pytest.raises(DatasetError, match="not a whole number of CIFAR-10 records"):
        load_dataset("cifar10", cache_dir=tmp_path)


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def test_cifar10_download_extracts_the_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches, planes, _ = cifar_batches(4)
    archive = tar_gz({f"cifar-10-batches-bin/{k}": v for k, v in batches.items()})
    serve(monkeypatch, {data.CIFAR10_URL: archive})
    monkeypatch.setitem(
        cifar10._CIFAR10_MD5, "cifar-10-binary.tar.gz", hashlib.md5(archive).hexdigest()
    )
    ds = load_dataset("cifar10", cache_dir=tmp_path)
    check_split(ds, planes)
    extracted = tmp_path / "cifar10" / "cifar-10-batches-bin"
    assert sorted(p.name for p in extracted.iterdir()) == sorted(batches)
    assert not (tmp_path / "cifar10" / "cifar-10-binary.tar.gz").exists()  # archive removed


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"../evil.bin": b"x"}, None),
        ({"/tmp/evil.bin": b"x"}, None),
        ({"cifar-10-batches-bin/a/../../../evil.bin": b"x"}, None),
        ({}, {"cifar-10-batches-bin/data_batch_1.bin": "/etc/passwd"}),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink"],
)
def test_cifar10_archive_with_unsafe_members_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict, links: dict | None
) -> None:
    batches, _, _ = cifar_batches(1)
    good = {f"cifar-10-batches-bin/{k}": v for k, v in batches.items()}
    archive = tar_gz({**good, **members}, links)
    serve(monkeypatch, {data.CIFAR10_URL: archive})
    monkeypatch.setitem(
        cifar10._CIFAR10_MD5, "cifar-10-binary.tar.gz", hashlib.md5(archive).hexdigest()
    )
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="refusing"):
        load_dataset("cifar10", cache_dir=cache)
    assert not (tmp_path / "evil.bin").exists() and not (cache / "evil.bin").exists()
    assert not (cache / "cifar10" / "cifar-10-batches-bin").exists()  # nothing extracted


# ---------------------------------------------------------------------------------------------
# folder:PATH


def write_class_images(
    root: Path, classes: list[str], per_class: int, *, mode: str = "RGB", start: int = 0
) -> list[np.ndarray]:
    """PNG images (w=12, h=10); pixel (0, 0) is a running index, class k has a bright row k."""
    rng = np.random.default_rng(start)
    arrays = []
    index = start
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            channels = 3 if mode == "RGB" else 1
            pixels = rng.integers(0, 200, (10, 12, channels), dtype=np.uint8)
            pixels[0, 0, :] = index
            pixels[k + 1, :, :] = 255
            image = Image.fromarray(pixels if mode == "RGB" else pixels[:, :, 0], mode)
            image.save(root / name / f"img{j:02d}.png")
            arrays.append(pixels.transpose(2, 0, 1))
            index += 1
    return arrays


def test_folder_without_splits_is_split_by_valid_fraction(tmp_path: Path) -> None:
    raw = np.stack(write_class_images(tmp_path, ["cat", "dog", "frog"], 5))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()  # no images: not a class
    ds = load_dataset(f"folder:{tmp_path}", valid_fraction=0.2)
    assert ds.name == f"folder:{tmp_path.resolve()}"
    assert ds.input_shape == (3, 10, 12) and ds.n_classes == 3
    assert (len(ds.x_train), len(ds.x_valid)) == (12, 3)
    train_ids, valid_ids = check_split(ds, raw)
    assert ds.y_train.tolist() == (train_ids // 5).tolist()  # classes in sorted name order
    assert ds.y_valid.tolist() == (valid_ids // 5).tolist()
    assert_standardized(ds.x_train)


def test_folder_with_train_and_valid_uses_them(tmp_path: Path) -> None:
    raw_train = write_class_images(tmp_path / "train", ["a", "b"], 4, mode="L")
    raw_valid = write_class_images(tmp_path / "valid", ["a", "b"], 2, mode="L", start=8)
    write_class_images(tmp_path / "test", ["a", "b", "c"], 1, mode="L")  # ignored
    ds = load_dataset(f"folder:{tmp_path}", valid_fraction=0.5)
    assert ds.input_shape == (1, 10, 12) and ds.n_classes == 2  # all grayscale: one channel
    assert (len(ds.x_train), len(ds.x_valid)) == (8, 4)
    train_ids, valid_ids = check_split(ds, np.stack(raw_train + raw_valid))
    assert train_ids.tolist() == list(range(8)) and valid_ids.tolist() == list(range(8, 12))
    assert ds.y_train.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert ds.y_valid.tolist() == [0, 0, 1, 1]
    assert load_dataset(f"folder:{tmp_path}", valid_fraction=0.1).x_valid.shape[0] == 4


def test_folder_of_jpegs_of_mixed_sizes_and_modes(tmp_path: Path) -> None:
    colors = {"blue": (20, 20, 230), "red": (230, 20, 20)}
    for name, color in colors.items():
        (tmp_path / name).mkdir()
        for j, size in enumerate([(100, 80), (30, 40), (64, 64)]):
            Image.new("RGB", size, color).save(tmp_path / name / f"{j}.jpg", quality=95)
    Image.new("L", (20, 20), 128).save(tmp_path / "red" / "9.png")  # grayscale among RGB
    ds = load_dataset(f"folder:{tmp_path}", valid_fraction=0.3, split_seed=5)
    # the first image (blue/0.jpg, 100×80) sets the size, scaled to a longer side of 64
    assert ds.input_shape == (3, 51, 64) and ds.n_classes == 2
    x = torch.cat([ds.x_train, ds.x_valid])
    y = torch.cat([ds.y_train, ds.y_valid])
    assert sorted(y.tolist()) == [0, 0, 0, 1, 1, 1, 1]
    red_minus_blue = x[:, 0].mean(dim=(1, 2)) - x[:, 2].mean(dim=(1, 2))
    assert (red_minus_blue[y == 0] < -1).all()  # blue images (class 0)
    assert (red_minus_blue[y == 1] > -0.5).all()  # red ones, and the gray one (equal channels)


def test_folder_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class sub-folders with images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    write_class_images(tmp_path / "x" / "train", ["a", "b"], 2)
    write_class_images(tmp_path / "x" / "valid", ["a", "zebra"], 1)
    with pytest.raises(DatasetError, match="class 'zebra' is in"):
        load_dataset(f"folder:{tmp_path / 'x'}")
    (tmp_path / "y" / "a").mkdir(parents=True)
    (tmp_path / "y" / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png: cannot read image"):
        load_dataset(f"folder:{tmp_path / 'y'}")


# ---------------------------------------------------------------------------------------------
# npz:PATH


def with_index(shape: tuple[int, ...], channels_last: bool = False) -> np.ndarray:
    """Random values whose first value of channel 0 (or feature 0) is the sample's index."""
    x = np.random.default_rng(3).uniform(0, 100, shape)
    if channels_last:
        x[:, 0, 0, 0] = np.arange(shape[0]) - 1000
    else:
        x.reshape(shape[0], -1)[:, 0] = np.arange(shape[0]) - 1000
    return x


@pytest.mark.parametrize(
    ("shape", "channels_last", "input_shape"),
    [
        ((40, 6), False, (6,)),
        ((40, 5, 4), False, (1, 5, 4)),
        ((40, 5, 4, 3), True, (3, 5, 4)),
        ((40, 5, 4, 1), True, (1, 5, 4)),
        ((40, 2, 5, 4), False, (2, 5, 4)),
        ((40, 3, 5, 3), False, (3, 5, 3)),  # both ends could be channels: channels-first wins
    ],
    ids=["flat", "gray", "hwc3", "hwc1", "chw", "ambiguous"],
)
def test_npz_layouts(
    tmp_path: Path, shape: tuple[int, ...], channels_last: bool, input_shape: tuple[int, ...]
) -> None:
    x = with_index(shape, channels_last).astype(np.float32)
    y = np.array([3, 8, 42, 8] * 10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.25)
    assert ds.input_shape == input_shape and ds.n_classes == 3
    assert (len(ds.x_train), len(ds.x_valid)) == (30, 10)
    if x.ndim == 3:
        raw = x[:, None]
    elif channels_last:
        raw = x.transpose(0, 3, 1, 2)
    else:
        raw = x
    train_ids, valid_ids = check_split(ds, raw)
    codes = {3: 0, 8: 1, 42: 2}
    assert ds.y_train.tolist() == [codes[v] for v in y[train_ids]]
    assert ds.y_valid.tolist() == [codes[v] for v in y[valid_ids]]
    assert_standardized(ds.x_train if ds.x_train.ndim == 4 else ds.x_train[:, :, None, None])


def test_npz_with_its_own_validation_set_and_string_labels(tmp_path: Path) -> None:
    x = with_index((15, 4, 4), False)
    np.savez(
        tmp_path / "d.npz",
        x=x[:10].astype(np.uint8),
        y=np.array(["dog", "cat"] * 5),
        x_valid=x[10:].astype(np.uint8),
        y_valid=np.array(["cat", "emu", "dog", "cat", "cat"]),
    )
    a = load_dataset(f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.5)
    b = load_dataset(f"npz:{tmp_path / 'd.npz'}", valid_fraction=0.1, split_seed=9)
    assert (len(a.x_train), len(a.x_valid)) == (10, 5) and a.n_classes == 3
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_valid, b.x_valid)
    assert a.y_train.tolist() == [1, 0] * 5  # cat, dog, emu -> 0, 1, 2
    assert a.y_valid.tolist() == [0, 2, 1, 0, 0]
    train_ids, valid_ids = check_split(a, x.astype(np.uint8)[:, None])
    assert train_ids.tolist() == list(range(10)) and valid_ids.tolist() == list(range(10, 15))


def test_npz_constant_feature_and_float_labels(tmp_path: Path) -> None:
    x = np.random.default_rng(4).normal(size=(20, 3))
    x[:, 1] = 7.0
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20, dtype=np.float64) % 2)
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert torch.isfinite(ds.x_train).all() and torch.isfinite(ds.x_valid).all()
    assert (ds.x_train[:, 1] == 0).all() and (ds.x_valid[:, 1] == 0).all()
    assert ds.n_classes == 2 and set(ds.y_train.tolist()) == {0, 1}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 2))}, "needs arrays 'x' and 'y'"),
        ({"x": np.zeros((4, 2)), "y": np.zeros(3)}, r"expected 4 class labels"),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1.5, 1, 0])}, "whole numbers"),
        ({"x": np.full((4, 2), np.nan), "y": np.arange(4)}, "NaN"),
        ({"x": np.zeros(4), "y": np.arange(4)}, "expected"),
        ({"x": np.zeros((4, 2)), "y": np.arange(4), "x_valid": np.zeros((2, 2))}, "go together"),
        (
            {
                "x": np.zeros((4, 2)),
                "y": np.arange(4),
                "x_valid": np.zeros((2, 3)),
                "y_valid": [1, 2],
            },
            "x_valid samples have shape",
        ),
        (
            {
                "x": np.zeros((4, 2)),
                "y": np.arange(4),
                "x_valid": np.zeros((2, 2)),
                "y_valid": ["a", "b"],
            },
            "different kinds of labels",
        ),
    ],
)
def test_npz_errors_are_clear(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'other.npz'}")
