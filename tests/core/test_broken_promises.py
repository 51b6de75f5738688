"""Repros of the core's broken promises (issue 13), one per rule, driven event by event.

Each test feeds a :class:`Turn` exact events (no driver) so the failing interleaving is plain to
read; the state machine in ``test_state_machine.py`` finds this family in general.
"""

from __future__ import annotations

import math

from realtime_cascade.core import (
    Action,
    BudgetParams,
    CancelTier,
    CascadeParams,
    Decision,
    FinishTurn,
    GateParams,
    PolicyParams,
    Release,
    StartTier,
    TierSpec,
    Turn,
)

LIGHT = TierSpec("light", 0.15, 0.6, quality=0.8, expected_ttft_ms=150)
MID = TierSpec("mid", 0.5, 2.0, quality=0.9, expected_ttft_ms=250)
STRONG = TierSpec("strong", 2.5, 10.0, quality=0.97, expected_ttft_ms=400)
DOUBT = -1.0  # four of these put P(correct) at ≈0.56: in the hedge band (0.45, 0.65)
BAD = -2.0  # ≈0.08: preempt
GOOD = -0.01


def released(actions: list[Action]) -> str:
    return "".join(a.text for a in actions if isinstance(a, Release))


def starts(actions: list[Action]) -> list[StartTier]:
    return [a for a in actions if isinstance(a, StartTier)]


def kinds(actions: list[Action]) -> list[str]:
    return [a.record.kind for a in actions if isinstance(a, Decision)]


def feed(turn: Turn, attempt: int, tokens: list[str], lp: float, t: float, dt: float = 0.01):  # type: ignore[no-untyped-def]
    out: list[Action] = []
    for tok in tokens:
        out += turn.token(attempt, tok, lp, (), t)
        t += dt
    return out, t


# -- 1. a positive logprob ------------------------------------------------------------------


def test_a_huge_positive_logprob_neither_raises_nor_reads_as_confident() -> None:
    one = Turn(CascadeParams(tiers=(LIGHT,)), "Hi.", input_tokens=10)
    one.start(0.0)
    one.token(0, "Hi", 710.0, (), 0.1)
    out = one.tier_finished(0, "stop", 0.2)  # raised OverflowError in math.exp
    assert any(isinstance(a, FinishTurn) and a.status == "completed" for a in out)

    # beside doubtful tokens, invalid logprobs must not lift confidence out of doubt
    for bad in (710.0, math.inf, math.nan, 3.0):
        turn = Turn(CascadeParams(tiers=(LIGHT, STRONG)), "Hi.", input_tokens=10)
        turn.start(0.0)
        out: list[Action] = []
        t = 0.1
        for tok in ["I", " think", " it", " is", " maybe", " so"]:
            out += turn.token(0, tok, BAD, (), t)
            if not turn.done:
                out += turn.token(0, " x", bad, (bad, -1.0), t + 0.001)
            t += 0.01
        assert "preempt" in kinds(out), bad


# -- 2. a finished hedge that cannot be promoted ---------------------------------------------


def test_a_finished_unpromotable_hedge_does_not_freeze_the_gate_after_fallback() -> None:
    turn = Turn(CascadeParams(tiers=(LIGHT, MID, STRONG)), "Hi.", input_tokens=10)
    turn.start(0.0)
    out, t = feed(turn, 0, ["Let", " me", " see", " now"], DOUBT, 0.1)
    assert [(s.tier, s.speculative) for s in starts(out)] == [(1, True)]
    turn.tier_finished(1, "length", t)  # the hedge ends, cut off: not promotable
    out = turn.tier_failed(0, "boom", t + 0.01)
    assert [(s.tier, s.speculative) for s in starts(out)] == [(2, False)]
    out, t = feed(turn, 2, [" Sure", " thing", "."], GOOD, t + 0.3)
    # the strongest tier releases as it streams (eager): nothing holds its text back
    assert released(out) == " Sure thing."  # exact: the leading space is the token's
    out = turn.tier_finished(2, "stop", t)
    trace = turn.trace()
    assert trace.status == "completed" and trace.text == " Sure thing."


# -- 3. promoting a hedge that already finished ---------------------------------------------


