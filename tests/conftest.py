"""Shared fixtures: experiment files written to a temp folder, and a CLI runner in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_experiment(tmp_path: Path):
    """Write YAML text (dedented) to tmp_path/<name>.yaml and return the path."""

    def write(text: str, name: str = "exp") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return write


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``hypersearch ARGS`` as a user would: a real process, its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "hypersearch.cli", *args],
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
