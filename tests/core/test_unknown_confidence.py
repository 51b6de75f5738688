"""A missing logprob is *unknown*, never "fully confident" (issue 14's core piece).

Without logprobs the monitor has no confidence to act on: the turn still runs on its other
signals (completeness, verifiers, complexity, latency) and the trace says confidence is unknown.
"""

from __future__ import annotations

from realtime_cascade.core import (
    Action,
    Answer,
    CascadeParams,
    Decision,
    MonitorParams,
    TierSpec,
    Turn,
)
from realtime_cascade.core.signals import ConfidenceMonitor, clean_logprob

LIGHT = TierSpec("light", 0.15, 0.6, quality=0.8, expected_ttft_ms=150)
STRONG = TierSpec("strong", 2.5, 10.0, quality=0.97, expected_ttft_ms=400)
PARAMS = CascadeParams(tiers=(LIGHT, STRONG))


def decisions(actions: list[Action]) -> list[Decision]:
    return [a for a in actions if isinstance(a, Decision)]


def test_a_monitor_without_logprobs_knows_nothing() -> None:
    m = ConfidenceMonitor(MonitorParams(min_tokens=2), 0.0)
    for _ in range(10):
        m.observe(None, ())
    assert m.tokens == 10
    assert m.known == 0 and not m.ready
    assert m.confidence().p_correct is None


def test_missing_logprobs_do_not_dilute_the_ones_that_arrived() -> None:
    params = MonitorParams(window=12, quantile=0.2, min_tokens=4)
    only_bad = ConfidenceMonitor(params, 0.0)
    mixed = ConfidenceMonitor(params, 0.0)
    for _ in range(6):
        only_bad.observe(-3.0, ())
        mixed.observe(-3.0, ())
        mixed.observe(None, ())
        mixed.observe(None, ())
    assert mixed.known == 6 and mixed.tokens == 18
    assert mixed.confidence().p_correct == only_bad.confidence().p_correct


def test_clean_logprob_keeps_valid_ones_and_calls_the_rest_unknown() -> None:
    assert clean_logprob(-0.5) == -0.5
    assert clean_logprob(0.0) == 0.0
    assert clean_logprob(1e-7) == 0.0  # float rounding above zero: probability 1
    assert clean_logprob(-1e9) == -30.0
    assert clean_logprob(float("-inf")) == -30.0  # probability 0 is valid, and very unsure
    for bad in (None, 0.5, 710.0, float("inf"), float("nan")):
        assert clean_logprob(bad) is None


def test_no_logprobs_never_preempts_and_the_trace_says_confidence_is_unknown() -> None:
    turn = Turn(PARAMS, "Hi.", input_tokens=10)
    out = turn.start(0.0)
    t = 0.1
    for tok in ["I", " am", " not", " sure", " at", " all", "."]:
        out += turn.token(0, tok, None, (), t)
        t += 0.01
    out += turn.tier_finished(0, "stop", t)
    kinds = [d.record.kind for d in decisions(out)]
    assert kinds == ["route", "accept"]
    accept = decisions(out)[-1].record
    assert "confidence unknown (no logprobs)" in accept.reason
    assert accept.scores.p_correct is None
    assert turn.trace().status == "completed"


def test_without_logprobs_the_other_signals_still_escalate() -> None:
    def no_dates(answer: Answer) -> str | None:
        return "no such date" if "Feb 30" in answer.text else None

    turn = Turn(PARAMS, "Hi.", input_tokens=10, verifiers=[no_dates])
    out = turn.start(0.0)
    for tok in ["On", " Feb", " 30", "."]:
        out += turn.token(0, tok, None, (), 0.1)
    out += turn.tier_finished(0, "stop", 0.2)
    (preempt,) = [d.record for d in decisions(out) if d.record.kind == "preempt"]
    assert preempt.cause == "correctness"
    assert preempt.scores.p_correct is None

    cut = Turn(PARAMS, "Hi.", input_tokens=10)
    out = cut.start(0.0)
    out += cut.token(0, "Well", None, (), 0.1)
    out += cut.tier_finished(0, "length", 0.2)
    assert [d.record.cause for d in decisions(out) if d.record.kind == "preempt"] == [
        "completeness"
    ]
