"""The processes a trial leaves behind: finding them, killing them, tying a worker's life to
its driver's, and keeping a trial's folder to one process at a time.

Linux-first (``/proc``, ``prctl``); elsewhere the helpers do what the platform allows.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from hypersearch.errors import TrialFailure

_PR_SET_PDEATHSIG = 1


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; fine if it is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _parents_and_groups() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process this one can see in /proc."""
    found = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp
                found[int(entry.name)] = (int(fields[1]), int(fields[2]))
            except (OSError, ValueError, IndexError):
                continue
    return found


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (children, their children, …)."""
    table = _parents_and_groups()
    below: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in table.items() if ppid == parent and p not in below]
        below.update(children)
        frontier += children
    return below


def group_members(pgid: int, *, besides: int | None = None) -> set[int]:
    """The processes in group ``pgid`` (leaving out ``besides``)."""
    return {p for p, (_, g) in _parents_and_groups().items() if g == pgid and p != besides}


def kill_all(pids: set[int]) -> None:
    """SIGKILL each process, and the group of each one that leads its own."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)


def die_with_driver(conn_fd: int, driver_pid: int) -> None:
    """Make this worker (and its process group: the trial's processes) die within moments of
    its driver, however the driver dies, SIGKILL included.

    Two independent ways: the kernel's parent-death signal (``PR_SET_PDEATHSIG``, Linux), whose
    handler kills the group; and a thread that waits for the driver's end of the socket to close
    (the kernel closes it when the driver dies) and kills the group. The second also works
    where the first does not (another OS; a driver thread that started the worker and ended).
    """
    signal.signal(signal.SIGTERM, _kill_own_group)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != driver_pid:  # the driver died before the line above: no signal comes
        _kill_own_group()
    threading.Thread(target=_watch, args=(conn_fd,), daemon=True, name="driver-watch").start()


def _watch(conn_fd: int) -> None:
    """Block until the socket's other end is closed, then kill this worker's group."""
    events = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
    poller = select.poll()
    poller.register(conn_fd, events)
    while True:
        for _, happened in poller.poll():
            if happened & select.POLLNVAL:  # the worker closed the socket itself: it is ending
                return
            if happened & events:
                _kill_own_group()
                return


def _kill_own_group(*_: object) -> None:
    """SIGKILL this process's group: this worker and what its trial started."""
    with contextlib.suppress(OSError):
        if os.getpgid(0) == os.getpid():  # only a group this process leads (never the driver's)
            os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


# -- a trial's folder belongs to one process at a time ----------------------------------------

TRIAL_LOCK = ".lock"


@contextlib.contextmanager
def holding_trial_dir(trial_dir: Path) -> Iterator[None]:
    """Hold ``trial_dir``'s lock while a trial runs in this process (the kernel releases it when
    the process ends, however it ends). A folder that is held already belongs to a trial of a
    killed run that is still running: this trial fails ``worker_lost`` rather than share it.
    A folder this machine cannot create (a Ray node without the run folder) goes unguarded."""
    try:
        trial_dir.mkdir(exist_ok=True)  # in the run's trials/ (never made on a node without it)
        handle = os.open(trial_dir / TRIAL_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TrialFailure(
                "worker_lost",
                f"{trial_dir} is in use by another process (a trial of a killed run still running)",
            ) from None
        yield
    finally:
        os.close(handle)


def trial_dir_free(trial_dir: Path, wait_s: float) -> bool:
    """Whether no process holds ``trial_dir`` (waiting up to ``wait_s`` for the processes of a
    killed driver, which die within moments of it, to let go)."""
    path = trial_dir / TRIAL_LOCK
    deadline = time.monotonic() + wait_s
    while True:
        try:
            handle = os.open(path, os.O_RDONLY)
        except OSError:
            return True  # never locked (or not visible here)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
        finally:
            os.close(handle)
        time.sleep(0.05)
