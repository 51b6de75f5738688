"""A synthetic per-query log shaped like a real multi-model one, for tests and the docs.

Not data: a seeded generator with the awkward features real logs have, so that ``eval --log``
can be shown on them without shipping one. Nine models in two chains (four and five models),
four benchmarks, a train/test split, log-probability confidences that track correctness only
partly, about 1% ``-inf`` log-probabilities, one benchmark whose test half is harder than its
train half (train/test shift), and one extra group with train rows only (which ``eval`` must
skip while it evaluates the rest).

Per query, a latent difficulty ``d``; per model, a skill ``s`` (rising with price). The model is
right when ``s - d + noise > 0`` and its log-probability is ``log σ(k (s - d) + noise')``.

    python -m realtime_cascade.eval.synthetic OUT.csv [--n 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from .logs import LogRow, write_log

# (name, skill, USD per 1M tokens, ms per token); cheapest first within a chain
CHAINS: dict[str, tuple[tuple[str, float, float, float], ...]] = {
    "small-to-large": (
        ("s-1b", -0.6, 0.05, 4.0),
        ("s-8b", 0.0, 0.2, 7.0),
        ("s-70b", 0.6, 0.9, 15.0),
        ("s-405b", 0.9, 3.5, 30.0),
    ),
    "mixed": (
        ("m-3b", -0.4, 0.1, 5.0),
        ("m-14b", 0.1, 0.3, 9.0),
        ("m-32b", 0.4, 0.6, 12.0),
        ("m-72b", 0.7, 1.2, 18.0),
        ("m-frontier", 1.1, 10.0, 25.0),
    ),
}
BENCHMARKS = ("arith", "facts", "medqa", "truth")
SHIFTED = "medqa"  # its test half is harder than its train half
TRAIN_ONLY = "extra"  # a group with train rows only
NEG_INF_RATE = 0.01


def synthetic_rows(n: int = 400, seed: int = 0) -> list[LogRow]:
    """``n`` queries per benchmark and chain (half train, half test), plus a train-only group."""
    rng = np.random.default_rng(seed)
    rows: list[LogRow] = []
    for benchmark in (*BENCHMARKS, TRAIN_ONLY):
        for chain, models in CHAINS.items():
            if benchmark == TRAIN_ONLY and chain != "mixed":
                continue
            d = rng.normal(0.0, 1.0, n)
            split = ["train" if q < n // 2 or benchmark == TRAIN_ONLY else "test" for q in range(n)]
            if benchmark == SHIFTED:
                d[n // 2 :] += 0.6
            tokens = rng.integers(50, 400, n)
            for name, skill, price, ms_per_token in models:
                right = skill - d + rng.normal(0.0, 0.5, n) > 0
                z = 2.0 * (skill - d) + rng.normal(0.0, 1.0, n)
                logprob = -np.logaddexp(0.0, -z)  # log σ(z), computed without overflow
                zero = rng.random(n) < NEG_INF_RATE
                for q in range(n):
                    lp = -math.inf if zero[q] else min(0.0, float(logprob[q]))
                    rows.append(
                        LogRow(
                            query_idx=f"{benchmark}-{q}",
                            model=name,
                            correct=bool(right[q]),
                            raw_confidence=lp,
                            cost_usd=float(tokens[q]) * price / 1e6,
                            latency_ms=200.0 + float(tokens[q]) * ms_per_token,
                            benchmark=benchmark,
                            chain=chain,
                            split=split[q],  # type: ignore[arg-type]  # "train" or "test"
                        )
                    )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m realtime_cascade.eval.synthetic")
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=400, help="queries per group (default 400)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    write_log(args.out, synthetic_rows(args.n, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
