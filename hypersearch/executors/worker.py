"""A worker process: ``python -m hypersearch.executors.worker FD DEVICE DRIVER_PID``.

Started by the local executor as a fresh interpreter (never a fork, never a re-run of the
caller's ``__main__``). It receives the objective spec, then trial requests, over the socket
``FD``, and answers each with a ``TrialResult``. Ctrl-C is the driver's to handle; when the
driver dies, however it dies, the worker and everything its trial started die with it.
"""

from __future__ import annotations

import signal
import sys
from multiprocessing.connection import Connection

STARTED = "started"


def serve(conn: Connection, device: str) -> None:
    from hypersearch.executors.base import execute
    from hypersearch.experiment import ObjectiveSpec
    from hypersearch.objectives import build_objective

    try:
        spec = conn.recv()
    except (EOFError, OSError):
        return  # the driver went away before sending anything
    objective = build_objective(ObjectiveSpec.model_validate(spec))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        conn.send(STARTED)  # the trial's clock starts now, not while this worker was starting
        conn.send(execute(objective, request, device))


if __name__ == "__main__":
    from hypersearch.processes import die_with_driver

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_driver(int(sys.argv[1]), int(sys.argv[3]))
    serve(Connection(int(sys.argv[1])), sys.argv[2])
