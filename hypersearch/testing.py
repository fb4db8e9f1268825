"""Testing algorithms: the contract suite every algorithm passes, and the synthetic drivers the
quality tests and ``benchmarks/quality.py`` share (so the benchmark measures what tests assert).

The contract (as Optuna ships ``optuna/testing/pytest_samplers.py``): ``check_algorithm`` runs
every check in ``CHECKS`` against a registered name or an ``Algorithm`` subclass. Each drives the
algorithm as the engine does: ids are trial numbers, ``parallel`` trials are in flight, results
arrive in random order, some fail, some are pruned (stopped early by a scheduler, told with the
step they reached and their learning curve), foreign trials (a lost worker's retry, a warm
start) arrive under ids it never issued, a run interrupted with trials in flight is resumed by a
fresh instance told the history, and a warm start (trials of earlier runs told before the first
ask) changes what a learning algorithm asks::

    from hypersearch.testing import check_algorithm

    def test_my_algorithm() -> None:
        check_algorithm(MyAlgorithm)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hypersearch import pareto
from hypersearch.algorithms import Algorithm, Observation, Suggestion, create
from hypersearch.experiment import parse_experiment
from hypersearch.objectives.synthetic import FUNCTIONS
from hypersearch.space import SearchSpace

Factory = Callable[[SearchSpace, int, int], Algorithm]  # (space, n_objectives, seed)

# Every parameter kind; the loss's optimum sits off the centre and off any grid.
MIXED = SearchSpace.from_dict(
    {
        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
        "momentum": {"type": "float", "low": 0.0, "high": 0.99},
        "layers": {"type": "int", "low": 1, "high": 6},
        "width": {"type": "int", "low": 8, "high": 512, "log": True},
        "opt": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop"]},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    }
)
TARGET_SEED = 2718
CURVE_STEPS = 4  # steps a simulated trial reports when trials can be pruned


def contract_loss(space: SearchSpace, x: np.ndarray) -> float:
    """A smooth loss of the config ``x`` decodes to (so ints and categoricals matter), least
    at a seeded point that is neither the cube's centre nor a grid point."""
    target = np.random.default_rng(TARGET_SEED).uniform(0.13, 0.87, space.dim)
    return float(np.sum((space.encode(space.decode(x)) - target) ** 2))


def factory_of(algorithm: str | type[Algorithm]) -> Factory:
    """A factory from a registered name or an ``Algorithm`` subclass."""
    if isinstance(algorithm, str):
        name = algorithm
        return lambda space, m, seed: create(name, space, m, seed=seed)
    cls = algorithm
    return lambda space, m, seed: cls(space, m, seed=seed)


@dataclass
class Session:
    """What a simulated engine did: suggestions in ask order, observations in tell order, the
    trials in flight, and every id taken (trial numbers)."""

    asked: list[Suggestion] = field(default_factory=list)
    told: list[Observation] = field(default_factory=list)
    in_flight: dict[int, Suggestion] = field(default_factory=dict)
    ids: set[int] = field(default_factory=set)


def simulate(
    algorithm: Algorithm,
    trials: int,
    *,
    parallel: int = 4,
    seed: int = 0,
    fail_rate: float = 0.0,
    foreign_rate: float = 0.0,
    objectives: int = 1,
    session: Session | None = None,
    prune_rate: float = 0.0,
) -> Session:
    """Run ``algorithm`` as the engine does until ``trials`` more results were told (others
    still in flight, as when a run is interrupted): ``parallel`` trials in flight, one finished
    at random at a time; a share ``fail_rate`` fails; with probability ``foreign_rate`` per step
    a foreign trial (an id the algorithm never issued, as from a warm start) is told; with
    ``prune_rate``, trials report a learning curve and that share of them is pruned. Checks the
    id contract."""
    s = session or Session()
    space, rng = algorithm.space, np.random.default_rng([seed, 104729])
    goal = len(s.told) + trials
    while len(s.told) < goal:
        wanted = parallel - len(s.in_flight)  # the run goes on: trials are in flight at the end
        asked = algorithm.ask(wanted)
        _require(len(asked) <= wanted, f"asked for {wanted}, got {len(asked)}")
        for suggestion in asked:
            _check_suggestion(suggestion, space, s)
            s.asked.append(suggestion)
            s.in_flight[suggestion.id] = suggestion
        if rng.random() < foreign_rate:
            foreign = Suggestion(max(s.ids, default=-1) + 1, rng.random(space.dim))
            s.ids.add(foreign.id)
            s.told.append(_observe(foreign, space, rng, fail_rate, objectives, prune_rate))
            algorithm.tell(s.told[-1:])
            continue
        _require(s.in_flight, f"{type(algorithm).__name__} asked nothing with nothing in flight")
        done = s.in_flight.pop(list(s.in_flight)[rng.integers(len(s.in_flight))])
        s.told.append(_observe(done, space, rng, fail_rate, objectives, prune_rate))
        algorithm.tell(s.told[-1:])
    return s


