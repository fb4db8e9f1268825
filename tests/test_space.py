"""Encode/decode between configs and the unit cube: property tests over generated spaces."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypersearch.errors import ExperimentError
from hypersearch.space import CategoricalParam, FloatParam, IntParam, SearchSpace

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def float_params(draw: st.DrawFn) -> FloatParam:
    kind = draw(st.sampled_from(["linear", "log", "step"]))
    if kind == "log":
        low = draw(st.floats(1e-8, 1e3))
        return FloatParam(type="float", low=low, high=low * draw(st.floats(1.0, 1e6)), log=True)
    low = draw(finite)
    if kind == "step":  # bounds as people write them: a few decimals, high on the grid
        low, step = round(low, 3), draw(st.sampled_from(["0.1", "0.25", "0.5", "1", "3"]))
        high = Decimal(str(low)) + Decimal(step) * draw(st.integers(0, 50))
        return FloatParam(type="float", low=low, high=float(high), step=float(step))
    return FloatParam(type="float", low=low, high=low + draw(st.floats(0.0, 1e6)))


@st.composite
def int_params(draw: st.DrawFn) -> IntParam:
    if draw(st.booleans()):
        low = draw(st.integers(1, 1000))
        return IntParam(type="int", low=low, high=low + draw(st.integers(0, 10**6)), log=True)
    low, step = draw(st.integers(-1000, 1000)), draw(st.integers(1, 7))
    return IntParam(type="int", low=low, high=low + step * draw(st.integers(0, 100)), step=step)


choices = st.one_of(
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
    st.lists(st.integers(-100, 100), min_size=1, max_size=6, unique=True),
    st.lists(finite, min_size=1, max_size=6, unique=True),
    st.just([True, False]),
)
params = st.one_of(
    float_params(),
    int_params(),
    choices.map(lambda c: CategoricalParam(type="categorical", choices=c)),
)
spaces = st.lists(params, min_size=1, max_size=6).map(
    lambda ps: SearchSpace({f"p{i}": p for i, p in enumerate(ps)})
)


@st.composite
def space_and_config(draw: st.DrawFn) -> tuple[SearchSpace, dict]:
    """A space and a valid config of it (any point of the cube decodes to a valid config)."""
    space = draw(spaces)
    x = draw(st.lists(st.floats(0, 1), min_size=space.dim, max_size=space.dim))
    return space, space.decode(np.array(x))


def _same(param, a, b) -> bool:
    if isinstance(param, FloatParam) and param.step is None:
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12 * (param.high - param.low))
    return a == b and type(a) is type(b)


@settings(max_examples=300, deadline=None)
@given(space_and_config())
def test_decode_encode_round_trip(case: tuple[SearchSpace, dict]) -> None:
    space, config = case
    x = space.encode(config)
    assert x.shape == (space.dim,)
    assert np.all((x >= 0) & (x <= 1))
    back = space.decode(x)
    for name, param in space.params.items():
        assert _same(param, back[name], config[name]), (name, config[name], back[name])


@settings(max_examples=200, deadline=None)
@given(spaces, st.lists(st.floats(-3, 3), min_size=6, max_size=6))
def test_any_point_decodes_inside_the_space(space: SearchSpace, raw: list[float]) -> None:
    """Points outside the cube are clipped; values land inside the Optuna distributions."""
    config = space.decode(np.array(raw[: space.dim]))
    for name, dist in space.distributions().items():
        assert dist._contains(dist.to_internal_repr(config[name])), (name, config[name])


@settings(max_examples=200, deadline=None)
@given(int_params(), st.floats(0, 1))
def test_ints_are_ints_and_on_the_grid(param: IntParam, u: float) -> None:
    value = param.decode(u)
    assert isinstance(value, int)
    assert param.low <= value <= param.high
    assert (value - param.low) % param.step == 0


def test_log_scale_spends_equal_cube_length_per_decade() -> None:
    space = SearchSpace.from_dict({"lr": {"type": "float", "low": 1e-4, "high": 1, "log": True}})
    assert space.decode([0.25])["lr"] == pytest.approx(1e-3)
    assert space.decode([0.5])["lr"] == pytest.approx(1e-2)
    assert space.encode({"lr": 0.1})[0] == pytest.approx(0.75)


def test_categorical_buckets_split_the_cube_evenly() -> None:
    space = SearchSpace.from_dict(
        {"opt": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop"]}}
    )
    assert [space.decode([u])["opt"] for u in (0.0, 0.32, 0.34, 0.66, 0.67, 1.0)] == [
        "sgd",
        "sgd",
        "adam",
        "adam",
        "rmsprop",
        "rmsprop",
    ]


def test_stepped_float_values_are_clean_grid_points() -> None:
    space = SearchSpace.from_dict({"p": {"type": "float", "low": 0, "high": 1, "step": 0.1}})
    assert space.decode([0.35])["p"] == 0.3  # not 0.30000000000000004
    assert sorted({space.decode([u])["p"] for u in np.linspace(0, 1, 200)}) == [
        round(0.1 * i, 10) for i in range(11)
    ]


def test_decode_rejects_wrong_shape_and_nan() -> None:
    space = SearchSpace.from_dict({"a": {"type": "float", "low": 0, "high": 1}})
    with pytest.raises(ValueError):
        space.decode([0.1, 0.2])
    with pytest.raises(ValueError):
        space.decode([float("nan")])


def test_distributions_are_optuna_distributions_with_the_declared_ranges() -> None:
    space = SearchSpace.from_dict(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 1, "log": True},
            "layers": {"type": "int", "low": 1, "high": 8},
            "act": {"type": "categorical", "choices": ["relu", "gelu"]},
        }
    )
    dists = space.distributions()
    assert dists["lr"] == optuna.distributions.FloatDistribution(1e-4, 1, log=True)
    assert dists["layers"] == optuna.distributions.IntDistribution(1, 8)
    assert dists["act"] == optuna.distributions.CategoricalDistribution(["relu", "gelu"])


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "params"),
        ({"1lr": {"type": "float", "low": 0, "high": 1}}, "params.1lr"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "params.lr.low"),
    ],
)
def test_bad_spaces_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ExperimentError) as err:
        SearchSpace.from_dict(raw)
    assert str(err.value).startswith(f"{field}:")


def test_log_float_with_bounds_one_ulp_apart_round_trips() -> None:
    """Found by hypothesis: log(9.000000000000002) == log(9.0) as floats, so the log scale has
    zero width; the parameter falls back to the linear scale instead of dividing by zero."""
    param = FloatParam(type="float", low=9.0, high=9.000000000000002, log=True)
    for value in (param.low, param.high):
        u = param.encode(value)
        assert 0.0 <= u <= 1.0
        assert param.decode(u) == pytest.approx(value, rel=1e-12)
