"""The tasks of the quality benchmark (``benchmarks/quality.py``), half to tune on, half held out.

Four kinds, each in both halves, so a default chosen on the ``tune`` half can be judged on the
``held-out`` half:

- ``synthetic``: classic test functions, rotated by a fixed seeded rotation and shifted so that
  the optimum sits at an irrational share of every coordinate's range (never the box's centre,
  never a grid point; a rotation couples the coordinates, so no method wins by searching one
  axis at a time). Some are noisy: the optimizer is told the value plus Gaussian noise, the
  score uses the noiseless value.
- ``mixed``: an 8-parameter synthetic hyperparameter response (log-scale learning rates,
  integer widths and depths, a categorical that changes the level and the other parameters'
  optima, a stepped float), with its optimum computed exactly.
- ``sklearn``: scikit-learn models on its bundled datasets (Bayesmark's search spaces), loss =
  3-fold cross-validated log-loss, error rate or 1 - R². The folds and the models' seeds are
  fixed, so these are deterministic: the same config always scores the same.
- ``trainer``: hypersearch's built-in PyTorch trainer on digits (a small MLP, two epochs, seed
  0, one thread: deterministic), loss = validation cross-entropy; a diverging run fails.

Each evaluation costs well under 0.2 s on one core (``python benchmarks/quality.py
--list-tasks`` measures it), so the whole suite stays affordable at 10 seeds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from hypersearch.errors import TrialFailure
from hypersearch.objectives.synthetic import hartmann6
from hypersearch.space import SearchSpace

KINDS = ("synthetic", "mixed", "sklearn", "trainer")
HALVES = ("tune", "held-out")
GOLDEN = (math.sqrt(5) - 1) / 2


class TaskFailure(Exception):
    """An evaluation that produced no loss (a diverging training run): the trial failed."""


@dataclass(frozen=True)
class Task:
    """One benchmark problem: a search space and a loss to minimize.

    ``fn(config)`` is the noiseless loss (raises ``TaskFailure`` for a failed trial); the
    optimizer is told ``objective(config, rng)``, that plus Gaussian noise of std ``noise``.
    ``optimum``/``optimum_config`` are known for synthetic and mixed tasks. Bump ``version``
    when ``fn`` changes, so that cached runs of the task are redone.
    """

    name: str
    kind: str
    half: str
    params: Mapping[str, Mapping[str, Any]]
    fn: Callable[[Mapping[str, Any]], float] = field(repr=False)
    noise: float = 0.0
    optimum: float | None = None
    optimum_config: Mapping[str, Any] | None = None
    note: str = ""
    version: int = 1

    @property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.params)

    def objective(self, config: Mapping[str, Any], rng: np.random.Generator) -> float:
        """The loss the optimizer is told: noiseless plus noise (raises ``TaskFailure``)."""
        value = self.fn(config)
        return value + self.noise * float(rng.standard_normal()) if self.noise else value


# --- synthetic: rotated and shifted ----------------------------------------------------------


def rotation(dim: int, seed: int) -> np.ndarray:
    """A seeded random rotation (Haar-distributed: QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def shifted_optimum(dim: int, salt: float) -> np.ndarray:
    """Where the optimum sits in the unit cube: 15-85% of each range by the golden-ratio
    sequence started at an irrational ``salt`` (never 0.5, never a multiple of 1/2^k)."""
    return 0.15 + 0.7 * np.mod(salt + GOLDEN * np.arange(1, dim + 1), 1.0)


def rosenbrock(z: np.ndarray) -> float:
    return float(np.sum(100.0 * (z[1:] - z[:-1] ** 2) ** 2 + (1.0 - z[:-1]) ** 2))


def ackley(z: np.ndarray) -> float:
    d = len(z)
    return float(
        -20.0 * np.exp(-0.2 * np.sqrt(np.sum(z**2) / d))
        - np.exp(np.sum(np.cos(2 * np.pi * z)) / d)
        + 20.0
        + math.e
    )


def rastrigin(z: np.ndarray) -> float:
    return float(10.0 * len(z) + np.sum(z**2 - 10.0 * np.cos(2 * np.pi * z)))


def styblinski_tang(z: np.ndarray) -> float:
    return float(0.5 * np.sum(z**4 - 16.0 * z**2 + 5.0 * z))


def levy(z: np.ndarray) -> float:
    w = 1.0 + (z - 1.0) / 4.0
    return float(
        np.sin(np.pi * w[0]) ** 2
        + np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:-1] + 1) ** 2))
        + (w[-1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[-1]) ** 2)
    )