def _require(condition: object, message: str) -> None:
    """An ``assert`` that ``python -O`` cannot strip: the contract holds or it raises."""
    if not condition:
        raise AssertionError(message)


def _check_suggestion(suggestion: Suggestion, space: SearchSpace, s: Session) -> None:
    x = np.asarray(suggestion.x)
    _require(isinstance(suggestion.id, int), f"id {suggestion.id!r} is not an int")
    _require(suggestion.id not in s.ids, f"id {suggestion.id} was already taken")
    _require(x.shape == (space.dim,), f"point of shape {x.shape}, not ({space.dim},)")
    _require(np.all(np.isfinite(x)), f"{x} is not finite")
    _require(np.all((x >= 0) & (x <= 1)), f"{x} is outside the unit cube")
    space.decode(x)
    s.ids.add(suggestion.id)


def _observe(
    suggestion: Suggestion,
    space: SearchSpace,
    rng: np.random.Generator,
    fail: float,
    m: int,
    prune: float = 0.0,
) -> Observation:
    """The result of a trial: failed with probability ``fail``, else ``m`` losses. With
    ``prune``, it reports ``loss + 1 / step`` at steps 1 to ``CURVE_STEPS`` and is pruned with
    that probability at a random step before the last (its last report sometimes NaN)."""
    if rng.random() < fail:
        return Observation(suggestion.id, suggestion.x, None)
    loss = contract_loss(space, suggestion.x)
    losses = (loss, float(suggestion.x[0]) - loss)[:m]
    if not prune:
        return Observation(suggestion.id, suggestion.x, losses)
    stop = int(rng.integers(1, CURVE_STEPS)) if rng.random() < prune else CURVE_STEPS
    curve = {step: loss + 1.0 / step for step in range(1, stop + 1)}
    if stop == CURVE_STEPS:
        return Observation(suggestion.id, suggestion.x, losses, None, curve)
    if rng.random() < 0.1:
        curve[stop] = float("nan")  # diverged
    return Observation(suggestion.id, suggestion.x, None, stop, curve)


# --- the checks ---------------------------------------------------------------------------------


def check_points_are_in_the_cube_and_ids_unique(factory: Factory) -> None:
    """Suggestions lie in [0, 1]^d, decode, and never reuse a trial's id (asserted by
    ``simulate`` for every suggestion of every check)."""
    session = simulate(factory(MIXED, 1, 0), 30, parallel=4, foreign_rate=0.2)
    _require(len({o.id for o in session.told}) == len(session.told) == 30, "ids told twice")


def check_same_seed_same_points(factory: Factory) -> None:
    """Seeded: the same seed asks the same points, another seed others."""
    a, b, c = (simulate(factory(MIXED, 1, seed), 24, parallel=3) for seed in (7, 7, 8))
    same = [np.array_equal(x.x, y.x) for x, y in zip(a.asked, b.asked, strict=True)]
    other = [np.array_equal(x.x, y.x) for x, y in zip(a.asked, c.asked, strict=False)]
    _require(all(same), "the same seed asked different points")
    _require(not all(other), "another seed asked the same points")


def check_ask_returns_at_most_n(factory: Factory) -> None:
    algorithm = factory(MIXED, 1, 0)
    for n in (1, 2, 5, 1, 8):
        asked = algorithm.ask(n)
        _require(len(asked) <= n, f"ask({n}) returned {len(asked)}")
        algorithm.tell([Observation(s.id, s.x, (contract_loss(MIXED, s.x),)) for s in asked])
    _require(algorithm.ask(0) == [], "ask(0) returned suggestions")


def check_out_of_order_failures_and_foreign_trials(factory: Factory) -> None:
    """Random completion order, 30% failures and foreign trials: the run reaches its budget
    (``simulate`` asserts the algorithm never stalls with nothing in flight)."""
    simulate(factory(MIXED, 1, 0), 40, parallel=5, fail_rate=0.3, foreign_rate=0.15)


def check_every_trial_failing(factory: Factory) -> None:
    simulate(factory(MIXED, 1, 0), 16, parallel=4, fail_rate=1.0)


def check_resume_asks_what_the_original_would(factory: Factory) -> None:
    """Interrupted with trials in flight, a fresh instance told the history (ids it never
    issued, in the order they were told) and handed the trials in flight as ``pending`` asks
    exactly what the original asks next, under the same ids; and again once the trials that
    were in flight have finished, in random order."""
    for seed in (0, 1):
        _resume(factory, seed)


