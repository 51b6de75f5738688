"""Grid against tuned thresholds, the normalised cost-error area, intervals and calibration
quality: small cases worked by hand, and the properties the method promises."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from realtime_cascade.cli.eval import main
from realtime_cascade.eval.bootstrap import Resamples, interval
from realtime_cascade.eval.calibration import quality
from realtime_cascade.eval.deferral import evaluate_group, run_fold
from realtime_cascade.eval.logs import Group, group_rows, parse_rows, write_log
from realtime_cascade.eval.outcomes import Matrix
from realtime_cascade.eval.synthetic import synthetic_rows
from realtime_cascade.eval.tradeoff import (
    LAMBDAS,
    Stagewise,
    cascade_tradeoff,
    coordinate_descent,
    normalised_auc,
    objective,
)

from .test_deferral import HEADER, SPLIT_ROWS


def _split_group() -> Group:
    text = HEADER + "".join(",".join(map(str, r)) + "\n" for r in SPLIT_ROWS)
    (group,) = group_rows(parse_rows(text.splitlines(keepends=True)))
    return group


def test_normalised_auc_by_hand() -> None:
    c, e = np.array([1.0, 3.0]), np.array([0.5, 0.1])
    assert normalised_auc(c, e, 1.0, 3.0) == pytest.approx((0.5 + 0.1) / 2)
    # Flat to the left of the first point: 1 x 0.5, then the trapezoid 2 x 0.3.
    assert normalised_auc(c, e, 0.0, 3.0) == pytest.approx((0.5 + 0.6) / 3)
    # Two points at one cost: the lower error counts.
    c2, e2 = np.array([1.0, 1.0, 3.0]), np.array([0.9, 0.5, 0.1])
    assert normalised_auc(c2, e2, 1.0, 3.0) == pytest.approx(0.3)


def test_coordinate_descent_finds_the_exact_threshold() -> None:
    # The train half of SPLIT_ROWS: A's confidences -0.1, -0.2, -1.0, -2.0 (right, right,
    # wrong, wrong); B right on the first three; A costs 1, B 10. With a tiny cost weight the
    # best is to stop at A on its two confident answers (error 1/4 at cost 6, against 1/4 at
    # 11 when always deferring); the threshold lands mid-gap between -0.2 and -1.0.
    group = _split_group()
    mx = Matrix.of(group)
    train = np.array(group.indices("train"))
    sw = Stagewise.of((0, 1), mx.confidence, mx, train)
    th = coordinate_descent(sw, 0.001, (float("inf"),))
    assert th == (pytest.approx(-0.6),)
    assert sw.value(th, 0.001) == pytest.approx(0.25 + 0.001 * 6)
    # With a large cost weight, never defer: the threshold accepts every value.
    assert coordinate_descent(sw, 10.0, (float("inf"),)) == (float("-inf"),)


def test_exact_tuning_never_loses_to_the_grid_on_train() -> None:
    rows = [r for r in synthetic_rows(60, seed=3) if (r.benchmark, r.chain) == ("arith", "mixed")]
    (group,) = group_rows(rows)
    fold = run_fold(group, group.indices("train"), group.indices("test"), "calibrated")
    assert fold.data is not None
    mx = Matrix.of(group)
    stages = (0, 2, 4)
    grid = [(c.policy.thresholds, c.train) for c in fold.candidates if c.stages == stages]
    result = cascade_tradeoff(stages, "x", [fold.data], [grid], mx, None, lambda s, t: f"{s} {t}")
    scale = mx.cost[np.ix_(list(stages), fold.data.train)].sum(axis=0).mean() - (
        fold.singles[0].train.mean_cost
    )
    better = 0
    for k, lam in enumerate(LAMBDAS):
        (g,), (t,) = result.grid[k], result.exact[k]
        assert objective(t.train, lam / scale) <= objective(g.train, lam / scale) + 1e-12
        better += objective(t.train, lam / scale) < objective(g.train, lam / scale) - 1e-12
    assert better > 0  # on 30 train rows the grid is coarse enough for tuning to find more
    assert result.report.auc_gain_ci is None  # no resamples asked for


def test_bootstrap_is_seeded() -> None:
    a = Resamples.draw(50, 200, seed=7)
    b = Resamples.draw(50, 200, seed=7)
    assert np.array_equal(a.counts, b.counts)
    assert np.all(a.counts.sum(axis=1) == 50)
    assert not np.array_equal(a.counts, Resamples.draw(50, 200, seed=8).counts)
    assert interval(a.means(np.full(50, 3.0))) == pytest.approx((3.0, 3.0))
    lo, hi = interval(a.means(np.arange(50, dtype=np.float64)))
    assert lo < 24.5 < hi


def test_quality_by_hand() -> None:
    p = np.array([0.9, 0.9, 0.1, 0.1])
    y = np.array([True, False, False, False])
    q = quality(p, y)
    # Bin 0.9: mean p .9, accuracy .5, half the rows; bin 0.1: .1 against 0, the other half.
    assert q.ece == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    assert q.brier == pytest.approx((0.01 + 0.81 + 0.01 + 0.01) / 4)


def test_hindsight_and_train_chosen_differ_by_hand() -> None:
    # SPLIT_ROWS (test_deferral): on train, B's 75% needs A > B at t=-0.2 (test: 75% at 8.5);
    # in hindsight the cheapest policy with 75% on *test* is t=-2.0 (75% at 3.5).
    r = evaluate_group(_split_group(), kind="raw", resamples=200)
    assert r.train_reference_model == r.reference_model == "B"
    train_op = r.headline.train_chosen.at_accuracy
    hind_op = r.headline.hindsight.at_accuracy
    assert train_op is not None and hind_op is not None
    assert r.headline.hindsight.chosen_on == "test"
    assert train_op.policies == ["A > B [defer lp<-0.2]"]
    assert train_op.mean_cost_usd == pytest.approx(8.5)
    assert hind_op.policies == ["A > B [defer lp<-2]"]
    assert hind_op.mean_cost_usd == pytest.approx(3.5) and hind_op.accuracy == 0.75
    assert hind_op.cost_saving == pytest.approx(0.65)
    # The intervals bracket the point estimates.
    assert train_op.cost_saving_ci is not None and train_op.accuracy_delta_ci_pts is not None
    lo, hi = train_op.cost_saving_ci
    assert lo <= 0.15 <= hi
    lo, hi = train_op.accuracy_delta_ci_pts
    assert lo <= train_op.accuracy_delta_pts == 0.0 <= hi


def test_json_carries_the_new_metrics_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.csv"
    write_log(path, [r for r in synthetic_rows(60, seed=2) if r.benchmark == "arith"])
    plots = tmp_path / "plots"
    argv = ["eval", "--log", str(path), "--json", "--bootstrap", "100", "--plot", str(plots)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = msgspec.json.decode(captured.out)
    groups = out["logs"][0]["groups"]
    assert [g["chain"] for g in groups] == ["mixed", "small-to-large"]
    g = groups[1]
    assert set(g["models"][0]["calibrated_quality"]) == {"ece", "brier"}
    t = g["tradeoff"]
    assert t["tuned_method"] == "smooth-model"
    assert t["exact_auc_gain"] == pytest.approx(1 - t["exact"]["auc"] / t["grid"]["auc"])
    for method in ("grid", "tuned", "exact"):
        lo, hi = t[method]["auc_ci"]
        assert lo <= t[method]["auc"] <= hi
        assert len(t[method]["points"]) == len(LAMBDAS)
    assert len(g["cascade_tradeoffs"]) == 11  # every subset of 4 models, 2 or more long
    assert g["headline"]["train_chosen"]["at_accuracy"]["cost_saving_ci"] is not None
    for chain in ("mixed", "small-to-large"):
        png = plots / f"arith-{chain}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {png}" in captured.err