def ellipsoid(z: np.ndarray) -> float:
    """Axis scales from 1 to 1000 (condition number 10^6 of the Hessian)."""
    return float(np.sum(10.0 ** (3.0 * np.arange(len(z)) / (len(z) - 1)) * z**2))


# Styblinski-Tang's minimiser per coordinate: the smallest root of 4z^3 - 32z + 5.
STYBLINSKI_Z = float(np.min(np.roots([4.0, 0.0, -32.0, 5.0]).real))
# Hartmann-6's minimiser, refined from the published (0.20169, ..., 0.6573) by BFGS.
HARTMANN_Z = np.array(
    [
        0.20168950909365746,
        0.15001069354111374,
        0.4768739729250998,
        0.2753324275220782,
        0.3116516172395686,
        0.6573005345536702,
    ]
)


def rotated(
    name: str,
    base: Callable[[np.ndarray], float],
    z_star: float | np.ndarray,
    dim: int,
    box: tuple[float, float],
    half: str,
    *,
    seed: int,
    noise: float = 0.0,
) -> Task:
    """``base`` seen through a rotation about its minimiser ``z_star``, which is moved to an
    off-centre, off-grid point ``x_star`` of the box: f(x) = base(R (x - x_star) + z_star).
    ``base``'s minimum over all of R^d is at ``z_star``, so the box's minimum is at
    ``x_star`` and is ``base(z_star)``."""
    low, high = box
    turn = rotation(dim, seed)
    z0 = np.broadcast_to(np.asarray(z_star, dtype=float), (dim,)).copy()
    x_star = low + (high - low) * shifted_optimum(dim, math.sqrt(2) * seed % 1.0)
    names = [f"x{i}" for i in range(dim)]

    def fn(config: Mapping[str, Any]) -> float:
        x = np.array([config[n] for n in names], dtype=float)
        return base(turn @ (x - x_star) + z0)

    return Task(
        name=name,
        kind="synthetic",
        half=half,
        params={n: {"type": "float", "low": low, "high": high} for n in names},
        fn=fn,
        noise=noise,
        optimum=base(z0),
        optimum_config={n: float(v) for n, v in zip(names, x_star, strict=True)},
        note=f"{base.__name__} {dim}-D in [{low:g}, {high:g}]^{dim}, rotated",
    )


# --- mixed-type synthetic responses ------------------------------------------------------------

NET_PARAMS: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99},
    "batch_size": {"type": "int", "low": 16, "high": 1024, "log": True},
    "width": {"type": "int", "low": 16, "high": 2048, "log": True},
    "layers": {"type": "int", "low": 1, "high": 8},
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop", "adagrad"]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.8, "step": 0.05},
    "weight_decay": {"type": "float", "low": 1e-8, "high": 0.1, "log": True},
}
# Per optimizer: level, best log10(lr) at batch 128 (SGD: at momentum 0), lr's batch scaling.
NET_OPTIMIZERS = {
    "sgd": (0.0, -1.3, 0.5),
    "adam": (0.008, -3.1, 0.3),
    "rmsprop": (0.02, -3.4, 0.3),
    "adagrad": (0.06, -1.7, 0.4),
}


def _net_capacity(width: float, layers: float) -> tuple[float, float]:
    """Width and depth's share of the loss, and the dropout the capacity wants."""
    c = math.log2(width) + 1.2 * math.log2(layers)
    depth = 0.006 * (layers - 3.4) ** 2
    return 0.015 * (c - 9.7) ** 2 + depth, min(max(0.05 * (c - 6.0), 0.0), 0.8)


