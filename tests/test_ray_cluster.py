"""A real multi-node Ray cluster on this machine (a head with 0 CPUs and worker nodes started
separately with ``ray start``, all on 127.0.0.1): the user's code and settings reach every node,
and losing a node mid-run fails its trial ``worker_lost`` and retries it once."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray")

from hypersearch.processes import group_members
from tests.conftest import REPO, run_cli

RAY = str(Path(sys.executable).parent / "ray")
TOKEN = "tok-123-not-in-any-file"
# Recent Ray turns token authentication on when ~/.ray/auth_token exists; a cluster on loopback
# for one test needs none, and every process (nodes and drivers) must agree on it.
AUTH = {"RAY_AUTH_MODE": "disabled"}


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trials.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Node:
    """One ``ray start --block`` in its own process group: stopping the group stops the node.
    Its output goes to ``log``, shown if the node ends early."""

    def __init__(self, *args: str, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as handle:
            self.process = subprocess.Popen(
                [
                    RAY,
                    "start",
                    "--block",
                    "--node-ip-address",
                    "127.0.0.1",
                    "--disable-usage-stats",
                    *args,
                ],
                env=env,
                process_group=0,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"a Ray node ended ({self.process.returncode}):\n{tail}")

    def raylet(self) -> int:
        """The node's raylet (its process group holds the node's Ray processes)."""
        for pid in group_members(self.process.pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
        raise AssertionError("no raylet in the node's process group")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _clean_env(**extra: str) -> dict[str, str]:
    """The nodes' environment: this one without PYTHONPATH, so a node cannot see the folder
    the objective's module is in unless Ray ships it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env | {"RAY_health_check_period_ms": "1000", **AUTH, **extra}


def _wait_for_nodes(address: str, nodes: list[Node]) -> None:
    """Until the cluster counts every node alive (failing at once if one of them ends)."""
    script = textwrap.dedent(f"""
        import time, ray, logging
        ray.init(address={address!r}, logging_level=logging.ERROR, log_to_driver=False)
        while sum(n["Alive"] for n in ray.nodes()) < {len(nodes)}:
            time.sleep(0.2)
    """)
    waiter = subprocess.Popen([sys.executable, "-c", script], env=_clean_env())
    deadline = time.monotonic() + 600  # a safety net: it takes seconds
    try:
        while waiter.poll() is None:
            for node in nodes:
                node.check_alive()
            assert time.monotonic() < deadline, "the Ray cluster did not form"
            time.sleep(0.2)
        assert waiter.returncode == 0
    finally:
        if waiter.poll() is None:
            waiter.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Node]]]:
    """A head with no CPUs (it runs no trial) and two one-CPU worker nodes, A and B."""
    logs = tmp_path_factory.mktemp("ray-nodes")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head_args = ("--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard=false")
    nodes = [Node(*head_args, env=_clean_env(), log=logs / "head.log")]
    try:
        _wait_for_nodes(address, nodes)
        for name in ("A", "B"):  # one after the other: two starting at once may pick one port
            nodes.append(
                Node(
                    "--address",
                    address,
                    "--num-cpus",
                    "1",
                    env=_clean_env(HS_NODE=name),
                    log=logs / f"{name}.log",
                )
            )
            _wait_for_nodes(address, nodes)
        yield address, nodes
    finally:
        for node in reversed(nodes):
            node.stop()


SHIPPED = f"""
import os

def f(config):
    return {{
        "value": (config["x"] - 0.3) ** 2,
        "token_seen": float(os.environ.get("HS_TOKEN") == "{TOKEN}"),
        "static": float(os.environ.get("HS_STATIC", "0")),
    }}
"""


def _shipped_experiment(root: Path, ray_block: str) -> Path:
    module_dir = root / "user_code"
    module_dir.mkdir(exist_ok=True)
    (module_dir / "shipped_objective.py").write_text(SHIPPED)
    path = root / "exp.yaml"
    path.write_text(
        textwrap.dedent(f"""
            name: shipped
            objective: {{python: "shipped_objective:f"}}
            params: {{x: {{type: float, low: -1, high: 1}}}}
            budget: {{trials: 3, parallel: 2}}
            ray: {ray_block}
        """)
    )
    return path


