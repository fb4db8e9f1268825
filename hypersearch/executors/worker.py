"""A worker process: ``python -m hypersearch.executors.worker FD DEVICE DRIVER_PID``.

Started by the local executor as a fresh interpreter (never a fork, never a re-run of the
caller's ``__main__``). It receives the objective spec, then trial requests, over the socket
``FD``, and answers each with a ``TrialResult``; while a trial runs it sends its reports and
hears stops. Ctrl-C is the driver's to handle; when the
driver dies, however it dies, the worker and everything its trial started die with it.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

STARTED = "started"
# (REPORT, seq, Report) worker -> driver; (VERDICT, seq, number, stop) back, awaited
REPORT, VERDICT = "report", "verdict"
VERDICT_WAIT_S = 60.0  # a driver that does not answer (busy, gone) does not hold a trial longer


class _Driver:
    """The worker's end of the socket while trials run: a reader thread takes the driver's
    messages (the next request, or the verdict on a report); a report waits for its verdict,
    so ``should_stop()`` right after ``report()`` already knows it, as in-process."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.requests: queue.Queue[Any] = queue.Queue()
        self._stopped: set[int] = set()
        self._sending = threading.Lock()
        self._verdict = threading.Event()
        self._seq = 0  # the report awaiting its verdict
        threading.Thread(target=self._read, daemon=True, name="driver-reader").start()

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self.requests.put(None)  # the driver went away
                return
            if isinstance(message, tuple) and message[:1] == (VERDICT,):
                _, seq, number, stop = message
                if stop:
                    self._stopped.add(number)
                if seq == self._seq:  # a late verdict on an older report wakes nobody
                    self._verdict.set()
            else:
                self.requests.put(message)

    def send(self, message: Any) -> None:
        with self._sending:
            self.conn.send(message)

    def start(self) -> None:
        """A new trial: stops were for earlier ones (maybe of an earlier run of a compare)."""
        self._stopped.clear()

    def report(self, report: Any) -> None:
        self._verdict.clear()
        self._seq += 1
        self.send((REPORT, self._seq, report))
        self._verdict.wait(VERDICT_WAIT_S)

    def stopped(self, number: int) -> bool:
        return number in self._stopped


def serve(conn: Connection, device: str) -> None:
    from hypersearch.executors.base import execute
    from hypersearch.experiment import ObjectiveSpec
    from hypersearch.objectives import build_objective

    try:
        spec = conn.recv()
    except (EOFError, OSError):
        return  # the driver went away before sending anything
    objective = build_objective(ObjectiveSpec.model_validate(spec))
    driver = _Driver(conn)
    while True:
        request = driver.requests.get()
        if request is None:
            return
        driver.start()
        driver.send(STARTED)  # the trial's clock starts now, not while this worker was starting
        driver.send(execute(objective, request, device, channel=driver))


if __name__ == "__main__":
    from hypersearch.processes import die_with_driver

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_driver(int(sys.argv[1]), int(sys.argv[3]))
    serve(Connection(int(sys.argv[1])), sys.argv[2])
