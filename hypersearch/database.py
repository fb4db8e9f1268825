"""Where a run's Optuna study lives: a SQLAlchemy URL, opened with one-line errors, and never
written or printed with its password.

A run's ``run.json`` and ``summary.json`` keep the URL with its password masked
(``postgresql://user:***@host/db``), so a resume takes the password again from ``--storage`` or
from ``HYPERSEARCH_STORAGE``. Trials never see that variable.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from hypersearch.errors import UserInputError, register_wording, user_errors

if TYPE_CHECKING:  # optuna and SQLAlchemy are imported where a database is opened: every
    import optuna  # process importing this module (trial workers too) would pay ~0.3 s

STORAGE_ENV = "HYPERSEARCH_STORAGE"
# user:password@ up to the last "@" (a password may hold an unescaped "@" or "/"), and query
# parameters that carry secrets (?password=…, &sslpassword=…). Masking matches the raw text,
# so a URL that SQLAlchemy would misread is masked all the same.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:).*@")
_QUERY_SECRET = re.compile(r"([?&][^=&#]*(?:pass|secret|token)[^=&#]*=)[^&#]*", re.IGNORECASE)
HIDDEN = "***"
URL_FORM = "dialect[+driver]://user:password@host:port/database"
# The Python package each SQLAlchemy database driver comes from, for "needs the … package".
_DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
}


@overload
def masked(url: str) -> str: ...
@overload
def masked(url: None) -> None: ...
def masked(url: str | None) -> str | None:
    """``url`` with its password (and any password-like query parameter) replaced by ``***``;
    unchanged if it has none. As SQLAlchemy's ``render_as_string(hide_password=True)`` does
    for a well-formed URL, and also for one it would misread."""
    if url is None:
        return None
    return _QUERY_SECRET.sub(rf"\1{HIDDEN}", _USERINFO.sub(rf"\1{HIDDEN}@", url, count=1))


def has_hidden_password(url: str | None) -> bool:
    """Whether ``url`` was saved masked: its password must come from elsewhere to resume."""
    return url is not None and HIDDEN in url and masked(url) == url


def resumed_url(saved: str | None, given: str | None) -> str | None:
    """The storage URL to resume a run with: the saved one, whose hidden password comes from
    ``given`` (``--storage``) or else from ``HYPERSEARCH_STORAGE``; either must name the same
    database. Without a hidden password the variable is not needed, and not looked at."""
    if given is not None:
        if masked(given) != masked(saved):
            raise UserInputError(
                f"--storage: this run's study is in "
                f"{masked(saved) or 'its run folder (study.db)'}, not in {masked(given)}"
            )
        return given
    if not has_hidden_password(saved):
        return saved
    from_env = os.environ.get(STORAGE_ENV) or None
    if from_env is None:
        raise UserInputError(
            f"--resume: the study is in {saved}, whose password is never saved: give it again "
            f"with --storage URL or in the {STORAGE_ENV} environment variable"
        )
    if masked(from_env) != saved:
        raise UserInputError(
            f"{STORAGE_ENV}: this run's study is in {saved}, not in {masked(from_env)}"
        )
    return from_env


def given_storage(flag: str | None) -> str | None:
    """A new run's storage: ``--storage``, else ``HYPERSEARCH_STORAGE`` (which keeps the password
    off the command line)."""
    return flag if flag is not None else (os.environ.get(STORAGE_ENV) or None)


def trial_environment() -> dict[str, str]:
    """This process's environment without ``HYPERSEARCH_STORAGE``: what trials may see."""
    return {k: v for k, v in os.environ.items() if k != STORAGE_ENV}


@contextlib.contextmanager
def storage_env_hidden() -> Iterator[None]:
    """Leave ``HYPERSEARCH_STORAGE`` out of processes started meanwhile (a local Ray instance,
    whose workers inherit this environment)."""
    value = os.environ.pop(STORAGE_ENV, None)
    try:
        yield
    finally:
        if value is not None:
            os.environ[STORAGE_ENV] = value


def sqlite_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def open_storage(url: str, field: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage (tables created if new); a URL SQLAlchemy cannot read, a missing
    driver or a database that cannot be reached is one line naming ``field``. SQLite runs in
    WAL mode (commits ~2x faster, readers never blocked; still safe against a killed process,
    which is the failure that matters here)."""
    import optuna
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise UserInputError(
            f"{field}: not a database URL SQLAlchemy understands (expected {URL_FORM}; "
            f"got {masked(url)})"
        ) from None
    shown = parsed.render_as_string(hide_password=True).split("?")[0]
    if shown != (masked(url) or "").split("?")[0]:  # an unescaped @ or / in the password
        raise UserInputError(
            f"{field}: cannot tell the password from the host in {masked(url)}: "
            "percent-encode '@', '/' and '?' in a password (%40, %2F, %3F)"
        )
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


# -- database errors as one line (for errors.user_errors) ---------------------------------------


def describe_error(err: BaseException, target: str | None) -> str | None:
    """A missing driver, a URL SQLAlchemy cannot use, or a database that cannot be reached or
    written, in one line; None for any other error. ``target`` is the (masked) URL or path."""
    if isinstance(err, ModuleNotFoundError) and err.name and target and "://" in target:
        module = err.name.split(".")[0]
        package = _DRIVER_PACKAGES.get(module, module)
        return f"{_backend(target)[0]} needs the {module} package (pip install {package})"
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None:  # never imported: the error cannot be one of SQLAlchemy's
        return None
    backend, where = _backend(target)
    if isinstance(err, exc.NoSuchModuleError):
        return f"unknown database kind {backend!r} (expected {URL_FORM})"
    if isinstance(err, exc.ArgumentError):
        return f"not a database URL SQLAlchemy understands (expected {URL_FORM})"
    if not isinstance(err, exc.DBAPIError):
        return None
    reason = _dbapi_reason(err)
    if where is None:  # SQLite: a file
        return f"cannot use the database {_database(target)} ({reason})"
    if isinstance(err, exc.OperationalError):
        return f"cannot connect to {backend} at {where} ({reason})"
    return f"{backend} at {where}: {reason}"


def _backend(url: str | None) -> tuple[str, str | None]:
    """(backend name, ``host:port`` or None for a file database) of a masked storage URL."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url or "")
    except Exception:
        return (url or "").split("://")[0] or "the database", None
    backend = parsed.get_backend_name()
    if not parsed.host:
        return backend, None
    return backend, f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host


def _database(url: str | None) -> str:
    """The database a URL names (a SQLite file's path), for messages."""
    from sqlalchemy.engine import make_url

    try:
        return str(make_url(url or "").database)
    except Exception:
        return "the database"


def _dbapi_reason(err: Any) -> str:
    """What the database driver said, shortened: 'connection refused', 'password
    authentication failed for user "x"', 'attempt to write a readonly database'."""
    text = " ".join(str(getattr(err, "orig", err) or type(err).__name__).split())
    if " failed: " in text:  # libpq: connection to server at "h", port p failed: <why>
        text = text.rsplit(" failed: ", 1)[1]
    text = text.removeprefix("FATAL: ").split(" Is the server running")[0].strip()
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


register_wording(describe_error, mask=masked)  # errors.user_errors words and masks as above