def net_response(config: Mapping[str, Any]) -> float:
    """A validation error as a network's hyperparameters might shape it: a lopsided bowl in
    log(lr) (too high hurts more) whose centre moves with the batch size and, for SGD, with the
    momentum (effective lr = lr / (1 - momentum)); SGD is best only with its momentum tuned;
    capacity from width and depth, the dropout it needs, a weak weight-decay bowl."""
    level, lr0, scaling = NET_OPTIMIZERS[config["optimizer"]]
    target = lr0 + scaling * math.log10(config["batch_size"] / 128)
    if config["optimizer"] == "sgd":
        target += math.log10(1 - config["momentum"])
        level += 0.3 * (config["momentum"] - 0.93) ** 2
    else:
        level += 0.02 * (config["momentum"] - 0.9) ** 2
    miss = math.log10(config["lr"]) - target
    capacity, wanted = _net_capacity(config["width"], config["layers"])
    return (
        0.05
        + level
        + (0.15 if miss > 0 else 0.05) * miss**2
        + 0.004 * (math.log2(config["batch_size"]) - 6.6) ** 2
        + capacity
        + 0.4 * (config["dropout"] - wanted) ** 2
        + 0.01 * (math.log10(config["weight_decay"]) + 4.2) ** 2
    )


def net_optimum() -> dict[str, Any]:
    """The exact minimiser of ``net_response``: SGD at momentum 0.93, the integer width, depth
    and batch and the dropout step that are best, lr at the centre of its bowl."""
    space = SearchSpace.from_dict(NET_PARAMS)
    candidates = []
    for w in range(16, 2049):
        for n in range(1, 9):
            capacity, wanted = _net_capacity(w, n)
            d = round(0.05 * round(wanted / 0.05), 2)  # the nearest dropout step
            candidates.append((capacity + 0.4 * (d - wanted) ** 2, w, n, d))
    best = min(candidates)
    batch = min(range(16, 1025), key=lambda b: (math.log2(b) - 6.6) ** 2)
    lr = 10 ** (-1.3 + 0.5 * math.log10(batch / 128) + math.log10(1 - 0.93))
    config = {
        "lr": lr,
        "momentum": 0.93,
        "batch_size": batch,
        "width": best[1],
        "layers": best[2],
        "optimizer": "sgd",
        "dropout": best[3],
        "weight_decay": 10**-4.2,
    }
    return {n: config[n] for n in space.names}


BOOST_PARAMS: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
    "n_estimators": {"type": "int", "low": 10, "high": 2000, "log": True},
    "max_depth": {"type": "int", "low": 1, "high": 12},
    "subsample": {"type": "float", "low": 0.3, "high": 1.0},
    "colsample": {"type": "float", "low": 0.3, "high": 1.0},
    "min_child_weight": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
    "booster": {"type": "categorical", "choices": ["gbtree", "dart", "gblinear"]},
    "reg_lambda": {"type": "float", "low": 1e-4, "high": 100.0, "log": True},
}
# Per booster: level and best depth (gblinear has no depth).
BOOSTERS = {"gbtree": (0.0, 5.6), "dart": (0.004, 4.3), "gblinear": (0.05, None)}
# The learning-rate/rounds trade-off: a (log lr - P)^2 + b (log lr + log rounds - Q)^2.
BOOST_A, BOOST_B, BOOST_P, BOOST_Q = 0.01, 0.03, -1.35, 1.93


def boost_response(config: Mapping[str, Any]) -> float:
    """A validation error as gradient boosting's hyperparameters might shape it: smaller steps
    need more rounds (a valley along lr x rounds), the best depth depends on the booster,
    row and column subsampling interact, weak bowls in min_child_weight and L2."""
    level, depth = BOOSTERS[config["booster"]]
    lr, rounds = math.log10(config["learning_rate"]), math.log10(config["n_estimators"])
    s, c = config["subsample"] - 0.81, config["colsample"] - 0.67
    return (
        0.1
        + level
        + (0.006 * (config["max_depth"] - depth) ** 2 if depth is not None else 0.0)
        + BOOST_A * (lr - BOOST_P) ** 2
        + BOOST_B * (lr + rounds - BOOST_Q) ** 2
        + 0.1 * s**2
        + 0.1 * c**2
        + 0.08 * s * c
        + 0.005 * (math.log10(config["min_child_weight"]) - 0.4) ** 2
        + 0.004 * (math.log10(config["reg_lambda"]) - 0.7) ** 2
    )


