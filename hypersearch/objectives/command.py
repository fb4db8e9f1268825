"""A command line as the objective: an argv template run without a shell.

``{name}`` in an argv item is replaced by the parameter's value (also ``{trial}``, ``{seed}``,
``{trial_dir}``, ``{device}``); each item stays one argv entry, so values such as ``; rm -rf x``
are never interpreted. The last non-empty line of stdout holds the metrics: a JSON object or a
bare number (``value``). A stdout line that is a JSON object with an integer ``"step"`` is an
intermediate report; a command the scheduler stops gets SIGTERM (SIGKILL after a grace) and is
recorded PRUNED. ``python`` as the program means the interpreter running hypersearch.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from hypersearch.database import trial_environment
from hypersearch.errors import TrialFailure, TrialPruned
from hypersearch.objectives.base import Objective, TrialContext, as_metrics, register
from hypersearch.processes import descendants, kill_all, kill_group

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
STDERR_TAIL = 2000
STOP_GRACE_S = 5.0  # a stopped command has this long after SIGTERM before SIGKILL


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@register("command")
class CommandObjective(Objective):
    def argv(self, config: Mapping[str, Any], ctx: TrialContext) -> list[str]:
        values = {
            "trial": str(ctx.number),
            "seed": str(ctx.seed),
            "trial_dir": str(ctx.trial_dir),
            "device": ctx.device,
        }
        values.update((k, _text(v)) for k, v in config.items())  # a parameter named seed wins
        argv = [
            PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), item)
            for item in self.spec.argv
        ]
        if argv[0] == "python":
            argv[0] = sys.executable
        return argv

    def evaluate(self, config: Mapping[str, Any], ctx: TrialContext) -> dict[str, float]:
        ctx.trial_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **trial_environment(),  # never HYPERSEARCH_STORAGE
            **self.spec.env,
            "HYPERSEARCH_TRIAL": str(ctx.number),
            "HYPERSEARCH_SEED": str(ctx.seed),
            "HYPERSEARCH_TRIAL_DIR": str(ctx.trial_dir),
            "HYPERSEARCH_CONFIG": json.dumps(dict(config)),
        }
        argv = self.argv(config, ctx)
        # With a timeout to enforce here (inline executor), the command gets its own process
        # group so that it and every grandchild can be signalled together. Under the local
        # executor the worker's group is killed instead, which includes the command.
        own_group = ctx.timeout is not None
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.spec.cwd,
                env=env,
                process_group=0 if own_group else None,
            )
        except OSError as exc:
            raise TrialFailure("exception", f"cannot start {argv[0]!r}: {exc}") from None
        try:
            lines, tail, stopped = _follow(proc, ctx)
        except BaseException:  # a timeout, or anything else that ends the trial early
            _terminate(proc, own_group, grace_s=0.0)
            raise
        if stopped:
            _terminate(proc, own_group, grace_s=STOP_GRACE_S)
            raise TrialPruned
        if proc.returncode != 0:
            how = (
                f"was killed by {signal.Signals(-proc.returncode).name}"
                if proc.returncode < 0
                else f"exited with status {proc.returncode}"
            )
            raise TrialFailure(
                "exception", f"command {how}" + (f"; stderr: {tail}" if tail else "")
            )
        return parse_metrics("\n".join(lines), tail)  # the last line, report or not


def _follow(proc: subprocess.Popen[bytes], ctx: TrialContext) -> tuple[list[str], str, bool]:
    """Read the command's stdout as it comes: report lines go to ``ctx.report``; stop early
    when the scheduler says so. Returns (stdout lines, stderr tail, stopped)."""
    assert proc.stdout is not None and proc.stderr is not None
    out: queue.Queue[str | None] = queue.Queue()
    err: list[bytes] = []
    stdout, stderr = proc.stdout, proc.stderr
    threading.Thread(target=_pump, args=(stdout, out), daemon=True).start()
    reader = threading.Thread(target=lambda: err.append(stderr.read()), daemon=True)
    reader.start()
    deadline = None if ctx.timeout is None else time.monotonic() + ctx.timeout
    lines: list[str] = []
    while True:
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            raise TrialFailure(
                "timeout",
                f"command still running after {ctx.timeout:g}s (its process group was killed)",
            )
        try:
            line = out.get(timeout=wait)
        except queue.Empty:
            continue
        if line is None:
            break
        lines.append(line.strip())
        report = _report(line)
        if report is not None and (not ctx.reports or report[0] > ctx.reports[-1].step):
            ctx.report(*report)  # (a repeated or earlier step is a log line, not a report)
            if ctx.should_stop():
                return lines, "", True
    proc.wait()
    reader.join(timeout=5)
    tail = b"".join(err).decode(errors="replace")[-STDERR_TAIL:].strip()
    return lines, tail, False


def _pump(stream: IO[bytes], out: queue.Queue[str | None]) -> None:
    """Each line of ``stream`` into ``out``, then None at its end."""
    for raw in stream:
        out.put(raw.decode(errors="replace"))
    out.put(None)


def _report(line: str) -> tuple[int, dict[str, float]] | None:
    """A stdout line that is a JSON object with an integer ``step`` (and numbers besides) is
    a report; any other line is output."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    step = data.pop("step", None)
    if isinstance(step, bool) or not isinstance(step, int):
        return None
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values())
    return (step, {k: float(v) for k, v in data.items()}) if numbers else None


def _terminate(proc: subprocess.Popen[bytes], own_group: bool, grace_s: float) -> None:
    """SIGTERM the command (its group, or it and its descendants), SIGKILL after ``grace_s``;
    then wait for it, and for a grandchild that left the group and holds the pipes."""
    targets = {proc.pid} | (set() if own_group else descendants(proc.pid))
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if own_group:
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
    if grace_s > 0:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    if own_group:
        kill_group(proc.pid)
    else:
        kill_all(targets | descendants(proc.pid))
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


def parse_metrics(stdout: str, stderr_tail: str = "") -> dict[str, float]:
    """Metrics from the last non-empty stdout line: a JSON object or a bare number."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    try:
        return as_metrics(json.loads(last), "command")
    except (json.JSONDecodeError, TrialFailure):
        pass
    try:
        return {"value": float(last)}  # also nan / inf, which fail as non_finite later
    except ValueError:
        shown = last if len(last) <= 200 else last[:197] + "..."
        raise TrialFailure(
            "exception",
            "the last line of stdout is not a JSON object or a "
            f"number: {shown!r}" + (f"; stderr: {stderr_tail}" if stderr_tail else ""),
        ) from None
