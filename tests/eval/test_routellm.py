"""APGR and CPT by hand; the loaders and the router evaluation on the shipped sample of RouteLLM's
data, and on the full data when it is present (``full_data`` tests, see conftest)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from realtime_cascade.eval.errors import DataError
from realtime_cascade.eval.routellm import (
    STRONG,
    WEAK,
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


def test_full_data_loads(routellm_dir: Path) -> None:
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


def test_full_data_router_on_gsm8k(routellm_dir: Path) -> None:
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


def _sample_counts(evals: Path) -> dict[str, tuple[int, int, float, float]]:
    """Items, exclusions and the weak and strong totals, read from the sample's files directly
    (not through the loader), so the loader is checked against the files themselves."""

    def dirty(bench: str) -> set[str]:
        lines = (evals / bench / "contaminated_prompts.jsonl").read_text().splitlines()
        return {json.loads(ln)["eval_prompt"] for ln in lines if ln.strip()}

    def csv_counts(paths: list[Path], bench: str) -> tuple[int, int, float, float]:
        rows = [r for p in paths for r in csv.DictReader(p.open(newline="", encoding="utf-8"))]
        kept = [r for r in rows if r["prompt"] not in dirty(bench)]
        weak = sum(r[WEAK] == "True" for r in kept)
        return len(kept), len(rows) - len(kept), weak, sum(r[STRONG] == "True" for r in kept)

    mmlu = sorted((evals / "mmlu" / "responses").glob("*.csv"))
    gsm8k = [evals / "gsm8k" / "gsm8k_responses.csv"]
    return {"mmlu": csv_counts(mmlu, "mmlu"), "gsm8k": csv_counts(gsm8k, "gsm8k")}


def test_loads_the_sample(routellm_sample: Path) -> None:
    mmlu, gsm8k, mt = load(routellm_sample)
    evals = routellm_sample / "routellm" / "evals"
    # tests/data/SOURCE.md: 2 MMLU subjects x 40 rows, 40 GSM8K rows, MT-Bench questions 81-100;
    # 2, 4 and 4 of those are contaminated and dropped.
    assert (len(mmlu.items), mmlu.excluded) == (78, 2)
    assert (len(gsm8k.items), gsm8k.excluded) == (36, 4)
    assert (len(mt.items), mt.excluded) == (16, 4)
    for data in (mmlu, gsm8k):
        n, excluded, weak, strong = _sample_counts(evals)[data.name]
        assert (len(data.items), data.excluded) == (n, excluded)
        assert sum(i.weak for i in data.items) == weak
        assert sum(i.strong for i in data.items) == strong
    # MT-Bench: each question's value is the mean judge score over its two turns.
    first = mt.items[0]
    assert first.prompt.startswith("Draft a professional email seeking your supervisor")
    scores = [
        json.loads(ln) for ln in (evals / "mt_bench" / "judgements.jsonl").read_text().splitlines()
    ]
    turns = [j["score"] for j in scores if j["question_id"] == 82 and j["model"] == STRONG]
    assert len(turns) == 2 and first.strong == pytest.approx(sum(turns) / 2)
    assert all(1 <= i.weak <= 10 and 1 <= i.strong <= 10 for i in mt.items)


def test_router_on_the_sample(routellm_sample: Path) -> None:
    (gsm8k,) = load(routellm_sample, ["gsm8k"])
    r = evaluate_dataset(gsm8k, seed=0)
    assert (r.n_train, r.n_test) == (18, 18)
    rand, oracle = r.routers[0], r.routers[-1]
    assert rand.router.startswith("random") and oracle.router.startswith("oracle")
    assert (rand.apgr, rand.cpt50) == (0.5, 0.5)
    assert oracle.apgr > 1.0 and oracle.cpt50 < 0.5
    assert len(r.routers) == 5  # random, three online routers, oracle


def test_full_data_the_sample_is_cut_from_it(routellm_dir: Path, tmp_path: Path) -> None:
    from tests.data.make_samples import main as make_samples

    make_samples(["make_samples.py", str(routellm_dir.parent), str(tmp_path)])
    shipped = Path(__file__).resolve().parents[1] / "data" / "routellm"
    files = sorted(p.relative_to(shipped) for p in shipped.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "routellm")
                           for p in (tmp_path / "routellm").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "routellm" / rel).read_bytes() == (shipped / rel).read_bytes(), rel
