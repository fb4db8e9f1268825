"""Each scheduler's decisions against cases computed by hand from its rule."""

from __future__ import annotations

import pytest

from hypersearch.errors import ExperimentError
from hypersearch.schedulers import available, create


def test_registry_names_and_none_never_stops() -> None:
    assert list(available()) == ["none", "asha", "hyperband", "median"]
    none = create("none")
    assert not any(none.report(0, step, 1e9) for step in range(1, 20))
    with pytest.raises(ExperimentError, match=r"^scheduler: unknown scheduler 'ashaa'"):
        create("ashaa")


def test_median_stops_a_trial_worse_than_the_median_of_finished_ones() -> None:
    median = create("median", {"startup_trials": 3})
    for number, loss in enumerate([1.0, 2.0]):
        assert not median.report(number, 1, loss)
        median.finished(number, "COMPLETE", loss)
    assert not median.report(2, 1, 100.0)  # only 2 finished trials: nothing stops yet
    median.finished(2, "COMPLETE", 3.0)  # its step-1 value is 100: median of 1, 2, 100 = 2
    assert median.report(3, 1, 2.5)  # 2.5 > 2: stop
    assert not median.report(4, 1, 1.5)  # 1.5 <= 2: go on
    assert not median.report(4, 1, 99.0)  # a step already reported: no decision


def test_asha_keeps_the_best_third_at_each_rung() -> None:
    """Rung 0 at step 1 (eta 3). With k losses at the rung (this one included), a trial goes on
    if its loss is at most the (k // 3)-th smallest (the smallest while k < 3)."""
    asha = create("asha", {"min_step": 1, "reduction_factor": 3})
    losses = [5.0, 4.0, 6.0, 3.0, 5.5, 4.5, 3.5]
    stopped = [asha.report(number, 1, loss) for number, loss in enumerate(losses)]
    # k=1: 5<=5; k=2: 4<=4; k=3: 6>4; k=4: 3<=3; k=5: 5.5>3; k=6: 4.5>4 (2nd of 3,4,4.5,…);
    # k=7: 3.5<=3.5
    assert stopped == [False, False, True, False, True, True, False]
    # Rung 1 is at step 3: step 2 is not judged, step 3 is (the first there goes on).
    assert not asha.report(0, 2, 100.0)
    assert not asha.report(0, 3, 2.0)
    assert asha.report(1, 3, 2.5)  # k=2 at rung 1: only the best so far goes on


def test_asha_does_not_judge_at_or_past_max_step() -> None:
    """At max_step a trial has run its course: stopping it then would save nothing and lose
    its result."""
    asha = create("asha", {"min_step": 1, "max_step": 3, "reduction_factor": 3})
    assert not asha.report(0, 1, 1.0)
    assert not asha.report(1, 9, 50.0)  # would be a rung-2 report; past max_step: runs on
    assert not asha.report(3, 3, 50.0)  # rung 1 is max_step itself: not judged either
    assert asha.report(2, 1, 50.0)  # the same loss at rung 0 is cut


def test_hyperband_brackets_start_judging_at_their_own_rung() -> None:
    """min 1, max 9, eta 3: brackets 0, 1, 2 first judge at steps 1, 3 and 9. A bad trial of
    bracket 0 is cut at step 1; one of bracket 2 is not judged before step 9."""
    band = create("hyperband", {"min_step": 1, "max_step": 9, "reduction_factor": 3})
    brackets = {number: band.bracket(number) for number in range(60)}
    assert set(brackets.values()) == {0, 1, 2}
    first = [n for n, b in brackets.items() if b == 0]
    late = [n for n, b in brackets.items() if b == 2]
    for number in first[:3]:  # three good trials at bracket 0's first rung
        assert not band.report(number, 1, 1.0)
    assert band.report(first[3], 1, 10.0)  # k=4: 10 > the smallest (1): cut
    assert not any(band.report(late[0], step, 10.0) for step in range(1, 9))
    assert not band.report(first[4], 9, 99.0)  # max_step: a full trial is never cut


def test_options_are_validated_with_the_field_named() -> None:
    with pytest.raises(ExperimentError, match=r"^scheduler\.asha\.reduction_factor"):
        create("asha", {"reduction_factor": 1})
    with pytest.raises(ExperimentError, match=r"^scheduler\.hyperband\.max_step"):
        create("hyperband", {"min_step": 4, "max_step": 2})
    with pytest.raises(ExperimentError, match=r"^scheduler\.median\.stratup"):
        create("median", {"stratup": 3})


def test_a_nan_loss_stops_at_once_as_in_optuna() -> None:
    asha = create("asha", {"min_step": 1})
    assert asha.report(0, 1, float("nan"))  # even the first at its rung
    assert not asha.report(1, 1, 1.0)
    assert asha.report(2, 1, float("nan"))


def test_hyperband_counts_its_brackets_in_integers() -> None:
    """eta**5 = 243: six brackets (s = 0 … 5); a float log gives 4.999… and one fewer."""
    band = create("hyperband", {"min_step": 1, "max_step": 243, "reduction_factor": 3})
    assert len({band.bracket(n) for n in range(5000)}) == 6


def test_hyperband_assigns_brackets_by_their_trial_budgets() -> None:
    """min 1, max 9, eta 3: three brackets with budgets ceil(3 * 3**(2-s) / (3-s)) = 9, 5, 3
    trials (Hyperband's Algorithm 1): a trial number's hash lands in each in that proportion."""
    band = create("hyperband", {"min_step": 1, "max_step": 9, "reduction_factor": 3})
    counts = [0, 0, 0]
    for number in range(17_000):
        counts[band.bracket(number)] += 1
    assert [round(c / 1000) for c in counts] == [9, 5, 3]
    again = create("hyperband", {"min_step": 1, "max_step": 9, "reduction_factor": 3})
    assert [again.bracket(n) for n in range(200)] == [band.bracket(n) for n in range(200)]