def test_promoting_a_finished_hedge_never_rewinds_the_trace_clock() -> None:
    turn = Turn(CascadeParams(tiers=(LIGHT, STRONG)), "Hi.", input_tokens=10)
    turn.start(0.0)
    t = 0.1
    for tok in ["Let", " me", " see", " now"]:
        turn.token(0, tok, DOUBT, (), t)
        t += 0.01  # the hedge starts at ≈0.13
    for tok in [" Sure", " thing", "."]:
        turn.token(1, tok, GOOD, (), 0.2)
    turn.tier_finished(1, "stop", 0.25)  # the hedge is done, still speculative
    out = []
    t = 0.4
    for tok in [" maybe", " not", " sure", " at", " all"]:
        if turn.done:
            break
        out += turn.token(0, tok, BAD, (), t)
    assert "preempt" in kinds(out) and turn.done
    trace = turn.trace()
    times = [d.t_ms for d in trace.decisions]
    assert times == sorted(times), times
    assert trace.ttft_ms is not None and trace.end_ms >= trace.ttft_ms
    assert trace.handoff_ms is not None and trace.handoff_ms >= 0
    assert trace.text.endswith("Sure thing.")


# -- 4. a failing hedge ---------------------------------------------------------------------


def test_a_failing_hedge_keeps_the_gate_frozen_and_is_not_hedged_again() -> None:
    params = CascadeParams(
        tiers=(LIGHT, STRONG),
        policy=PolicyParams(hedge_window_ms=500),
        gate=GateParams(min_phrase_chars=1, lookahead_tokens=0),
    )
    turn = Turn(params, "Hi.", input_tokens=10)
    turn.start(0.0)
    out, t = feed(turn, 0, ["Let", " me", " see", " now", "."], DOUBT, 0.1)
    assert [(s.tier, s.speculative) for s in starts(out)] == [(1, True)]
    assert released(out) == ""
    out = turn.tier_failed(1, "429 too many requests", t)
    assert released(out) == ""  # the monitor is still in doubt: rule 4
    out, t = feed(turn, 0, [" It", " is", "."], DOUBT, t + 0.01)
    assert starts(out) == []  # the tier that just failed is not hedged again
    assert released(out) == ""
    # the doubt window ends without a verdict: the text goes out
    deadline = turn.next_deadline()
    assert deadline is not None and deadline <= 0.1 + 0.04 + 0.5 + 1e-9
    out = turn.tick(deadline)
    assert released(out).startswith("Let me see now.")
    # a later doubt holds the release again but starts no second paid hedge on that tier
    out, t = feed(turn, 0, [" Or", " not", "."], DOUBT, deadline + 0.01)
    assert starts(out) == []


# -- 5. billed usage and the cost cap -------------------------------------------------------


def test_the_cost_cap_holds_on_what_is_billed() -> None:
    tier = TierSpec("cheap", 0.1, 0.4)
    params = CascadeParams(tiers=(tier,), budgets=BudgetParams(turn_cap_usd=0.0002))
    turn = Turn(params, "Hi.", input_tokens=40)
    (start,) = starts(turn.start(0.0))
    # the tier is asked for no more output than the cap can pay for
    assert 40 * 0.1 + start.max_tokens * 0.4 <= 200 + 1e-9
    assert start.max_tokens == 490
    turn.token(0, "Hello there.", GOOD, (), 0.1)
    # an upstream that bills past what it was asked for: the turn cannot call that completed
    out = turn.tier_finished(0, "stop", 0.2, input_tokens=40, output_tokens=500)
    trace = turn.trace()
    assert trace.cost_usd > 0.0002
    assert trace.status != "completed"
    assert any(isinstance(a, Decision) and a.record.cause == "budget" for a in out)
    assert "billed" in trace.reason


def test_a_hedge_is_refused_when_both_streams_could_bill_past_the_cap() -> None:
    # light may bill up to its allowance; a hedge beside it must fit in what is left
    tight = BudgetParams(turn_cap_usd=0.0001)
    turn = Turn(CascadeParams(tiers=(LIGHT, STRONG), budgets=tight), "Hi.", input_tokens=10)
    (first,) = starts(turn.start(0.0))
    out, _ = feed(turn, 0, ["Let", " me", " see", " now"], DOUBT, 0.1)
    hedges = starts(out)
    light_worst = 10 * 0.15 + first.max_tokens * 0.6
    for h in hedges:
        assert light_worst + (10 + 0) * 2.5 + h.max_tokens * 10.0 <= 100 + 1e-9


# -- 6. text without ASCII spaces -----------------------------------------------------------


CJK = "今天天气很好，我们去公园散步吧。然后一起吃午饭，好不好？"


def test_cjk_text_is_released_by_a_non_final_tier_at_its_phrase_marks() -> None:
    turn = Turn(CascadeParams(tiers=(LIGHT, STRONG)), "Hi.", input_tokens=10)
    turn.start(0.0)
    out, _t = feed(turn, 0, list(CJK), GOOD, 0.1)
    got = released(out)
    assert got.startswith("今天天气很好，我们去公园散步吧。"), got