def boost_optimum() -> dict[str, Any]:
    """The exact minimiser of ``boost_response``: gbtree at depth 6, the best integer number of
    rounds, and for it the learning rate that minimises the valley (in closed form)."""
    a, b, p, q = BOOST_A, BOOST_B, BOOST_P, BOOST_Q
    rounds = min(range(10, 2001), key=lambda n: (p + math.log10(n) - q) ** 2)
    lr = (a * p + b * (q - math.log10(rounds))) / (a + b)
    return {
        "learning_rate": 10**lr,
        "n_estimators": rounds,
        "max_depth": 6,
        "subsample": 0.81,
        "colsample": 0.67,
        "min_child_weight": 10**0.4,
        "booster": "gbtree",
        "reg_lambda": 10**0.7,
    }


def mixed(
    name: str,
    params: dict[str, dict[str, Any]],
    fn: Callable[[Mapping[str, Any]], float],
    best: dict[str, Any],
    half: str,
    noise: float = 0.0,
) -> Task:
    return Task(
        name=name,
        kind="mixed",
        half=half,
        params=params,
        fn=fn,
        noise=noise,
        optimum=fn(best),
        optimum_config=best,
        note=f"{fn.__name__}: log-scale, integer and categorical parameters",
    )


# --- scikit-learn ------------------------------------------------------------------------------


@cache
def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled scikit-learn dataset, features standardized (once, on all rows: what matters
    here is a fixed landscape, not an unbiased error estimate)."""
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    bunch = getattr(datasets, f"load_{name}")()
    return StandardScaler().fit_transform(bunch.data), bunch.target


def cross_validated(model: Any, data: str, scoring: str) -> float:
    """The 3-fold cross-validated loss of ``model`` on ``data`` (fixed, seeded folds; stratified
    for classifiers): ``scoring`` is a scikit-learn scorer, negated (or 1 - accuracy/R²)."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    x, y = dataset(data)
    regression = scoring == "r2"
    folds = (KFold if regression else StratifiedKFold)(3, shuffle=True, random_state=0)
    with warnings.catch_warnings(), threadpool_limits(1):  # one thread, as costs are quoted
        warnings.simplefilter("ignore")  # convergence warnings of deliberately short fits
        score = float(np.mean(cross_val_score(model, x, y, cv=folds, scoring=scoring)))
    return 1.0 - score if scoring in ("accuracy", "r2") else -score


def mlp_sgd(config: Mapping[str, Any]) -> float:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=(config["hidden_layer_sizes"],),
        alpha=config["alpha"],
        batch_size=config["batch_size"],
        learning_rate_init=config["learning_rate_init"],
        power_t=config["power_t"],
        tol=config["tol"],
        momentum=config["momentum"],
        validation_fraction=config["validation_fraction"],
        solver="sgd",
        learning_rate="invscaling",
        early_stopping=True,
        max_iter=12,
        random_state=0,
    )
    return cross_validated(model, "wine", "neg_log_loss")


def svc(config: Mapping[str, Any]) -> float:
    from sklearn.svm import SVC

    model = SVC(
        C=config["C"],
        kernel=config["kernel"],
        gamma=config["gamma"],
        degree=config["degree"],
        coef0=config["coef0"],
        tol=config["tol"],
        max_iter=3000,
    )
    return cross_validated(model, "breast_cancer", "accuracy")


def decision_tree(config: Mapping[str, Any]) -> float:
    from sklearn.tree import DecisionTreeClassifier

    return cross_validated(
        DecisionTreeClassifier(**config, random_state=0), "breast_cancer", "accuracy"
    )


def boosting(config: Mapping[str, Any]) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(**config, early_stopping=False, random_state=0)
    return cross_validated(model, "breast_cancer", "neg_log_loss")


