"""Run and compare folders: created whole or not at all, under a free name.

A folder is built in a hidden staging folder (``.<name>.<random>.creating``) beside its final
place and renamed into place once complete, so a kill never leaves a half-made run folder. The
staging folder is locked (``flock``) while it is built: a later creation in the same place
removes the staging folders whose creator is gone (lock free, and older than a minute).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hypersearch.errors import NameTaken, UserInputError, user_errors

STAGING_SUFFIX = ".creating"
STALE_AFTER_S = 60.0  # a free staging folder younger than this may be just starting
MAX_ATTEMPTS = 999


def create_folder(
    out: Path, base: str, build: Callable[[Path, str], None], *, numbered: bool = True
) -> Path:
    """Create ``out/base`` (``base-2``, ``base-3``, … when taken and ``numbered``): ``build``
    fills the staging folder given the final name, and may raise ``NameTaken`` (e.g. a study
    of that name exists in a shared database) to move on to the next name. Returns the folder.
    """
    with user_errors("--out", out, writing=True):
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        for attempt in range(1, MAX_ATTEMPTS + 1 if numbered else 2):
            name = base if attempt == 1 else f"{base}-{attempt}"
            final = out / name
            if final.exists():
                continue
            if _built(out, final, build):
                return final
    if not numbered:
        raise UserInputError(f"--out: {out / base} already exists")
    raise UserInputError(f"--out: too many folders named {base} in {out}")


def _built(out: Path, final: Path, build: Callable[[Path, str], None]) -> bool:
    """Build ``final`` in a locked staging folder and rename it into place; False if the name
    turned out to be taken."""
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=STAGING_SUFFIX, dir=out))
    staging.chmod(0o777 & ~_umask())  # mkdtemp's folder is private; a run folder is not
    handle = os.open(staging, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            build(staging, final.name)
            os.rename(staging, final)  # fails if another process took the name meanwhile
            return True
        except NameTaken:
            return False
        except OSError:
            if not final.exists():
                raise
            return False
    finally:
        os.close(handle)  # releases the lock
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove the staging folders in ``out`` whose creator died (their lock is free) and that
    are older than ``STALE_AFTER_S``; returns what was removed."""
    removed = []
    for staging in out.glob(f".*{STAGING_SUFFIX}"):
        if not staging.is_dir() or time.time() - staging.stat().st_mtime < STALE_AFTER_S:
            continue
        with contextlib.suppress(OSError):
            handle = os.open(staging, os.O_RDONLY)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its creator is still at work
            finally:
                os.close(handle)
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