def _resume(
    factory: Factory,
    seed: int,
    prune_rate: float = 0.0,
    warm: list[Observation] | None = None,
    trials: int = 17,
) -> None:
    """``warm``: a warm start, told first to the original and to the resumed instance."""
    original, warm = factory(MIXED, 1, 5), warm or []
    original.tell(warm)
    session = simulate(
        original,
        trials,
        parallel=4,
        seed=seed,
        fail_rate=0.2,
        foreign_rate=0.1,
        session=Session(ids={o.id for o in warm}),
        prune_rate=prune_rate,
    )
    resumed = factory(MIXED, 1, 5)
    resumed.tell([replace(o, x=o.x.copy(), curve=dict(o.curve)) for o in warm + session.told])
    resumed.pending(list(session.in_flight.values()))
    flying = {s.x.tobytes() for s in session.in_flight.values()}
    for n in (2, 3):
        got = _same_asks(original, resumed, n)
        _require(not flying & {s.x.tobytes() for s in got}, "asked a point in flight again")
    rng, results = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    late = _in_flight(original)  # those of the interrupted run and those asked since
    for k in rng.permutation(len(late)):  # finish, in random order
        result = _observe(late[k], MIXED, results, 0.0, 1, prune_rate)
        original.tell([result])
        resumed.tell([result])
    _same_asks(original, resumed, 3)


def _in_flight(algorithm: Algorithm) -> list[Suggestion]:
    """The suggestions an algorithm has in flight (asked, not told), in id order."""
    return [Suggestion(id_, x) for id_, x in sorted(algorithm.in_flight.items())]


def _same_asks(original: Algorithm, resumed: Algorithm, n: int) -> list[Suggestion]:
    """Ask both for ``n``; they must agree on ids and points."""
    expected, got = original.ask(n), resumed.ask(n)
    ids = [s.id for s in expected], [s.id for s in got]
    _require(ids[0] == ids[1], f"resumed: ids {ids[1]}, uninterrupted: {ids[0]}")
    for x, y in zip(expected, got, strict=True):
        np.testing.assert_allclose(y.x, x.x, rtol=0, atol=1e-12, err_msg="resumed asked otherwise")
    return got


WARM_TRIALS = 16  # past any start-up phase: TPE's 10 trials, a GA population, a swarm of 8


def warm_observations(space: SearchSpace, n: int = WARM_TRIALS) -> list[Observation]:
    """``n`` finished trials of an earlier run, under the negative ids the engine tells them
    with (``hypersearch.warm_start``)."""
    rng = np.random.default_rng(31337)
    points = [space.encode(space.decode(rng.random(space.dim))) for _ in range(n)]
    return [Observation(k - n, x, (contract_loss(space, x),)) for k, x in enumerate(points)]


def check_warm_start(factory: Factory) -> None:
    """Told an earlier run's trials before its first ask (ids it never issued), an algorithm
    asks otherwise than a fresh one with the same seed, unless no result ever changes what it
    asks (random search, as Optuna's RandomSampler); and a warm-started run, resumed (told the
    warm trials, then its history), asks what the uninterrupted one would."""
    warm = warm_observations(MIXED)
    hot = factory(MIXED, 1, 3)
    hot.tell(warm)
    session = simulate(hot, 4, parallel=4, session=Session(ids={o.id for o in warm}))
    cold = factory(MIXED, 1, 3).ask(len(session.asked[:4]))
    same = all(np.array_equal(a.x, b.x) for a, b in zip(cold, session.asked, strict=False))
    _require(
        not same or _learns_nothing(factory),
        f"told {len(warm)} earlier trials, it asked what a fresh instance asks",
    )
    _resume(factory, 0, warm=warm, trials=9)


def _learns_nothing(factory: Factory) -> bool:
    """Whether results never change what an algorithm asks: two instances told opposite
    losses for 48 trials of their own (past any start-up phase) ask the same points."""
    a, b = factory(MIXED, 1, 3), factory(MIXED, 1, 3)
    for _ in range(12):
        asked = a.ask(4), b.ask(4)
        if [s.x.tobytes() for s in asked[0]] != [s.x.tobytes() for s in asked[1]]:
            return False
        losses = [contract_loss(MIXED, s.x) for s in asked[0]]
        a.tell([Observation(s.id, s.x, (v,)) for s, v in zip(asked[0], losses, strict=True)])
        b.tell([Observation(s.id, s.x, (-v,)) for s, v in zip(asked[1], losses, strict=True)])
    return True


def check_several_objectives(factory: Factory) -> None:
    simulate(factory(MIXED, 2, 0), 15, parallel=3, objectives=2, fail_rate=0.1)