def random_forest(config: Mapping[str, Any]) -> float:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(**config, n_estimators=10, random_state=0)
    return cross_validated(model, "breast_cancer", "neg_log_loss")


def gradient_boosting(config: Mapping[str, Any]) -> float:
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(**config, random_state=0)
    return cross_validated(model, "diabetes", "r2")


def sklearn_task(
    name: str, fn: Callable[[Mapping[str, Any]], float], params: dict[str, Any], half: str
) -> Task:
    return Task(name=name, kind="sklearn", half=half, params=params, fn=fn, note=fn.__doc__ or "")


mlp_sgd.__doc__ = "Bayesmark's MLP-SGD on wine, 12 epochs, 3-fold log-loss"
svc.__doc__ = "SVC on breast_cancer, 3-fold error rate"
decision_tree.__doc__ = "Bayesmark's decision tree on breast_cancer, 3-fold error rate"
boosting.__doc__ = "HistGradientBoosting on breast_cancer, 3-fold log-loss"
random_forest.__doc__ = "Bayesmark's random forest (10 trees) on breast_cancer, 3-fold log-loss"
gradient_boosting.__doc__ = "GradientBoostingRegressor on diabetes, 3-fold 1 - R²"


def log(low: float, high: float) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, "log": True}


def real(low: float, high: float) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high}


def integer(low: int, high: int, log: bool = False) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high, "log": log}


def choice(*choices: Any) -> dict[str, Any]:
    return {"type": "categorical", "choices": list(choices)}


# --- the built-in trainer ----------------------------------------------------------------------


def trainer(fixed: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], float]:
    """The built-in trainer on digits with ``fixed`` settings and the config's, in this process
    (seed 0): the validation loss; a diverging run is a failed trial."""

    def fn(config: Mapping[str, Any]) -> float:
        import torch

        from hypersearch.objectives.trainer.data import load_dataset
        from hypersearch.objectives.trainer.loop import train
        from hypersearch.objectives.trainer.settings import TrainerSpec

        settings = TrainerSpec(**(dict(fixed) | dict(config)))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread, as costs are quoted (and deterministic)
        try:
            metrics = train(settings, load_dataset("digits"), seed=0, device="cpu")
        except TrialFailure as failure:
            raise TaskFailure(str(failure)) from failure
        finally:
            torch.set_num_threads(threads)
        return float(metrics["val_loss"])

    return fn


def trainer_task(name: str, fixed: dict[str, Any], params: dict[str, Any], half: str) -> Task:
    shown = ", ".join(f"{k} {v}" for k, v in fixed.items())
    return Task(
        name=name,
        kind="trainer",
        half=half,
        params=params,
        fn=trainer(fixed),
        note=f"built-in trainer on digits ({shown}), validation loss",
    )


# --- the suite -------------------------------------------------------------------------------


def build_tasks() -> list[Task]:
    """Every task, in table order: the tune half, then the held-out half."""
    tune = [
        rotated("rosenbrock6", rosenbrock, 1.0, 6, (-2.048, 2.048), "tune", seed=1),
        rotated("rastrigin5", rastrigin, 0.0, 5, (-5.12, 5.12), "tune", seed=2),
        rotated("levy4", levy, 1.0, 4, (-10.0, 10.0), "tune", seed=3),
        rotated("ellipsoid10-noisy", ellipsoid, 0.0, 10, (-5.0, 5.0), "tune", seed=4, noise=100.0),
        mixed("net-response", NET_PARAMS, net_response, net_optimum(), "tune"),
        sklearn_task("mlp-sgd-wine", mlp_sgd, MLP_SGD, "tune"),
        sklearn_task("svc-cancer", svc, SVC_PARAMS, "tune"),
        sklearn_task("tree-cancer", decision_tree, TREE_PARAMS, "tune"),
        trainer_task("trainer-sgd", TRAINER_SGD_FIXED, TRAINER_SGD, "tune"),
    ]
    held_out = [
        rotated("ackley8", ackley, 0.0, 8, (-8.0, 8.0), "held-out", seed=5),
        rotated("styblinski6", styblinski_tang, STYBLINSKI_Z, 6, (-5.0, 5.0), "held-out", seed=6),
        rotated("hartmann6-noisy", hartmann6, HARTMANN_Z, 6, (0, 1), "held-out", seed=7, noise=0.1),
        mixed("boost-noisy", BOOST_PARAMS, boost_response, boost_optimum(), "held-out", 0.003),
        sklearn_task("hgb-cancer", boosting, HGB_PARAMS, "held-out"),
        sklearn_task("forest-cancer", random_forest, FOREST_PARAMS, "held-out"),
        sklearn_task("gbr-diabetes", gradient_boosting, GBR_PARAMS, "held-out"),
        trainer_task("trainer-arch", TRAINER_ARCH_FIXED, TRAINER_ARCH, "held-out"),
    ]
    return tune + held_out


