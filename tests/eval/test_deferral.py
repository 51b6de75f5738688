"""Deferral curves and savings on small logs whose every number is worked out by hand below."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from realtime_cascade.eval.calibration import fit_logistic
from realtime_cascade.eval.deferral import (
    MAX_ALL_SUBSETS,
    GroupReport,
    cascades,
    evaluate_group,
    score,
    threshold_levels,
)
from realtime_cascade.eval.logs import group_rows, parse_rows

HEADER = "query_idx,model,correct,raw_confidence,cost_usd,latency_ms,split\n"


Row = tuple[str, str, int, float, float, float, str]


def _log(rows: Sequence[Sequence[object]]) -> str:
    return HEADER + "".join(",".join(map(str, r)) + "\n" for r in rows)


# Model A costs 1 and takes 100 ms, model B costs 10 and takes 500 ms (B is always asked second).
#
#   train  A.correct  A.conf  B.correct        test  A.correct  A.conf  B.correct
#   t1     1          -0.1    1                s1    1          -0.05   1
#   t2     1          -0.2    1                s2    0          -0.5    1
#   t3     0          -1.0    1                s3    1          -1.5    0
#   t4     0          -2.0    0                s4    0          -3.0    1
#
# Train: A 50% at 1, B 75% at 10. Test: A 50% at 1, B 75% at 10 (B is the reference).
# Thresholds are quantiles of A's four train confidences: -2.0, -1.0, -0.2, -0.1.
# "A > B, defer when conf < t", on train / on test (cost is the mean of 1 or 1 + 10 = 11):
#   t=-2.0: defers none / s4            train 50% at 1    test 75% at 3.5
#   t=-1.0: defers t4 / s3, s4          train 50% at 3.5  test 50% at 6
#   t=-0.2: defers t3, t4 / s2, s3, s4  train 75% at 6    test 75% at 8.5 (latency 475 ms)
#   t=-0.1: defers t2, t3, t4 / same    train 75% at 8.5  test 75% at 8.5
SPLIT_ROWS: list[Sequence[object]] = [
    ("t1", "A", 1, -0.1, 1, 100, "train"),
    ("t1", "B", 1, -0.3, 10, 500, "train"),
    ("t2", "A", 1, -0.2, 1, 100, "train"),
    ("t2", "B", 1, -0.3, 10, 500, "train"),
    ("t3", "A", 0, -1.0, 1, 100, "train"),
    ("t3", "B", 1, -0.3, 10, 500, "train"),
    ("t4", "A", 0, -2.0, 1, 100, "train"),
    ("t4", "B", 0, -0.3, 10, 500, "train"),
    ("s1", "A", 1, -0.05, 1, 100, "test"),
    ("s1", "B", 1, -0.3, 10, 500, "test"),
    ("s2", "A", 0, -0.5, 1, 100, "test"),
    ("s2", "B", 1, -0.3, 10, 500, "test"),
    ("s3", "A", 1, -1.5, 1, 100, "test"),
    ("s3", "B", 0, -0.3, 10, 500, "test"),
    ("s4", "A", 0, -3.0, 1, 100, "test"),
    ("s4", "B", 1, -0.3, 10, 500, "test"),
]


def _split_report() -> GroupReport:
    (group,) = group_rows(parse_rows(_log(SPLIT_ROWS).splitlines(keepends=True)))
    return evaluate_group(group, kind="raw")


def test_split_models_and_reference() -> None:
    r = _split_report()
    assert r.evaluation == "train/test split"
    assert (r.n_queries, r.n_held_out) == (8, 4)
    assert [m.name for m in r.models] == ["A", "B"]
    assert [m.accuracy for m in r.models] == [0.5, 0.75]
    assert [m.mean_cost_usd for m in r.models] == [1.0, 10.0]
    assert r.reference_model == "B"


def test_split_saving_at_reference_accuracy() -> None:
    r = _split_report()
    vs_b = r.comparisons[1]
    assert vs_b.model == "B"
    # Train picks t=-0.2 (the cheapest reaching B's train 75%); on test: 75% at 8.5.
    for op in (vs_b.at_accuracy, vs_b.at_accuracy_minus_1pt, vs_b.at_cost):
        assert op is not None
        assert op.policies == ["A > B [defer lp<-0.2]"]
        assert op.accuracy == 0.75
        assert op.mean_cost_usd == pytest.approx(8.5)
        assert op.cost_saving == pytest.approx(1 - 8.5 / 10)
        assert op.mean_latency_ms == pytest.approx((100 + 3 * 600) / 4)
    assert vs_b.at_accuracy is not None and vs_b.at_accuracy.accuracy_vs_target_pts == 0.0
    minus = vs_b.at_accuracy_minus_1pt
    assert minus is not None and minus.target_accuracy == pytest.approx(0.74)
    assert minus.accuracy_vs_target_pts == pytest.approx(1.0)


def test_split_never_chooses_on_test() -> None:
    # t=-2.0 is the best policy on *test* (75% at 3.5) but only 50% on train: never chosen for
    # B's accuracy, and at A's cost the tie with A itself goes to A (singles come first).
    r = _split_report()
    vs_a = r.comparisons[0]
    assert vs_a.at_accuracy is not None and vs_a.at_accuracy.policies == ["A"]
    assert vs_a.at_cost is not None and vs_a.at_cost.policies == ["A"]
    assert vs_a.at_cost.accuracy == 0.5 and vs_a.at_cost.cost_saving == 0.0


def test_split_curve() -> None:
    # Cost caps from 1 to 10: below 6 the most accurate on train is A (50% at 1, ties with
    # dearer 50% policies go to the cheaper); from 6 on it is t=-0.2 (75% at 6).
    r = _split_report()
    assert [(p.policies, p.accuracy, p.mean_cost_usd) for p in r.curve] == [
        (["A"], 0.5, 1.0),
        (["A > B [defer lp<-0.2]"], 0.75, 8.5),
    ]
    assert r.curve[1].train_accuracy == 0.75 and r.curve[1].train_mean_cost_usd == 6.0


def test_calibrated_confidence_chooses_the_same_deferrals() -> None:
    # A logistic map with positive slope keeps the order, so the same queries are deferred.
    (group,) = group_rows(parse_rows(_log(SPLIT_ROWS).splitlines(keepends=True)))
    r = evaluate_group(group, kind="calibrated")
    op = r.comparisons[1].at_accuracy
    assert op is not None and op.accuracy == 0.75 and op.mean_cost_usd == pytest.approx(8.5)
    assert op.policies[0].startswith("A > B [defer P<")
    assert r.models[0].calibration.slope > 0


def _cv_rows() -> list[Row]:
    # 20 queries; A (cost 1) is wrong on every 4th, and then says so (-5.0 against -0.1);
    # B (cost 10) is always right. Deferring exactly A's doubtful answers costs
    # 1 + 10 * 5/20 = 3.5 per query at 100%: a 65% saving against B at B's accuracy.
    rows: list[Row] = []
    for i in range(20):
        wrong = i % 4 == 0
        rows.append((f"q{i}", "A", 0 if wrong else 1, -5.0 if wrong else -0.1, 1, 100, ""))
        rows.append((f"q{i}", "B", 1, -0.2, 10, 400, ""))
    return rows


def test_cross_validation_saving() -> None:
    (group,) = group_rows(parse_rows(_log(_cv_rows()).splitlines(keepends=True)))
    r = evaluate_group(group, folds=5, seed=3, kind="raw")
    assert r.evaluation == "5-fold cross-validation"
    assert r.n_held_out == 20  # every query held out exactly once
    assert [m.accuracy for m in r.models] == [0.75, 1.0]
    op = r.comparisons[1].at_accuracy
    assert op is not None
    assert op.policies == ["A > B [defer lp<-0.1]"] * 5
    assert op.accuracy == 1.0
    assert op.mean_cost_usd == pytest.approx(3.5)
    assert op.cost_saving == pytest.approx(0.65)
    assert op.mean_latency_ms == pytest.approx(100 + 400 * 5 / 20)
    # At A's cost (1) nothing beats A itself.
    at_cost_a = r.comparisons[0].at_cost
    assert at_cost_a is not None and at_cost_a.accuracy == 0.75


def test_three_model_cascade_scored_by_hand() -> None:
    text = HEADER + "".join(
        f"{q},{m},{c},{lp},{cost},{lat},\n"
        for q, m, c, lp, cost, lat in [
            ("1", "A", 1, -0.1, 1, 10),
            ("1", "B", 1, -0.1, 5, 50),
            ("1", "C", 1, -0.1, 20, 200),
            ("2", "A", 0, -3.0, 1, 10),
            ("2", "B", 1, -0.1, 5, 50),
            ("2", "C", 1, -0.1, 20, 200),
            ("3", "A", 0, -3.0, 1, 10),
            ("3", "B", 0, -2.0, 5, 50),
            ("3", "C", 1, -0.1, 20, 200),
        ]
    )
    (group,) = group_rows(parse_rows(text.splitlines(keepends=True)))
    assert group.models == ("A", "B", "C")
    # Defer below -1 at A and at B: query 1 stops at A (1), 2 at B (1 + 5), 3 at C (1 + 5 + 20).
    t = score((0, 1, 2), (-1.0, -1.0), group.confidence, group, [0, 1, 2])
    assert (t.n, t.correct, t.cost, t.latency) == (3, 3.0, 1 + 6 + 26, 10 + 60 + 260)
    # Skipping B: query 2 and 3 both go from A to C.
    t = score((0, 2), (-1.0,), group.confidence, group, [0, 1, 2])
    assert (t.correct, t.cost) == (3.0, 1 + 21 + 21)


def test_cascade_space() -> None:
    assert cascades(2) == [(0, 1)]
    assert cascades(3) == [(0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert len(cascades(MAX_ALL_SUBSETS)) == 2**MAX_ALL_SUBSETS - MAX_ALL_SUBSETS - 1
    many = cascades(8)  # beyond the limit: every pair and every prefix
    assert len(many) == 28 + 6
    assert all(p in many for p in [(0, 7), (3, 5), (0, 1, 2), tuple(range(8))])


def test_threshold_grids() -> None:
    assert len(threshold_levels(1)) == 63
    assert len(threshold_levels(2)) == 16 * 16
    assert len(threshold_levels(3)) == 6**3
    tied = threshold_levels(6)
    assert len(tied) == 15 and all(len(set(v)) == 1 for v in tied)


def test_logistic_fit_recovers_a_saturated_model() -> None:
    # Two confidence values: 1 of 4 right at -1, 3 of 4 right at 0. The maximum-likelihood
    # fit is exact there: P(0) = 0.75 -> bias = logit(.75) = ln 3; slope = ln 3 - ln(1/3).
    xs = [-1.0] * 4 + [0.0] * 4
    ys = [True, False, False, False, True, True, True, False]
    fit = fit_logistic(xs, ys)
    assert fit.bias == pytest.approx(math.log(3), abs=0.01)
    assert fit.slope == pytest.approx(2 * math.log(3), abs=0.02)
    assert fit(0.0) == pytest.approx(0.75, abs=0.002)


def test_logistic_fit_without_spread_is_the_base_rate() -> None:
    fit = fit_logistic([-0.5] * 3, [True, True, False])
    assert fit.slope == 0.0
    assert fit(-0.5) == pytest.approx((2 + 0.5) / 4)
