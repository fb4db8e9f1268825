"""Where a run's Optuna study lives: a SQLAlchemy URL, opened with one-line errors, and never
written or printed with its password.

A run's ``run.json`` and ``summary.json`` keep the URL with its password masked
(``postgresql://user:***@host/db``, SQLAlchemy's own rendering), so a resume takes the password
again from ``--storage`` or from ``HYPERSEARCH_STORAGE``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from hypersearch.errors import UserInputError, user_errors

STORAGE_ENV = "HYPERSEARCH_STORAGE"
_CREDENTIALS = re.compile(r"(//[^/:@]*:)[^/@]*@")


def masked(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (unchanged if it has none)."""
    if url is None:
        return None
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: mask anything shaped like user:password@
        return _CREDENTIALS.sub(r"\1***@", url)


def has_hidden_password(url: str | None) -> bool:
    """Whether ``url`` is a masked URL (its password left out when it was saved)."""
    if url is None:
        return False
    try:
        return make_url(url).password == "***"
    except Exception:
        return False


def resumed_url(saved: str | None, given: str | None) -> str | None:
    """The storage URL to resume a run with: the saved one, with its password taken from
    ``given`` (``--storage`` or ``HYPERSEARCH_STORAGE``), which must name the same database."""
    if given is not None and masked(given) != masked(saved):
        raise UserInputError(
            f"--storage: this run's study is in {masked(saved) or 'its run folder (study.db)'}, "
            f"not in {masked(given)}"
        )
    if has_hidden_password(saved):
        if given is None:
            raise UserInputError(
                f"--resume: the study is in {saved}, whose password is never saved: give it "
                f"again with --storage URL or in the {STORAGE_ENV} environment variable"
            )
        return given
    return saved


def given_storage(flag: str | None) -> str | None:
    """``--storage``, else ``HYPERSEARCH_STORAGE`` (keeps a password out of the command line)."""
    return flag if flag is not None else (os.environ.get(STORAGE_ENV) or None)


def sqlite_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def open_storage(url: str, field: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage (tables created if new); a URL SQLAlchemy cannot read, a missing
    driver or a database that cannot be reached is one line naming ``field``. SQLite runs in
    WAL mode (commits ~2x faster, readers never blocked; still safe against a killed process,
    which is the failure that matters here)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with user_errors(field, url):
        storage = optuna.storages.RDBStorage(url)
        if url.startswith("sqlite"):
            sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
            storage.engine.dispose()  # reconnect with the pragmas
            with storage.engine.connect():
                pass  # open it now: a file that cannot be opened fails here, not later
        return storage


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
