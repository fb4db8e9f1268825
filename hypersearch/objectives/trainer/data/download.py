"""Fetching dataset files from their official locations: atomic downloads checked against the
published md5, and safe extraction of downloaded archives. Every failure says how to place the
files by hand."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from hypersearch.objectives.trainer.data.dataset import DatasetError


def announce(label: str, url: str, folder: Path) -> None:
    """Say on stderr what is being downloaded where (a download can take minutes)."""
    print(f"downloading {label} from {url} into {folder}", file=sys.stderr, flush=True)


def download(url: str, target: Path, md5: str | None, label: str, files: Sequence[str]) -> None:
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


def safe_extract(archive: Path, folder: Path) -> None:
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
