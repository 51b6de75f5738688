"""The core's work per token is flat in the length of the turn (gate rule 6).

Counted, not timed: the Python lines the core executes for a window of tokens early in a long
turn and for one late in it. A scan of the pending or released text per token (what made CJK
cost 3.8 ms a token at 50k tokens) grows the late count with the turn; notes taken once per
character and bisection do not. Wall-clock figures live in ``bench/gate_cost.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from realtime_cascade.core import BudgetParams, CascadeParams, SpeechGate, TierSpec, Turn
from realtime_cascade.core.params import GateParams

CORE = str(Path(__file__).resolve().parents[2] / "realtime_cascade" / "core")

TEXTS: dict[str, Callable[[int], str]] = {
    "english": lambda k: [" The", " flight", " is", " moved", " to", " Friday", "."][k % 7],
    "cjk": lambda k: "今天天气很好我们去公园散步吧然后一起吃午饭好不好"[k % 24],
    "newlines": lambda k: ["item", "-", str(k % 10), "\n"][k % 4],
    "unbroken": lambda k: "x",  # no boundary at all: only the hard cap cuts it
}


def count_lines(run: Callable[[], None]) -> int:
    lines = 0

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if not frame.f_code.co_filename.startswith(CORE):
            return None
        if event == "line":
            lines += 1
        return tracer

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return lines


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_core_lines_per_token_do_not_grow_with_the_turn(kind: str) -> None:
    tier = TierSpec("light", 0.0, 0.0, max_output_tokens=1_000_000)
    params = CascadeParams(
        tiers=(tier, TierSpec("strong")),  # the light tier is not the last: the gate holds
        budgets=BudgetParams(end_of_turn_ms=1e9, first_text_ms=1e9),
    )
    turn = Turn(params, "Hi.", input_tokens=10)
    turn.start(0.0)
    text = TEXTS[kind]
    k = 0

    def tokens(n: int) -> Callable[[], None]:
        def go() -> None:
            nonlocal k
            for _ in range(n):
                turn.token(0, text(k), -0.01, (), k * 1e-3)
                turn.next_deadline()
                k += 1

        return go

    tokens(200)()
    early = count_lines(tokens(200))
    tokens(8000)()
    late = count_lines(tokens(200))
    assert not turn.done
    assert late <= early * 1.1 + 50, (kind, early, late)
    assert len(turn.released) > k - 400  # and it did release along the way


def test_each_pushed_character_is_scanned_once() -> None:
    gate = SpeechGate(GateParams())
    pushed = 0
    for k in range(5000):
        piece = "天" if k % 3 else "気。"
        gate.push(piece, k * 1e-3)
        pushed += len(piece)
        gate.take(k * 1e-3)
        gate.hold_deadline()
    assert gate.scanned == pushed
