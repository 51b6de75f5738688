"""Router evaluation on RouteLLM's released per-query results (Ong et al. 2024, Apache-2.0).

Per benchmark (MMLU, GSM8K, MT-Bench; Mixtral-8x7B weak, GPT-4 strong), after dropping the
prompts the paper drops as contaminated:

1. A seeded split: ``train_fraction`` of the queries train the project's ``OnlineRouter``
   (online logistic SGD, ``passes`` shuffled passes), the rest are held out. Its label is
   "the strong model did strictly better" (correct where the weak one was not; a higher
   MT-Bench judge score), the event that makes a call to the strong model worth paying for.
   It runs twice: as shipped (raw request features, the default step 0.3), and with the
   features standardised on the training queries and the step chosen on a validation quarter
   of them (with and without hashed words) — the held-out queries choose nothing.
2. On held-out queries, routing the top-scored fraction ``c`` to the strong model gives the
   curve ``PGR(c) = (perf(c) - weak) / (strong - weak)``, which is the routed gain so far over
   the total gain. Queries with equal scores are routed as a block in random order, so the
   curve is the *expected* one, linear across a block; a constant router is thus exactly the
   random router: APGR = 0.5, CPT(x) = x.
3. APGR is the area under PGR over c in [0, 1] (trapezoids at every block boundary: the exact
   area, where the paper's code samples 10 quantile thresholds). CPT(x) is the smallest c at
   which PGR reaches x (interpolated within a block).
4. Baselines in the same run: the random router (its expectation, and the spread of 200
   seeded random orderings), and the oracle that knows each query's gain (the ceiling).

The data is read from ``DIR`` at run time and never copied; ``DIR`` may be the dataset root
(holding ``routellm/evals``), ``routellm/`` or ``evals/`` itself.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import statistics
from collections.abc import Sequence
from pathlib import Path

import msgspec

from ..core.router import OnlineRouter
from .errors import DataError
from .features import FEATURE_SETS, FeatureSet, Scaler, dims, vectorize
from .logs import LogRow

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
BENCHMARKS = ("mmlu", "gsm8k", "mt-bench")
RANDOM_SAMPLES = 200
LEARNING_RATES = (0.3, 0.1, 0.03, 0.01, 0.003)


class Item(msgspec.Struct, frozen=True):
    prompt: str
    weak: float  # correctness (0/1) or judge score
    strong: float


class Dataset(msgspec.Struct, frozen=True):
    name: str
    metric: str
    items: tuple[Item, ...]
    excluded: int  # contaminated prompts dropped


# --- loading ------------------------------------------------------------------------------


def find_evals(root: Path) -> Path:
    for cand in (root / "routellm" / "evals", root / "evals", root):
        if (cand / "gsm8k").is_dir() or (cand / "mmlu").is_dir():
            return cand
    raise DataError(f"{root}: no RouteLLM evals directory (expected routellm/evals/ under it)")


def _contaminated(path: Path) -> set[str]:
    if not path.exists():
        return set()
    out: set[str] = set()
    for line in _lines(path):
        row = json.loads(line)
        if not isinstance(row, dict) or not isinstance(row.get("eval_prompt"), str):
            raise DataError(f"{path}: a row without eval_prompt")
        out.add(row["eval_prompt"])
    return out


def _lines(path: Path) -> list[str]:
    try:
        return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _flag(path: Path, value: str | None) -> float:
    if value == "True":
        return 1.0
    if value == "False":
        return 0.0
    raise DataError(f"{path}: correctness must be True or False, got {value!r}")


def _correctness_csv(paths: Sequence[Path], dirty: set[str]) -> tuple[list[Item], int]:
    items: list[Item] = []
    excluded = 0
    for path in paths:
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if not {"prompt", WEAK, STRONG} <= set(reader.fieldnames or ()):
                    raise DataError(f"{path}: expected columns prompt, {WEAK}, {STRONG}")
                for row in reader:
                    if row["prompt"] in dirty:
                        excluded += 1
                        continue
                    items.append(
                        Item(row["prompt"], _flag(path, row[WEAK]), _flag(path, row[STRONG]))
                    )
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return items, excluded


def load_mmlu(evals: Path) -> Dataset:
    paths = sorted((evals / "mmlu" / "responses").glob("mmlu_*.csv"))
    if not paths:
        raise DataError(f"{evals}/mmlu/responses: no mmlu_*.csv files")
    dirty = _contaminated(evals / "mmlu" / "contaminated_prompts.jsonl")
    items, excluded = _correctness_csv(paths, dirty)
    return Dataset("mmlu", "accuracy", tuple(items), excluded)


def load_gsm8k(evals: Path) -> Dataset:
    path = evals / "gsm8k" / "gsm8k_responses.csv"
    items, excluded = _correctness_csv(
        [path], _contaminated(evals / "gsm8k/contaminated_prompts.jsonl")
    )
    return Dataset("gsm8k", "accuracy", tuple(items), excluded)


def load_mt_bench(evals: Path) -> Dataset:
    """One item per question, routed on its first turn; a model's value is its mean judge score
    over the question's turns (as the paper's evaluation merges and averages them)."""
    base = evals / "mt_bench"
    dirty = _contaminated(base / "contaminated_prompts.jsonl")
    scores: dict[tuple[int, str], list[float]] = {}
    for line in _lines(base / "judgements.jsonl"):
        j = json.loads(line)
        try:
            scores.setdefault((int(j["question_id"]), str(j["model"])), []).append(
                float(j["score"])
            )
        except (KeyError, TypeError, ValueError):
            raise DataError(
                f"{base}/judgements.jsonl: a row without question_id/model/score"
            ) from None
    items: list[Item] = []
    excluded = 0
    for line in _lines(base / "question.jsonl"):
        q = json.loads(line)
        turns = q.get("turns")
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{base}/question.jsonl: question without turns")
        if any(t in dirty for t in turns):
            excluded += 1
            continue
        qid = int(q["question_id"])
        weak, strong = scores.get((qid, WEAK)), scores.get((qid, STRONG))
        if not weak or not strong:
            raise DataError(f"{base}/judgements.jsonl: no scores for question {qid}")
        items.append(Item(str(turns[0]), statistics.fmean(weak), statistics.fmean(strong)))
    return Dataset("mt-bench", "mean judge score (1-10)", tuple(items), excluded)


_LOADERS = {"mmlu": load_mmlu, "gsm8k": load_gsm8k, "mt-bench": load_mt_bench}


def load(root: Path, names: Sequence[str] = BENCHMARKS) -> list[Dataset]:
    evals = find_evals(root)
    unknown = [n for n in names if n not in _LOADERS]
    if unknown:
        raise DataError(f"unknown RouteLLM benchmark(s): {', '.join(unknown)}")
    return [_LOADERS[n](evals) for n in names]


# --- metrics ------------------------------------------------------------------------------


def routing_curve(scores: Sequence[float], gains: Sequence[float]) -> list[tuple[float, float]]:
    """(fraction routed to strong, PGR) at every boundary between blocks of equal score.

    Raises DataError when the strong model is not better in total (PGR is undefined).
    """
    n = len(scores)
    total = math.fsum(gains)
    if n == 0 or total <= 0:
        raise DataError("the strong model is not better than the weak one here: PGR undefined")
    order = sorted(range(n), key=lambda i: -scores[i])
    points = [(0.0, 0.0)]
    cum = 0.0
    i = 0
    while i < n:
        j = i
        while j < n and scores[order[j]] == scores[order[i]]:
            cum += gains[order[j]]
            j += 1
        points.append((j / n, cum / total))
        i = j
    return points


def apgr(points: Sequence[tuple[float, float]]) -> float:
    return math.fsum((c1 - c0) * (p0 + p1) / 2 for (c0, p0), (c1, p1) in itertools.pairwise(points))


def cpt(points: Sequence[tuple[float, float]], x: float) -> float:
    """Smallest fraction of strong calls at which PGR reaches ``x`` (1.0 if it never does)."""
    if x <= points[0][1]:
        return points[0][0]
    for (c0, p0), (c1, p1) in itertools.pairwise(points):
        if p1 >= x:
            return c0 + (x - p0) / (p1 - p0) * (c1 - c0)
    return 1.0


# --- evaluation ---------------------------------------------------------------------------


class RouterScore(msgspec.Struct, frozen=True):
    router: str
    apgr: float
    cpt50: float  # fraction of queries sent to the strong model to reach PGR 50%
    cpt80: float
    learning_rate: float | None = None  # the SGD step (chosen on training queries)
    apgr_sd: float | None = None  # spread over seeded random orderings (random router only)
    cpt50_sd: float | None = None
    cpt80_sd: float | None = None


class BenchmarkReport(msgspec.Struct, frozen=True):
    benchmark: str
    metric: str
    n_items: int
    n_excluded: int
    n_train: int
    n_test: int
    weak_model: str
    strong_model: str
    weak_test: float  # mean metric on held-out queries
    strong_test: float
    strong_better_train: float  # share of training queries labelled "strong did better"
    routers: list[RouterScore]


class RouteLLMReport(msgspec.Struct, frozen=True):
    seed: int
    train_fraction: float
    passes: int
    benchmarks: list[BenchmarkReport]


def _score(
    name: str, scores: Sequence[float], gains: Sequence[float], lr: float | None = None
) -> RouterScore:
    pts = routing_curve(scores, gains)
    return RouterScore(name, apgr(pts), cpt(pts, 0.5), cpt(pts, 0.8), learning_rate=lr)


def _random(gains: Sequence[float], seed: int) -> RouterScore:
    rng = random.Random(seed)
    runs = []
    for _ in range(RANDOM_SAMPLES):
        pts = routing_curve([rng.random() for _ in gains], gains)
        runs.append((apgr(pts), cpt(pts, 0.5), cpt(pts, 0.8)))
    a, c5, c8 = zip(*runs, strict=True)
    # The expectation is exact (one tied block); the samples only say how far chance strays.
    expected = _score("random", [0.0] * len(gains), gains)
    return RouterScore(
        "random",
        expected.apgr,
        expected.cpt50,
        expected.cpt80,
        apgr_sd=statistics.pstdev(a),
        cpt50_sd=statistics.pstdev(c5),
        cpt80_sd=statistics.pstdev(c8),
    )


def train_router(
    xs: Sequence[Sequence[float]],
    ys: Sequence[bool],
    passes: int,
    seed: int,
    learning_rate: float = 0.3,
) -> OnlineRouter:
    router = OnlineRouter(dims=len(xs[0]), learning_rate=learning_rate)
    rng = random.Random(seed)
    order = list(range(len(xs)))
    for _ in range(passes):
        rng.shuffle(order)
        for i in order:
            router.observe(xs[i], ys[i])
    return router


def choose_learning_rate(
    xs: Sequence[Sequence[float]], items: Sequence[Item], passes: int, seed: int
) -> float:
    """The step size with the best APGR on a validation quarter of the *training* queries."""
    order = list(range(len(xs)))
    random.Random(seed + 1).shuffle(order)
    cut = max(1, (3 * len(order)) // 4)
    fit, val = order[:cut], order[cut:]

    def validated(lr: float) -> float:
        router = train_router(
            [xs[i] for i in fit], [items[i].strong > items[i].weak for i in fit], passes, seed, lr
        )
        gains = [items[i].strong - items[i].weak for i in val]
        try:
            return apgr(routing_curve([router.predict(xs[i]) for i in val], gains))
        except DataError:  # no gain to recover in this slice: nothing to tell the steps apart
            return 0.5

    return max(LEARNING_RATES, key=validated)


def evaluate_dataset(
    data: Dataset,
    *,
    seed: int = 0,
    train_fraction: float = 0.5,
    passes: int = 3,
    features: Sequence[FeatureSet] = FEATURE_SETS,
) -> BenchmarkReport:
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train fraction must be in (0, 1), got {train_fraction}")
    order = list(range(len(data.items)))
    random.Random(seed).shuffle(order)
    cut = round(train_fraction * len(order))
    train = [data.items[i] for i in order[:cut]]
    test = [data.items[i] for i in order[cut:]]
    if len(train) < 8 or len(test) < 2:
        raise DataError(f"{data.name}: {len(data.items)} items are too few to split")
    labels = [it.strong > it.weak for it in train]
    gains = [it.strong - it.weak for it in test]
    routers = [_random(gains, seed)]

    # The router exactly as the runtime runs it: raw request features, its default step.
    raw = [vectorize(it.prompt, "request") for it in train]
    shipped = train_router(raw, labels, passes, seed)
    scores = [shipped.predict(vectorize(it.prompt, "request")) for it in test]
    routers.append(_score("online router as shipped (request, step 0.3)", scores, gains, 0.3))

    for fs in features:
        vecs = [vectorize(it.prompt, fs) for it in train]
        scale = Scaler.fit(vecs)
        xs = [scale(v) for v in vecs]
        lr = choose_learning_rate(xs, train, passes, seed)
        router = train_router(xs, labels, passes, seed, lr)
        scores = [router.predict(scale(vectorize(it.prompt, fs))) for it in test]
        name = f"online router ({fs}, standardised, {dims(fs)} dims)"
        routers.append(_score(name, scores, gains, lr))
    routers.append(_score("oracle", gains, gains))
    return BenchmarkReport(
        benchmark=data.name,
        metric=data.metric,
        n_items=len(data.items),
        n_excluded=data.excluded,
        n_train=len(train),
        n_test=len(test),
        weak_model=WEAK,
        strong_model=STRONG,
        weak_test=statistics.fmean(it.weak for it in test),
        strong_test=statistics.fmean(it.strong for it in test),
        strong_better_train=sum(labels) / len(labels),
        routers=routers,
    )


def evaluate_routellm(
    root: Path,
    *,
    seed: int = 0,
    train_fraction: float = 0.5,
    passes: int = 3,
    benchmarks: Sequence[str] = BENCHMARKS,
    features: Sequence[FeatureSet] = FEATURE_SETS,
) -> RouteLLMReport:
    reports = [
        evaluate_dataset(
            d, seed=seed, train_fraction=train_fraction, passes=passes, features=features
        )
        for d in load(root, benchmarks)
    ]
    return RouteLLMReport(seed, train_fraction, passes, reports)


# --- RouteLLM as a per-query log ----------------------------------------------------------

# USD per 1M tokens in the paper's cost analysis (SOURCE.md); tokens are estimated from the
# prompt's length, as the data holds no usage.
PRICES = {WEAK: 0.24, STRONG: 24.7}
CHARS_PER_TOKEN = 4
LOG_BENCHMARKS = ("mmlu", "gsm8k")  # correctness, not judge scores


def _scores(train: Sequence[Item], score: Sequence[Item], passes: int, seed: int) -> list[float]:
    """P(strong does better) for ``score`` from the standardised words router fit on ``train``."""
    vecs = [vectorize(it.prompt, "request+words") for it in train]
    scale = Scaler.fit(vecs)
    xs = [scale(v) for v in vecs]
    lr = choose_learning_rate(xs, train, passes, seed)
    router = train_router(xs, [it.strong > it.weak for it in train], passes, seed, lr)
    return [router.predict(scale(vectorize(it.prompt, "request+words"))) for it in score]


def log_rows(
    root: Path, *, seed: int = 0, train_fraction: float = 0.5, passes: int = 3
) -> list[LogRow]:
    """MMLU and GSM8K as a ``logs`` log: the weak model's confidence is log P(the strong model
    does no better), from the words router; the strong model's is 0 (it is last, never asked).

    The split is ``evaluate_dataset``'s. Test rows are scored by the router fit on all train
    rows; each train half by the router fit on the other half (cross-fitting), so the
    thresholds ``eval`` chooses on train see out-of-sample scores. Latency is not in the data
    (0). Cost is the estimated prompt tokens times the price of each model asked.
    """
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train fraction must be in (0, 1), got {train_fraction}")
    rows: list[LogRow] = []
    for data in load(root, LOG_BENCHMARKS):
        order = list(range(len(data.items)))
        random.Random(seed).shuffle(order)
        cut = round(train_fraction * len(order))
        train, test = order[:cut], order[cut:]
        half = len(train) // 2
        a, b = train[:half], train[half:]
        items = data.items
        score: dict[int, float] = {}
        for fit, out in ((a, b), (b, a), (train, test)):
            got = _scores([items[i] for i in fit], [items[i] for i in out], passes, seed)
            score.update(zip(out, got, strict=True))
        in_train = set(train)
        for i, it in enumerate(items):
            tokens = max(1, len(it.prompt) // CHARS_PER_TOKEN)
            for model, correct, conf in (
                (WEAK, it.weak, math.log(max(1e-300, 1.0 - score[i]))),
                (STRONG, it.strong, 0.0),
            ):
                rows.append(
                    LogRow(
                        query_idx=str(i),
                        model=model,
                        correct=correct > 0.5,
                        raw_confidence=min(0.0, conf),
                        cost_usd=tokens * PRICES[model] / 1e6,
                        latency_ms=0.0,
                        benchmark=data.name,
                        split="train" if i in in_train else "test",
                    )
                )
    return rows