def check_pruned_trials(factory: Factory) -> None:
    """Pruned trials (a step and a curve, no final losses) mixed with finished and failed ones,
    own and foreign, in random order, or every trial pruned, with one or two objectives: the
    run reaches its budget, points stay valid and distinct, and resume asks what the original
    would."""
    simulate(factory(MIXED, 1, 0), 40, parallel=4, fail_rate=0.1, foreign_rate=0.15, prune_rate=0.5)
    simulate(factory(MIXED, 2, 0), 16, parallel=3, objectives=2, fail_rate=0.1, prune_rate=0.5)
    simulate(factory(MIXED, 1, 1), 16, parallel=4, prune_rate=1.0)
    space = SearchSpace.from_dict(
        {f"x{i}": {"type": "float", "low": 0, "high": 1} for i in range(3)}
    )
    session = simulate(factory(space, 1, 0), 30, parallel=4, fail_rate=0.1, prune_rate=0.6)
    distinct = len({s.x.tobytes() for s in session.asked})
    _require(distinct == len(session.asked), "a point asked twice among pruned trials")
    _resume(factory, 0, prune_rate=0.5)


def check_tiny_and_wide_spaces(factory: Factory) -> None:
    """One coordinate and twenty: every point asked is distinct."""
    for dim in (1, 20):
        space = SearchSpace.from_dict(
            {f"x{i}": {"type": "float", "low": -1, "high": 1} for i in range(dim)}
        )
        session = simulate(factory(space, 1, 0), 20, parallel=4)
        distinct = len({s.x.tobytes() for s in session.asked})
        _require(distinct == len(session.asked), f"a point asked twice in {dim} dimension(s)")


CHECKS: dict[str, Callable[[Factory], None]] = {
    check.__name__.removeprefix("check_"): check
    for check in (
        check_points_are_in_the_cube_and_ids_unique,
        check_same_seed_same_points,
        check_ask_returns_at_most_n,
        check_out_of_order_failures_and_foreign_trials,
        check_every_trial_failing,
        check_resume_asks_what_the_original_would,
        check_several_objectives,
        check_tiny_and_wide_spaces,
        check_pruned_trials,
        check_warm_start,
    )
}


def check_algorithm(algorithm: str | type[Algorithm]) -> None:
    """Run the whole contract against a registered name or an ``Algorithm`` subclass."""
    factory = factory_of(algorithm)
    for check in CHECKS.values():
        check(factory)


# --- quality drivers ----------------------------------------------------------------------------


def evaluations(
    algo: str,
    function: str,
    seed: int,
    trials: int = 64,
    batch: int = 8,
    dim: int | None = None,
    noise: float = 0.0,
    options: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The noiseless values of every trial, in order: shape (trials, n_objectives). Points are
    asked in batches of ``batch`` (as with ``parallel: batch``) and told all at once. With
    ``noise``, the algorithm is told the values plus Gaussian noise of that std (seeded);
    ``options`` are the algorithm's (its defaults when None)."""
    spec = {"function": function} | ({"dim": dim} if dim else {})
    exp = parse_experiment({"objective": {"synthetic": spec}})
    space, f = exp.space, FUNCTIONS[function]
    algorithm = create(algo, space, len(exp.objectives), seed=seed, options=options)
    values: list[tuple[float, ...]] = []
    draws = np.random.default_rng([seed, 7919])
    while len(values) < trials:
        asked = algorithm.ask(min(batch, trials - len(values)))
        if not asked:
            raise RuntimeError(f"{algo} asked nothing with nothing in flight")
        told = []
        for s in asked:
            result = f.fn(np.array(list(space.decode(s.x).values()), dtype=float))
            losses = tuple(result) if isinstance(result, tuple) else (result,)
            noisy = tuple(v + noise * draws.standard_normal() for v in losses) if noise else losses
            told.append(Observation(s.id, s.x, noisy))
            values.append(losses)
        algorithm.tell(told)
    return np.array(values)


def final_regret(
    algo: str,
    function: str,
    seed: int,
    trials: int = 64,
    batch: int = 8,
    dim: int | None = None,
    noise: float = 0.0,
    options: Mapping[str, Any] | None = None,
) -> float:
    """Best noiseless value among the trials minus the known optimum (under ``noise`` the
    algorithm only ever sees noisy values)."""
    values = evaluations(algo, function, seed, trials, batch, dim, noise, options)
    optimum = FUNCTIONS[function].optimum
    assert optimum is not None
    return float(values[:, 0].min() - optimum)


def final_hypervolume(
    algo: str,
    function: str,
    seed: int,
    reference: tuple[float, ...],
    trials: int = 64,
    batch: int = 8,
    dim: int | None = None,
) -> float:
    """Hypervolume of all evaluated points up to a fixed reference point (comparable across
    algorithms, unlike the run folder's data-derived reference)."""
    values = evaluations(algo, function, seed, trials, batch, dim)
    return pareto.hypervolume(values, np.asarray(reference))
