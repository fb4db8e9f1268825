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
# (REPORT, Report) worker -> driver; (VERDICT, number, stop) back, which the report awaits
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
        threading.Thread(target=self._read, daemon=True, name="driver-reader").start()

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self.requests.put(None)  # the driver went away
                return
            if isinstance(message, tuple) and message[:1] == (VERDICT,):
                if message[2]:
                    self._stopped.add(message[1])
                self._verdict.set()
            else:
                self.requests.put(message)

    def send(self, message: Any) -> None:
        with self._sending:
            self.conn.send(message)

    def report(self, report: Any) -> None:
        self._verdict.clear()
        self.send((REPORT, report))
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
        driver.send(STARTED)  # the trial's clock starts now, not while this worker was starting
        driver.send(execute(objective, request, device, channel=driver))


if __name__ == "__main__":
    from hypersearch.processes import die_with_driver

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_driver(int(sys.argv[1]), int(sys.argv[3]))
    serve(Connection(int(sys.argv[1])), sys.argv[2])