# Bayesmark's MLP-SGD space (its logit-scaled ones here linear).
MLP_SGD = {
    "hidden_layer_sizes": integer(50, 200),
    "alpha": log(1e-5, 10.0),
    "batch_size": integer(10, 250),
    "learning_rate_init": log(1e-5, 0.1),
    "power_t": real(0.1, 0.9),
    "tol": log(1e-5, 0.1),
    "momentum": real(0.001, 0.999),
    "validation_fraction": real(0.1, 0.9),
}
SVC_PARAMS = {
    "C": log(1e-2, 1e3),
    "gamma": log(1e-5, 10.0),
    "kernel": choice("rbf", "poly", "sigmoid"),
    "degree": integer(2, 5),
    "coef0": real(-1.0, 1.0),
    "tol": log(1e-5, 0.1),
}
# Bayesmark's decision-tree space.
TREE_PARAMS = {
    "max_depth": integer(1, 15),
    "min_samples_split": real(0.01, 0.99),
    "min_samples_leaf": real(0.01, 0.49),
    "min_weight_fraction_leaf": real(0.01, 0.49),
    "max_features": real(0.01, 0.99),
    "min_impurity_decrease": real(0.0, 0.5),
}
HGB_PARAMS = {
    "learning_rate": log(1e-3, 1.0),
    "max_iter": integer(4, 24),
    "max_leaf_nodes": integer(4, 64, log=True),
    "min_samples_leaf": integer(2, 100, log=True),
    "l2_regularization": log(1e-6, 10.0),
    "max_features": real(0.1, 1.0),
    "max_bins": integer(8, 128),
}
# Bayesmark's random-forest space.
FOREST_PARAMS = {
    "max_depth": integer(1, 15),
    "max_features": real(0.01, 0.99),
    "min_samples_split": real(0.01, 0.99),
    "min_samples_leaf": real(0.01, 0.49),
    "min_weight_fraction_leaf": real(0.01, 0.49),
    "min_impurity_decrease": real(0.0, 0.5),
}
GBR_PARAMS = {
    "learning_rate": log(1e-3, 1.0),
    "n_estimators": integer(5, 60, log=True),
    "max_depth": integer(1, 6),
    "subsample": real(0.3, 1.0),
    "min_samples_leaf": integer(1, 64, log=True),
    "max_features": real(0.1, 1.0),
}
TRAINER_SGD_FIXED = {"model": "mlp", "depth": 2, "epochs": 2, "schedule": "onecycle"}
TRAINER_SGD = {
    "lr": log(1e-3, 3.0),
    "momentum": real(0.0, 0.99),
    "weight_decay": log(1e-6, 0.1),
    "width": integer(8, 128, log=True),
    "batch_size": integer(32, 256, log=True),
}
TRAINER_ARCH_FIXED = {"model": "mlp", "width": 32, "epochs": 2}
TRAINER_ARCH = {
    "lr": log(1e-3, 3.0),
    "momentum": real(0.0, 0.99),
    "nesterov": choice(False, True),
    "schedule": choice("constant", "cosine", "onecycle"),
    "depth": integer(1, 4),
    "dropout": real(0.0, 0.6),
    "batch_size": integer(32, 256, log=True),
}

TASKS: dict[str, Task] = {task.name: task for task in build_tasks()}
