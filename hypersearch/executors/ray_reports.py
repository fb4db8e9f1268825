"""Reports and stops for the Ray executor: a trial's Ray task cannot hear the driver while it
runs, so both talk through a small Ray actor, the *board*, made by the driver (one per executor,
on the driver's node, so losing a worker node does not lose it).

A trial's ``ctx.report`` calls ``board.report`` and waits (at most ``VERDICT_WAIT_S``, as a local
worker does) for that report's verdict; the driver, in its poll loop, takes the waiting reports,
lets its listener judge each and posts the verdicts back. Every report call awaits its own
verdict and every task attempt has its own key, so a verdict never reaches another trial, nor
another attempt of the same one; reports from an attempt the driver no longer follows (timed
out, lost) are not heard, and told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Collection
from typing import Any

import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from hypersearch.executors.worker import VERDICT_WAIT_S
from hypersearch.trials import Report

BOARD_CONCURRENCY = 10_000  # reports waiting for their verdicts at once (one per running trial)

# (key, attempt, report): a report waiting on the board; the key names its verdict
Waiting = tuple[int, int, Report]


class ReportBoard:
    """The Ray actor (async: waiting reports hold no thread) between the trials and the driver."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[Waiting] = asyncio.Queue()
        self._verdicts: dict[int, asyncio.Future[bool]] = {}
        self._keys = itertools.count()

    async def report(self, attempt: int, report: Report) -> bool:
        """A trial's report: whether it should stop (False if no verdict comes in time)."""
        key = next(self._keys)
        verdict = asyncio.get_running_loop().create_future()
        self._verdicts[key] = verdict
        self._inbox.put_nowait((key, attempt, report))
        try:
            return bool(await asyncio.wait_for(verdict, VERDICT_WAIT_S))
        except TimeoutError:
            return False
        finally:
            del self._verdicts[key]

    async def take(self) -> list[Waiting]:
        """The reports waiting for a verdict; returns once there is at least one."""
        taken = [await self._inbox.get()]
        while not self._inbox.empty():
            taken.append(self._inbox.get_nowait())
        return taken

    async def answer(self, verdicts: dict[int, bool]) -> None:
        """The driver's verdicts, by key (a report no longer waiting is past caring)."""
        for key, stop in verdicts.items():
            verdict = self._verdicts.get(key)
            if verdict is not None and not verdict.done():
                verdict.set_result(stop)


class BoardChannel:
    """A trial's ``Channel`` in its Ray worker: each report waits for its verdict, so
    ``should_stop()`` right after ``report()`` already knows it. A board that cannot be reached
    (gone, or slow past the wait) stops nothing: the trial goes on."""

    def __init__(self, board: Any, attempt: int) -> None:
        self._board, self._attempt = board, attempt
        self._stopped: set[int] = set()  # member numbers, for a population

    def report(self, report: Report) -> None:
        call = self._board.report.remote(self._attempt, report)
        try:
            stop = ray.get(call, timeout=VERDICT_WAIT_S + 5.0)
        except ray.exceptions.RayError:  # timed out, or the board is gone
            return
        if stop:
            self._stopped.add(report.number)

    def stopped(self, number: int) -> bool:
        return number in self._stopped


class ReportRelay:
    """The driver's end: the board (made with the first trial that has someone to hear its
    reports), and the pending ``take`` call that the poll loop waits on with the tasks."""

    def __init__(self, node: str | None) -> None:
        self._node = node  # where the board goes: the driver's node
        self._board: Any = None
        self._taking: Any = None  # the board's pending take(): ready once reports wait
        self._attempts = itertools.count()

    def attempt(self) -> int:
        """A new task attempt's key (never reused while the executor lives)."""
        return next(self._attempts)

    def board(self) -> Any:
        """The board's handle, made if there is none (or the last one was lost)."""
        if self._board is None:
            strategy: Any = "DEFAULT"
            if self._node is not None:
                strategy = NodeAffinitySchedulingStrategy(self._node, soft=True)
            actor = ray.remote(ReportBoard).options(
                num_cpus=0,
                max_concurrency=BOARD_CONCURRENCY,
                max_restarts=0,
                scheduling_strategy=strategy,
            )
            self._board = actor.remote()
            self._taking = self._board.take.remote()
        return self._board

    def waitables(self) -> list[Any]:
        """What to wait on besides the tasks: ready when reports wait for a verdict."""
        return [] if self._taking is None else [self._taking]

    def relay(self, live: Collection[int], heard: Callable[[Report], bool]) -> None:
        """Judge the waiting reports of the ``live`` attempts with ``heard`` (any other attempt
        is told to stop, unheard) and post the verdicts back."""
        if self._taking is None or not ray.wait([self._taking], timeout=0)[0]:
            return
        try:
            taken: list[Waiting] = ray.get(self._taking)
        except ray.exceptions.RayError:  # the board died: later trials get a new one
            self._board = self._taking = None
            return
        board, self._taking = self._board, self._board.take.remote()
        board.answer.remote({key: heard(r) if a in live else True for key, a, r in taken})

    def close(self) -> None:
        if self._board is not None:
            with contextlib.suppress(Exception):
                ray.kill(self._board)
        self._board = self._taking = None
