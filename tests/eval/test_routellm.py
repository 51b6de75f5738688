"""APGR and CPT by hand, and the router evaluation on RouteLLM's real data when it is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_cascade.eval.errors import DataError
from realtime_cascade.eval.routellm import (
    apgr,
    cpt,
    evaluate_dataset,
    find_evals,
    load,
    routing_curve,
)


def test_curve_by_hand() -> None:
    # Scores 3, 2, 2, 1 with gains 1, 1, 0, 0 (total 2): route the top query -> PGR 1/2 at 25%;
    # the tied pair as a block -> PGR 1 at 75%; the last adds nothing.
    pts = routing_curve([3.0, 2.0, 2.0, 1.0], [1.0, 1.0, 0.0, 0.0])
    assert pts == [(0.0, 0.0), (0.25, 0.5), (0.75, 1.0), (1.0, 1.0)]
    # Trapezoids: .25 * .5/2 + .5 * 1.5/2 + .25 * 1 = .0625 + .375 + .25
    assert apgr(pts) == pytest.approx(0.6875)
    assert cpt(pts, 0.5) == pytest.approx(0.25)
    # PGR .8 inside the tied block: .25 + (.8 - .5) / (1 - .5) * .5
    assert cpt(pts, 0.8) == pytest.approx(0.55)


def test_constant_router_is_the_random_expectation() -> None:
    pts = routing_curve([0.0] * 5, [1.0, -1.0, 1.0, 0.0, 1.0])
    assert pts == [(0.0, 0.0), (1.0, 1.0)]
    assert apgr(pts) == 0.5
    assert cpt(pts, 0.5) == 0.5 and cpt(pts, 0.8) == pytest.approx(0.8)


def test_no_gain_has_no_pgr() -> None:
    with pytest.raises(DataError, match="PGR undefined"):
        routing_curve([1.0, 2.0], [0.0, -1.0])


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no RouteLLM evals directory"):
        find_evals(tmp_path)


def test_loads_the_real_data(routellm_dir: Path) -> None:
    mmlu, gsm8k, mt = load(routellm_dir)
    # SOURCE.md: 14,042 MMLU and 1,319 GSM8K queries; the contaminated prompts files list
    # 5, 12 and 8 prompts; MT-Bench has 80 questions.
    assert (len(mmlu.items), mmlu.excluded) == (14042 - 5, 5)
    assert (len(gsm8k.items), gsm8k.excluded) == (1319 - 12, 12)
    assert (len(mt.items), mt.excluded) == (80 - 8, 8)
    weak = sum(i.weak for i in mmlu.items) / len(mmlu.items)
    strong = sum(i.strong for i in mmlu.items) / len(mmlu.items)
    assert weak == pytest.approx(0.681, abs=0.002) and strong == pytest.approx(0.806, abs=0.004)
    assert all(1 <= i.weak <= 10 and 1 <= i.strong <= 10 for i in mt.items)


def test_router_on_gsm8k(routellm_dir: Path) -> None:
    (gsm8k,) = load(routellm_dir, ["gsm8k"])
    r = evaluate_dataset(gsm8k, seed=0)
    assert r.n_train + r.n_test == 1307 and abs(r.n_train - r.n_test) <= 1
    by_name = {
        s.router.split(" (")[0] + (" words" if "words" in s.router else ""): s for s in r.routers
    }
    rand = by_name["random"]
    assert (rand.apgr, rand.cpt50) == (0.5, 0.5) and rand.cpt80 == pytest.approx(0.8)
    assert rand.apgr_sd is not None and 0.005 < rand.apgr_sd < 0.1
    assert by_name["oracle"].apgr > 1.0  # routing only the gains first overshoots PGR 1
    learned = by_name["online router words"]
    assert 0.5 < learned.apgr < by_name["oracle"].apgr
    assert learned.cpt50 < 0.5
