"""Connecting to Ray for the Ray executor: a cluster (``--ray-address``), or a private local
instance, with the trials' runtime environment.

Without an address a private Ray instance is started, bound to 127.0.0.1 (every Ray process
listens on loopback only), and stopped with the executor. An address is checked before anything
starts: ``HOST:PORT`` must answer (``ray.init`` would retry for minutes). The experiment's
``ray:`` becomes Ray's ``runtime_env``: its ``runtime_env`` as given, the ``forward_env``
variables copied from this process's environment and, on a cluster, the python objective's own
module (``py_modules``). Problems with any of these are one-line ``UserInputError``s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import ray.runtime_env
import ray.util

from hypersearch.database import storage_env_hidden
from hypersearch.errors import UserInputError

if TYPE_CHECKING:
    from hypersearch.experiment import ObjectiveSpec, RaySpec

LOCAL_OBJECT_STORE_BYTES = 128 * 2**20  # trials pass small results only


def runtime_env(
    objective_spec: ObjectiveSpec, ray_spec: RaySpec | None, *, ship_objective: bool
) -> dict[str, Any] | None:
    """Ray's ``runtime_env`` for the trials: the experiment's ``ray.runtime_env``, the
    ``ray.forward_env`` variables copied from this process's environment into ``env_vars``,
    and, when ``ship_objective`` (a cluster, whose nodes do not see this machine's files) and
    neither ``working_dir`` nor ``py_modules`` is set, the python objective's module, if it is
    not an installed package (``py_modules``: Ray uploads it and puts it on the workers' path).
    """
    env = dict(ray_spec.runtime_env) if ray_spec is not None else {}
    env_vars = dict(env.get("env_vars", {}))
    for name in ray_spec.forward_env if ray_spec is not None else []:
        if name not in os.environ:
            raise UserInputError(f"ray.forward_env: {name} is not set in this environment")
        env_vars[name] = os.environ[name]
    if env_vars:
        env["env_vars"] = env_vars
    if ship_objective and "working_dir" not in env and "py_modules" not in env:
        module = _objective_module(objective_spec)
        if module is not None:
            env["py_modules"] = [module]
    try:  # Ray's own checks (paths that exist, types), before anything starts
        ray.runtime_env.RuntimeEnv(**env)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"ray.runtime_env: {' '.join(str(err).split())}") from None
    return env or None


def _objective_module(objective_spec: ObjectiveSpec) -> str | None:
    """The file or package folder of a python objective's top-level module, unless it is
    installed (site-packages, the standard library): what a cluster's nodes lack."""
    if objective_spec.python is None:
        return None
    import importlib.machinery
    import sysconfig

    top = objective_spec.python.function.split(":")[0].split(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [*objective_spec.python.path, *sys.path])
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None
    origin = Path(spec.origin).resolve()
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    if any(origin.is_relative_to(Path(folder).resolve()) for folder in installed):
        return None
    locations = list(spec.submodule_search_locations or [])
    return str(Path(locations[0]).resolve()) if locations else str(origin)


def connect(
    address: str | None,
    parallel: int,
    cpus_per_trial: float,
    gpus_per_trial: float,
    env: dict[str, Any] | None = None,
) -> bool:
    """Start a local Ray instance, or connect to ``address``, with the trials' runtime
    environment ``env``; False if this process already was connected (the caller's Ray, e.g.
    from the Python API: left alone at shutdown)."""
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if env is not None:
        quiet["runtime_env"] = env
    _silence_worker_errors()
    if address is not None:
        mode = _mode_for(address)
        try:
            with mode:
                ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError, ImportError) as err:
            about_auth = "auth" in str(err).lower() and "RAY_AUTH_MODE" not in os.environ
            hint = "; token auth needs RAY_AUTH_MODE=token" if about_auth else ""
            raise UserInputError(
                f"--ray-address: cannot connect to a Ray cluster at {address!r} ({err}{hint})"
            ) from None
        if not _fits(cpus_per_trial, gpus_per_trial):
            print(
                f"warning: no node of the Ray cluster at {address} has {cpus_per_trial:g} CPUs "
                f"and {gpus_per_trial:g} GPUs for a trial; trials wait until one joins",
                file=sys.stderr,
            )
        return True
    # Ray takes 127.0.0.1 to mean "this node's reachable address" unless it thinks it runs on a
    # laptop (macOS, Windows): borrow that mode so every Ray process listens on loopback only.
    with _laptop_mode(), storage_env_hidden():  # its workers inherit this environment
        ray.init(
            address="local",
            num_cpus=max(os.cpu_count() or 1, math.ceil(parallel * cpus_per_trial)),
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
    if not _fits(cpus_per_trial, gpus_per_trial):
        found = ray.cluster_resources().get("GPU", 0.0)
        ray.shutdown()
        raise UserInputError(
            f"budget.gpus_per_trial: {gpus_per_trial:g} GPU(s) per trial, but Ray found "
            f"{found:g} on this machine"
        )
    return True


def _fits(cpus: float, gpus: float) -> bool:
    """Whether some node of the cluster could run a trial (were it idle)."""
    for node in ray.nodes():
        held = node.get("Resources", {})
        if node.get("Alive") and held.get("CPU", 0) >= cpus and held.get("GPU", 0) >= gpus:
            return True
    return False


def _silence_worker_errors() -> None:
    """Ray prints a paragraph to the driver's stdout when a worker dies, even without
    ``log_to_driver``: it would break ``--json`` and the progress display, and the trial's
    ``worker_lost`` error already says it. Ray's own switch for this is a private flag."""
    from ray._private import worker

    if hasattr(worker, "_worker_logs_enabled"):
        worker._worker_logs_enabled = False


def check_address(address: str) -> None:
    """Fail at once if nothing answers at ``HOST:PORT`` (``ray.init`` would retry for minutes).
    Other forms ("auto", ``ray://…`` for Ray Client) are left to Ray; anything else is refused
    before a run folder is made."""
    where = _host_port(address)
    if where is None and address != "auto" and "://" not in address:
        raise UserInputError(
            f"--ray-address: expected HOST:PORT, ray://HOST:PORT or auto (got {address!r})"
        )
    if where is not None and not _answers(*where):
        raise UserInputError(
            f"--ray-address: nothing answers at {address} (is `ray start --head` running there?)"
        )


def _host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _mode_for(address: str) -> contextlib.AbstractContextManager[None]:
    """How to connect: as usual or, for a Ray instance listening on loopback only (such as the
    one this executor starts), in the mode that keeps Ray on loopback."""
    check_address(address)
    where = _host_port(address)
    if where is None:
        return contextlib.nullcontext()
    host, port = where
    loopback = host == "localhost" or host == "::1" or host.startswith("127.")
    if loopback and not _answers(ray.util.get_node_ip_address(), port):
        return _laptop_mode()
    return contextlib.nullcontext()


def _answers(host: str, port: int, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _laptop_mode() -> Iterator[None]:
    """Ray's switch for macOS/Windows, where it keeps to loopback (a private flag: if a Ray
    version lacks it, Ray binds to the node's address as usual)."""
    from ray._private import ray_constants

    previous = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    if previous is None:
        yield
        return
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous
