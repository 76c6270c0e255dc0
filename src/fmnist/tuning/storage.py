"""Where a study lives: SQLite (one worker) or PostgreSQL (many workers, one or many machines).

Heartbeats are on for both: a worker records one every `interval` seconds while its trial runs, and
a trial whose heartbeat is older than `grace` seconds (its worker was killed, its machine lost) is
failed and retried once by whichever worker looks next. FMNIST_TUNE_HEARTBEAT=INTERVAL,GRACE
(seconds) changes both; the tests use it to see a killed worker's trial handled in seconds.

The global trial budget is counted under a lock (a PostgreSQL advisory lock, a file lock beside a
SQLite file), held from the count until the new trial exists, so workers together start exactly the
budget, never one more.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from fmnist.errors import FmnistError

HEARTBEAT = (10, 60)  # seconds: a heartbeat every 10 s; a trial silent for 60 s is stale
CONNECT_TIMEOUT = 10  # seconds before an unreachable PostgreSQL server is an error


# Optuna 4.9 renamed RetryFailedTrialCallback (which only ever retried heartbeat-stale trials).
RETRY = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback


class StorageError(FmnistError):
    """A storage URL is malformed, or its database cannot be reached."""


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace) in seconds: FMNIST_TUNE_HEARTBEAT=INTERVAL,GRACE, else HEARTBEAT."""
    text = os.environ.get("FMNIST_TUNE_HEARTBEAT")
    if not text:
        return HEARTBEAT
    try:
        interval, grace = (int(part) for part in text.split(","))
    except ValueError:
        raise StorageError(f"FMNIST_TUNE_HEARTBEAT: expected INTERVAL,GRACE in whole seconds, got {text!r}") from None
    if not 1 <= interval < grace:
        raise StorageError(f"FMNIST_TUNE_HEARTBEAT: need 1 <= INTERVAL < GRACE, got {text!r}")
    return interval, grace


def storage_url(storage: str | None, out: Path) -> str:
    """The study's database URL: `storage`, or a SQLite file in the output folder."""
    if storage is None:
        return f"sqlite:///{Path(out).resolve() / 'study.db'}"
    return storage


def kind_of(url: str) -> str:
    """sqlite | postgresql; anything else is an error naming what is accepted."""
    try:
        backend = make_url(url).get_backend_name()
    except (sqlalchemy.exc.ArgumentError, ValueError):
        backend = None
    if backend in ("sqlite", "postgresql"):
        return backend
    raise StorageError(f"--storage {hide_password(url)}: expected sqlite:///PATH or postgresql://USER@HOST/DB")


def hide_password(url: str) -> str:
    """The URL as it may be printed: its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return "<unparsable URL>"


def _driver_url(url: str) -> sqlalchemy.URL:
    """psycopg 3 (the `tune` extra) for postgresql:// URLs; SQLAlchemy would look for psycopg2."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("psycopg2", ""):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "postgres":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's storage, connected, with heartbeats and one retry of a stale trial."""
    kind = kind_of(url)
    interval, grace = heartbeat_settings()
    parsed = _driver_url(url)
    engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True} if kind == "postgresql" else {}
    if kind == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: "experimental" since 2.8
            return optuna.storages.RDBStorage(
                parsed.render_as_string(hide_password=False), engine_kwargs=engine_kwargs,
                heartbeat_interval=interval, grace_period=grace,
                heartbeat_stale_trial_callback=RETRY(max_retry=1))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        raise StorageError(f"--storage {hide_password(url)}: cannot open the study database "
                           f"({_reason(exc, parsed.password)})") from None


def _reason(exc: Exception, password: str | None) -> str:
    """The driver's first line, never the password."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    reason = lines[0] if lines else type(original).__name__
    if password:
        reason = reason.replace(password, "***")
    return reason[:300]


@contextlib.contextmanager
def budget_lock(storage: optuna.storages.RDBStorage, study_name: str) -> Iterator[callable]:
    """Hold the study's budget lock; yields `release`, to call once the new trial exists (and called
    again, harmlessly, on leaving)."""
    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
    url = storage.engine.url
    if url.get_backend_name() == "postgresql":
        connection = storage.engine.connect()
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.close()
    elif url.database not in (None, "", ":memory:"):
        handle = open(f"{url.database}.lock", "a")
        fcntl.flock(handle, fcntl.LOCK_EX)

        def release() -> None:
            if not handle.closed:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
    else:
        def release() -> None:
            pass
    try:
        yield release
    finally:
        release()
