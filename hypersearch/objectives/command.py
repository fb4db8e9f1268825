"""A command line as the objective: an argv template run without a shell.

``{name}`` in an argv item is replaced by the parameter's value (also ``{trial}``, ``{seed}``,
``{trial_dir}``, ``{device}``); each item stays one argv entry, so values such as ``; rm -rf x``
are never interpreted. The last non-empty line of stdout holds the metrics: a JSON object or a
bare number (``value``). ``python`` as the program means the interpreter running hypersearch.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from hypersearch.database import trial_environment
from hypersearch.errors import TrialFailure
from hypersearch.objectives.base import Objective, TrialContext, as_metrics, register
from hypersearch.processes import kill_group

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
STDERR_TAIL = 2000


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
        # group so that it and every grandchild can be killed together. Under the local
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
            out, err = proc.communicate(timeout=ctx.timeout)
        except BaseException as stop:  # timeout, or anything else that ends the trial early
            kill_group(proc.pid)
            try:  # a grandchild that left the group could still hold the pipes open
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
            if not isinstance(stop, subprocess.TimeoutExpired):
                raise
            raise TrialFailure(
                "timeout",
                f"command still running after {ctx.timeout:g}s (its process group was killed)",
            ) from None
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        tail = stderr[-STDERR_TAIL:].strip()
        if proc.returncode != 0:
            how = (
                f"was killed by {signal.Signals(-proc.returncode).name}"
                if proc.returncode < 0
                else f"exited with status {proc.returncode}"
            )
            raise TrialFailure(
                "exception", f"command {how}" + (f"; stderr: {tail}" if tail else "")
            )
        return parse_metrics(stdout, tail)


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