def test_the_hard_caps_apply_to_text_without_spaces() -> None:
    params = CascadeParams(
        tiers=(LIGHT, STRONG), gate=GateParams(max_phrase_chars=20, max_hold_ms=300)
    )
    # no phrase mark at all: CJK cuts between characters; a run with no boundary whatsoever
    # (a long URL, Thai) is cut at max_phrase_chars all the same
    for run in ("天" * 60, "x" * 60, "ก" * 60):
        turn = Turn(params, "Hi.", input_tokens=10)
        turn.start(0.0)
        out, _t = feed(turn, 0, list(run), GOOD, 0.1, dt=0.001)
        assert len(released(out)) >= 60 - 21, run  # at most ≈20 chars held
        assert all(len(a.text) <= 20 for a in out if isinstance(a, Release))
    turn2 = Turn(params, "Hi.", input_tokens=10)
    turn2.start(0.0)
    out, _t = feed(turn2, 0, list("天气很好"), GOOD, 0.1)
    deadline = turn2.next_deadline()
    assert deadline is not None and deadline <= 0.1 + 0.3 + 1e-9  # max_hold_ms applies
    assert released(turn2.tick(deadline)) != ""


def test_newline_separated_text_is_released_and_cut_at_line_ends() -> None:
    params = CascadeParams(tiers=(LIGHT, STRONG), gate=GateParams(max_phrase_chars=30))
    lines = [f"item{k}\n" for k in range(20)]
    turn = Turn(params, "Hi.", input_tokens=10)
    turn.start(0.0)
    out, _t = feed(turn, 0, lines, GOOD, 0.1)
    got = released(out)
    assert got.startswith("item0\nitem1\n") and len(got) > 60, got
    # never inside a word: every piece ends at a line end
    for a in out:
        if isinstance(a, Release):
            assert a.text.endswith("\n"), a.text


def test_preempting_cjk_text_keeps_what_was_already_released() -> None:
    turn = Turn(CascadeParams(tiers=(LIGHT, STRONG)), "Hi.", input_tokens=10)
    turn.start(0.0)
    _out, t = feed(turn, 0, list("今天天气很好，我们去公园散步吧。然后"), GOOD, 0.1)
    out2, t = feed(turn, 0, ["也", "许", "吧", "吗"], BAD, t)
    assert "preempt" in kinds(out2)
    (strong,) = [s for s in starts(out2) if s.tier == 1]
    assert strong.prefix.startswith("今天天气很好，我们去公园散步吧。")


# -- 7. the end-of-turn deadline ------------------------------------------------------------


def test_no_text_is_released_after_the_end_of_turn_deadline() -> None:
    params = CascadeParams(
        tiers=(LIGHT,),
        budgets=BudgetParams(end_of_turn_ms=1000),
        gate=GateParams(min_phrase_chars=1, lookahead_tokens=0),
    )
    turn = Turn(params, "Hi.", input_tokens=10)
    turn.start(0.0)
    turn.token(0, "Sure", GOOD, (), 0.5)
    out = turn.token(0, ".", GOOD, (), 1.2)  # no tick came at 1.0
    assert released(out) == ""
    assert turn.done and turn.trace().status == "incomplete"
    assert "end-of-turn" in turn.trace().reason


def test_a_finish_after_the_deadline_is_not_accepted() -> None:
    params = CascadeParams(tiers=(LIGHT,), budgets=BudgetParams(end_of_turn_ms=1000))
    turn = Turn(params, "Hi.", input_tokens=10)
    turn.start(0.0)
    turn.token(0, "Sure", GOOD, (), 0.5)
    out = turn.tier_finished(0, "stop", 1.01)
    assert released(out) == ""
    assert turn.trace().status == "incomplete"


# -- found by the state machine once it reached hedges: billed usage beside a live hedge ------


def test_an_active_billed_past_the_cap_ends_the_turn_with_its_hedge_cancelled() -> None:
    turn = Turn(CascadeParams(tiers=(LIGHT, MID, STRONG)), "Hi.", input_tokens=10)
    turn.start(0.0)
    out, t = feed(turn, 0, ["Let", " me", " see", " now"], DOUBT, 0.1)
    assert [(s.tier, s.speculative) for s in starts(out)] == [(1, True)]
    # the light tier's upstream ignored max_tokens: the billed usage breaks the cap
    out = turn.tier_finished(0, "stop", t, input_tokens=10, output_tokens=200_000)
    assert any(isinstance(a, FinishTurn) and a.status == "incomplete" for a in out)
    assert 1 in [a.attempt for a in out if isinstance(a, CancelTier)]  # left streaming before
    assert turn.trace().attempts[1].end_reason == "turn ending"