@pytest.mark.slow
def test_the_objectives_module_and_settings_reach_every_node(
    cluster: tuple[str, list[Node]], tmp_path: Path
) -> None:
    """The module is importable in the driver only through its PYTHONPATH; the nodes do not
    have it. Shipped as ``py_modules``, it runs there, with the forwarded and the declared
    environment variables; the token's value is written nowhere."""
    address, _ = cluster
    path = _shipped_experiment(
        tmp_path, "{forward_env: [HS_TOKEN], runtime_env: {env_vars: {HS_STATIC: '7'}}}"
    )
    env = {"PYTHONPATH": str(tmp_path / "user_code"), "HS_TOKEN": TOKEN, **AUTH}
    out = tmp_path / "runs"
    result = run_cli(
        "run",
        str(path),
        "--executor",
        "ray",
        "--ray-address",
        address,
        "--algo",
        "random",
        "--out",
        str(out),
        "--json",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] == 3, summary
    for values in _rows(Path(summary["run_dir"])):
        assert float(values["token_seen"]) == 1.0 and float(values["static"]) == 7.0, values
    assert not [p for p in out.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]

    # The control: a working_dir of one's own turns the shipping off; this one is empty, so the
    # nodes cannot import the module.
    (tmp_path / "empty").mkdir()
    control = _shipped_experiment(tmp_path, "{runtime_env: {working_dir: empty}}")
    failed = run_cli(
        "run",
        str(control),
        "--executor",
        "ray",
        "--ray-address",
        address,
        "--algo",
        "random",
        "--out",
        str(tmp_path / "control"),
        env=env,
    )
    assert failed.returncode == 1, failed.stderr
    assert "cannot import module 'shipped_objective'" in failed.stderr


NODE_AWARE = """
import os, time
from pathlib import Path

def f(config, ctx):
    node = os.environ.get("HS_NODE", "?")
    marker = Path(%r) / f"{node}-{ctx.number}"
    marker.write_text(str(os.getpid()))
    if node == "B":
        time.sleep(600)  # until the node is lost
    deadline = time.monotonic() + 120
    while not list(Path(%r).glob("B-*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # hold node A's one CPU until a trial is on B: Ray must place one there
    return (config["x"] - 0.3) ** 2
"""


@pytest.mark.slow
def test_losing_a_node_fails_its_trial_worker_lost_and_retries_it_once(
    cluster: tuple[str, list[Node]], tmp_path: Path
) -> None:
    address, nodes = cluster
    node_b = nodes[2]
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "node_aware.py").write_text(NODE_AWARE % (str(markers), str(markers)))
    path = tmp_path / "exp.yaml"
    path.write_text(
        textwrap.dedent(f"""
            name: node-loss
            objective: {{python: {{function: "node_aware:f", path: [{str(tmp_path)!r}]}}}}
            params: {{x: {{type: float, low: -1, high: 1}}}}
            budget: {{trials: 4, parallel: 2}}
        """)
    )
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypersearch.cli",
            "run",
            str(path),
            "--executor",
            "ray",
            "--ray-address",
            address,
            "--algo",
            "random",
            "--out",
            str(tmp_path / "runs"),
            "--json",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **AUTH},
    )
    try:
        deadline = time.monotonic() + 300
        while not list(markers.glob("B-*")):
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "no trial reached node B"
            time.sleep(0.1)
        os.kill(node_b.raylet(), signal.SIGKILL)
        out, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err
    summary = json.loads(out)
    run_dir = Path(summary["run_dir"])
    rows = _rows(run_dir)
    lost = [r for r in rows if r["state"] == "FAIL"]
    assert len(lost) == 1, rows
    assert lost[0]["error"].startswith("worker_lost: "), lost
    assert summary["complete"] == 4 and summary["trials"] == 5, summary  # one retry, in budget
    lost_number = int(lost[0]["number"])
    assert (markers / f"B-{lost_number}").exists()
