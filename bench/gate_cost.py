"""Per-token cost of the core as a turn grows: is it flat with the turn's length?

    python -m bench.gate_cost [--tokens 1000,10000,50000] [--rounds R] [--json]

One turn per (text kind, length): a two-tier cascade whose light tier streams N tokens with
confident logprobs, so the speech commit gate holds text back and cuts phrases (the last tier
would release each token at once, which is not the case worth measuring). Each token is fed as
the runtime feeds it: ``Turn.token`` then ``Turn.next_deadline``. No event loop, no I/O: this is
the core's own CPU per token.

Text kinds: English words, CJK characters (no spaces; phrase marks are ``，`` and ``。``),
line-separated items (no ASCII space at all), and an unbroken run (no boundary whatsoever: only
the hard ``max_phrase_chars`` cap cuts it).

Reported per kind and length: µs/token over the whole turn, over its first 1k tokens and over its
last 1k, and last/first. Flat means last/first ≲ 1.5 (the issue's acceptance bound); each figure
is the median of R rounds. The first-1k and last-1k windows come from the same run, so the
ratio compares like with like on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import msgspec

from realtime_cascade.core import BudgetParams, CascadeParams, TierSpec, Turn

ENGLISH = [" The", " flight", " is", " moved", " to", " Friday", ",", " and", " your", " seat", "."]
CJK = "今天天气很好，我们去公园散步吧。然后一起吃午饭，好不好？"
LINES = ["item", "-", "7", "\n"]

KINDS: dict[str, Callable[[int], str]] = {
    "english": lambda k: ENGLISH[k % len(ENGLISH)],
    "cjk": lambda k: CJK[k % len(CJK)],
    "newlines": lambda k: LINES[k % len(LINES)],
    "unbroken": lambda k: "x",
}
WINDOW = 1000


class Row(msgspec.Struct, frozen=True):
    kind: str
    tokens: int
    us_per_token: float
    first_1k_us: float
    last_1k_us: float
    ratio: float  # last_1k / first_1k
    released_chars: int


def one_turn(kind: str, n: int) -> tuple[list[float], int]:
    """Seconds per 1k-token window of one turn of ``n`` tokens, and the chars released."""
    light = TierSpec("light", 0.0, 0.0, max_output_tokens=n + 1)
    params = CascadeParams(
        tiers=(light, TierSpec("strong")),
        budgets=BudgetParams(end_of_turn_ms=1e12, first_text_ms=1e12),
    )
    turn = Turn(params, "Hi.", input_tokens=10)
    turn.start(0.0)
    text = KINDS[kind]
    pieces = [text(k) for k in range(n)]
    windows: list[float] = []
    clock = time.perf_counter
    gc.collect()
    for w in range(0, n, WINDOW):
        t = clock()
        for k in range(w, min(n, w + WINDOW)):
            turn.token(0, pieces[k], -0.01, (), k * 1e-3)
            turn.next_deadline()
        windows.append(clock() - t)
    assert not turn.done, "the turn ended early: the figure would not be per token"
    return windows, len(turn.released)


def measure(kind: str, n: int, rounds: int) -> Row:
    totals, firsts, lasts = [], [], []
    released = 0
    for _ in range(rounds):
        windows, released = one_turn(kind, n)
        totals.append(sum(windows) / n)
        firsts.append(windows[0] / min(n, WINDOW))
        last_n = n - WINDOW * (len(windows) - 1)
        lasts.append(windows[-1] / last_n)
    first, last = statistics.median(firsts), statistics.median(lasts)
    return Row(
        kind=kind,
        tokens=n,
        us_per_token=round(statistics.median(totals) * 1e6, 2),
        first_1k_us=round(first * 1e6, 2),
        last_1k_us=round(last * 1e6, 2),
        ratio=round(last / first, 3),
        released_chars=released,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gate_cost", description=__doc__)
    ap.add_argument("--tokens", default="1000,10000,50000", help="turn lengths, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--json", action="store_true", help="print rows as JSON lines")
    args = ap.parse_args(argv)
    lengths = [int(x) for x in args.tokens.split(",")]
    rows = [measure(kind, n, args.rounds) for kind in args.kinds.split(",") for n in lengths]
    if args.json:
        for r in rows:
            print(msgspec.json.encode(r).decode())
    else:
        print(
            f"{'text':<10} {'tokens':>7} {'µs/token':>9} {'first 1k':>9} {'last 1k':>9} "
            f"{'last/first':>10} {'released':>9}"
        )
        for r in rows:
            print(
                f"{r.kind:<10} {r.tokens:>7} {r.us_per_token:>9.2f} {r.first_1k_us:>9.2f} "
                f"{r.last_1k_us:>9.2f} {r.ratio:>10.3f} {r.released_chars:>9}"
            )
    flat = all(r.ratio <= 1.5 for r in rows)
    print(f"flat (last 1k within 1.5x of first 1k, every kind): {'yes' if flat else 'NO'}")
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())
