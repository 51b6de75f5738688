"""Scripted turns through the pure core: exact, no event loop."""

import msgspec
import pytest

from realtime_cascade.core import (
    Answer,
    BudgetParams,
    CancelTier,
    CascadeParams,
    Decision,
    Filler,
    Handoff,
    InvalidEvent,
    PolicyParams,
    Release,
    ReleaseToolCall,
    RouterEstimate,
    StartTier,
    TierSpec,
    Turn,
)

from .driver import Step, TierScript, drive, words

LIGHT = TierSpec(
    "light",
    0.15,
    0.6,
    quality=0.8,
    expected_ttft_ms=150,
    ttft_timeout_ms=1000,
    stall_timeout_ms=800,
)
STRONG = TierSpec(
    "strong",
    2.5,
    10.0,
    quality=0.97,
    expected_ttft_ms=400,
    ttft_timeout_ms=2500,
    stall_timeout_ms=1500,
)
PARAMS = CascadeParams(tiers=(LIGHT, STRONG))


def turn(params: CascadeParams = PARAMS, text: str = "Book a table for two.", **kw: object) -> Turn:
    return Turn(params, text, input_tokens=50, **kw)  # type: ignore[arg-type]


def decisions(run_actions: list) -> list[str]:  # type: ignore[type-arg]
    return [a.record.kind for _, a in run_actions if isinstance(a, Decision)]


def test_confident_light_tier_is_accepted_and_fully_released() -> None:
    t = turn()
    run = drive(t, [TierScript(words("Sure. I booked a table for two at seven.")), TierScript([])])
    assert run.finish is not None and run.finish.status == "completed"
    assert run.released == "Sure. I booked a table for two at seven."
    assert [s.tier for s in run.started] == [0]
    assert decisions(run.actions) == ["route", "accept"]
    trace = t.trace()
    assert trace.text == run.released and not trace.escalated and trace.handoff_ms is None
    assert trace.ttft_ms is not None and trace.ttft_ms > 150


def test_low_confidence_preempts_midstream_and_strong_continues_after_released_text() -> None:
    light = words("Let me check that.") + words(" I think maybe Friday", logprob=-2.5)
    strong = words(" Your flight is moved to Friday at 8:05.", first=0.4, delay=0.025)
    t = turn(text="Move my flight to Friday and keep my seat.")
    run = drive(t, [TierScript(light), TierScript(strong)])
    assert run.finish is not None and run.finish.status == "completed"
    assert [(s.tier, s.prefix, s.speculative) for s in run.started] == [
        (0, "", False),
        (1, "Let me check that.", False),
    ]
    assert run.released == "Let me check that. Your flight is moved to Friday at 8:05."
    kinds = decisions(run.actions)
    assert kinds[:2] == ["route", "preempt"] and kinds[-1] == "accept"
    handoff = run.of(Handoff)
    assert handoff == [Handoff(0, 1, len("Let me check that."), handoff[0].t_ms)]  # type: ignore[union-attr]
    assert 0 in run.cancelled
    trace = t.trace()
    assert trace.escalated and trace.final_tier_name == "strong"
    assert trace.handoff_ms is not None and trace.handoff_ms >= 400
    preempt = next(d for d in trace.decisions if d.kind == "preempt")
    assert preempt.cause == "confidence" and "confidence" in preempt.reason
    assert preempt.scores.p_correct is not None and preempt.scores.p_correct < 0.45


def test_restarting_strong_tier_does_not_repeat_released_text() -> None:
    light = words("Let me check that.") + words(" maybe", logprob=-3.0) * 3
    strong = words("Let me check that. It is done.", first=0.4)
    run = drive(turn(), [TierScript(light), TierScript(strong)])
    assert run.released == "Let me check that. It is done."


@pytest.mark.parametrize(
    "strong_says",
    [" Let me check that. It is done.", "Let me check that. It is done.", " It is done."],
)
def test_a_released_leading_space_is_kept_and_the_next_tier_still_continues_after_it(
    strong_says: str,
) -> None:
    # released text is exact (" Let…"): the repeat guard still knows a restart of the prefix,
    # with or without its leading space, and a plain continuation passes as it came
    light = words(" Let me check that.") + words(" maybe", logprob=-3.0) * 3
    run = drive(turn(), [TierScript(light), TierScript(words(strong_says, first=0.4))])
    assert [s.prefix for s in run.started] == ["", " Let me check that."]
    assert run.released == " Let me check that. It is done."


def test_hedge_starts_speculatively_and_is_cancelled_when_confidence_recovers() -> None:
    params = msgspec.structs.replace(PARAMS, policy=PolicyParams(hedge_window_ms=2000))
    light = (
        words("Let me check that.")
        + words(" the", logprob=-0.9) * 3
        + words(" and it is all fine now with your booking tonight.", logprob=-0.01)
    )
    t = turn(params)
    run = drive(t, [TierScript(light), TierScript(words(" Strong.", first=1.5))])
    kinds = decisions(run.actions)
    assert "hedge" in kinds and "hedge_cancel" in kinds and "preempt" not in kinds
    hedge = [s for s in run.started if s.speculative]
    assert len(hedge) == 1 and hedge[0].tier == 1
    assert hedge[0].attempt in run.cancelled
    assert run.finish is not None and run.finish.status == "completed"
    assert "Strong" not in run.released
    # the hedge's tokens are paid for and traced
    attempts = t.trace().attempts
    assert attempts[1].speculative and attempts[1].end_reason == "hedge not needed"


def test_hedge_is_promoted_on_preempt_without_a_new_start() -> None:
    light = (
        words("Let me check that.")
        + words(" the", logprob=-0.9) * 3
        + [Step(0.05, " no", -4.0), Step(0.05, " idea", -4.0), Step(0.05, " at", -4.0)]
    )
    strong = words(" Your table is booked.", first=0.05, delay=0.01)
    t = turn()
    run = drive(t, [TierScript(light), TierScript(strong)])
    assert [s.speculative for s in run.started] == [False, True]
    assert "preempt" in decisions(run.actions)
    assert run.released == "Let me check that. Your table is booked."
    trace = t.trace()
    assert trace.attempts[1].promoted and trace.final_tier == 1


def test_ttft_timeout_falls_back_to_the_next_tier() -> None:
    slow = TierScript([Step(5.0, "late")])
    t = turn()
    run = drive(t, [slow, TierScript(words("Done.", first=0.3))])
    d = [a.record for _, a in run.actions if isinstance(a, Decision)]
    fb = next(r for r in d if r.kind == "fallback")
    assert fb.cause == "latency" and "no first token within 1000 ms" in fb.reason
    assert run.released == "Done."
    assert run.finish is not None and run.finish.status == "completed"


def test_stall_midstream_falls_back_and_keeps_released_prefix() -> None:
    light = words("Okay, one moment.") + words(" Your", delay=0.02) + [Step(3.0, " table")]
    t = turn()
    run = drive(t, [TierScript(light), TierScript(words(" The table is booked.", first=0.3))])
    fb = next(
        a.record for _, a in run.actions if isinstance(a, Decision) and a.record.kind == "fallback"
    )
    assert "stalled" in fb.reason
    assert run.released == "Okay, one moment. The table is booked."


def test_error_falls_back_and_every_tier_failing_fails_the_turn() -> None:
    t = turn()
    run = drive(
        t, [TierScript([], end="error:rate_limited: 429"), TierScript([], end="error:boom")]
    )
    assert run.finish is not None and run.finish.status == "failed"
    kinds = decisions(run.actions)
    assert kinds == ["route", "fallback", "stop"]


def test_truncated_answer_escalates_for_completeness() -> None:
    t = turn()
    run = drive(
        t, [TierScript(words("I booked"), end="length"), TierScript(words("Booked.", first=0.3))]
    )
    pre = next(
        a.record for _, a in run.actions if isinstance(a, Decision) and a.record.kind == "preempt"
    )
    assert pre.cause == "completeness" and "cut off" in pre.reason
    assert run.released == "Booked."


def test_verifier_failure_escalates_for_correctness() -> None:
    def no_feb_30(answer: Answer) -> str | None:
        return "February 30 does not exist" if "Feb 30" in answer.text else None

    t = turn(verifiers=[no_feb_30])
    run = drive(
        t,
        [
            TierScript(words("Booked for Feb 30.")),
            TierScript(words("Booked for Mar 2.", first=0.3)),
        ],
    )
    pre = next(
        a.record for _, a in run.actions if isinstance(a, Decision) and a.record.kind == "preempt"
    )
    assert pre.cause == "correctness"
    assert run.released == "Booked for Mar 2."


def test_tool_call_is_buffered_then_released_and_malformed_arguments_escalate() -> None:
    bad = TierScript(
        [
            Step(0.1, tool=(0, "c1", "create_booking", '{"date": ')),
        ],
        end="tool_calls",
    )
    good = TierScript(
        [Step(0.3, tool=(0, "c2", "create_booking", '{"date": "2026-12-01"}'))], end="tool_calls"
    )
    t = turn()
    run = drive(t, [bad, good])
    calls = run.of(ReleaseToolCall)
    assert calls == [ReleaseToolCall("c2", "create_booking", '{"date": "2026-12-01"}', 1)]
    assert run.finish is not None and run.finish.status == "completed"


def test_filler_covers_a_slow_start() -> None:
    params = msgspec.structs.replace(PARAMS, budgets=BudgetParams(first_text_ms=300))
    t = turn(params)
    run = drive(t, [TierScript(words("Here you go.", first=0.5)), TierScript([])])
    fillers = run.of(Filler)
    assert len(fillers) == 1
    assert run.released == "Here you go."
    assert t.trace().fillers == (fillers[0].text,)  # type: ignore[union-attr]


def test_end_of_turn_deadline_stops_a_hanging_turn() -> None:
    params = msgspec.structs.replace(PARAMS, budgets=BudgetParams(end_of_turn_ms=2000))
    never = TierScript([Step(0.1, "Hi"), Step(0.5, " there")], end="hang")
    never_long = TierScript([Step(0.1, "x")] * 3 + [Step(1.4, "y")] * 5, end="hang")
    t = turn(params)
    run = drive(t, [never, never_long])
    assert run.finish is not None and run.finish.status in ("incomplete", "failed")
    assert run.finish_time is not None and run.finish_time <= 100.0 + 2.0 + 1e-9


def test_cost_cap_refuses_an_escalation_and_says_so() -> None:
    # the strong tier's input alone costs 50 tokens * $2.5/1M = $0.000125: over a $0.0001 cap
    params = msgspec.structs.replace(
        PARAMS, budgets=BudgetParams(turn_cap_usd=0.0001), policy=PolicyParams(hedging=False)
    )
    light = words("Let me check that.") + words(" maybe it works", logprob=-3.0)
    t = turn(params)
    run = drive(t, [TierScript(light), TierScript(words("Strong.", first=0.3))])
    refuse = [
        a.record for _, a in run.actions if isinstance(a, Decision) and a.record.kind == "refuse"
    ]
    assert refuse and refuse[0].cause == "budget" and "would cost" in refuse[0].reason
    assert [s.tier for s in run.started] == [0]
    assert t.trace().cost_usd <= 0.0001


def test_complexity_skips_the_light_tier() -> None:
    from realtime_cascade.core import ComplexityParams

    params = msgspec.structs.replace(PARAMS, complexity=ComplexityParams(skip_above=0.5))
    t = turn(
        params, text="Move my flight, keep my seat, and apply my voucher unless it costs more."
    )
    run = drive(t, [TierScript([]), TierScript(words("Done.", first=0.3))])
    route = run.of(Decision)[0]
    assert route.record.kind == "route" and route.record.cause == "complexity"  # type: ignore[union-attr]
    assert [s.tier for s in run.started] == [1]
    assert t.first_tier_preempted is None  # no label for the router


def test_router_skips_when_confident_and_experienced() -> None:
    t = turn(router=RouterEstimate(0.95, 100))
    run = drive(t, [TierScript([]), TierScript(words("Done.", first=0.3))])
    assert run.of(Decision)[0].record.cause == "router"  # type: ignore[union-attr]
    t2 = turn(router=RouterEstimate(0.95, 3))  # too few observations to trust it
    run2 = drive(t2, [TierScript(words("Done.")), TierScript([])])
    assert [s.tier for s in run2.started] == [0]


def test_cancel_stops_everything_and_keeps_released_text() -> None:
    t = turn()
    text = "Sure thing, I am booking a table for you right now, one second, nearly done."
    run = drive(t, [TierScript(words(text)), TierScript([])], cancel_at=100.3)
    assert run.finish is not None and run.finish.status == "cancelled"
    assert 0 in run.cancelled
    assert t.trace().text == run.released
    assert run.released == "Sure thing," and t.trace().status == "cancelled"


def test_events_in_the_wrong_state_are_typed_errors_that_change_nothing() -> None:
    t = turn()
    with pytest.raises(InvalidEvent):
        t.tick(0.0)
    actions = t.start(0.0)
    assert isinstance(actions[-1], StartTier)
    with pytest.raises(InvalidEvent):
        t.start(0.0)
    with pytest.raises(InvalidEvent):
        t.token(7, "x", -0.1, (), 0.1)
    t.cancel(0.2)
    assert t.done
    with pytest.raises(InvalidEvent):
        t.cancel(0.3)
    assert t.token(0, "late", -0.1, (), 0.4) == []  # late token of a cancelled stream
    assert t.trace().status == "cancelled"


def test_max_tier_limits_escalation_and_last_tier_releases_eagerly() -> None:
    light = words("Let me check that.") + words(" maybe it works", logprob=-3.0)
    t = turn(max_tier=0)
    run = drive(t, [TierScript(light), TierScript([])])
    # nothing above tier 0 is allowed: the monitor has nothing to escalate to, so the text goes
    # out word by word (eager) and the turn is accepted on the light tier
    assert decisions(run.actions) == ["route", "accept"]
    assert run.released == "Let me check that. maybe it works"
    assert len(run.of(Release)) >= 4


def test_cancel_tier_is_emitted_before_the_replacement_starts() -> None:
    light = words("Let me check that.") + words(" maybe it works", logprob=-3.0)
    run = drive(turn(), [TierScript(light), TierScript(words(" Done.", first=0.3))])
    kinds = [
        type(a).__name__ for _, a in run.actions if isinstance(a, (CancelTier, StartTier, Release))
    ]
    i_cancel = kinds.index("CancelTier")
    assert kinds[i_cancel + 1] == "StartTier"
    assert isinstance(run.actions[0][1], Decision)
    assert all(isinstance(a, Release) or True for _, a in run.actions)


def test_unsure_tool_arguments_are_preempted_midstream() -> None:
    args = ['{"date"', ': "', "2026", "-02", "-30", '", "party"', ": 2", "}"]
    unsure = [
        Step(
            0.05,
            tool=(0, "c1" if i == 0 else None, "create_booking" if i == 0 else None, a),
            logprob=-3.0,
        )
        for i, a in enumerate(args)
    ]
    good = TierScript(
        [Step(0.3, tool=(0, "c2", "create_booking", '{"date": "2026-03-02", "party": 2}'))],
        end="tool_calls",
    )
    t = turn()
    run = drive(t, [TierScript(unsure, end="tool_calls"), good])
    pre = next(
        a.record for _, a in run.actions if isinstance(a, Decision) and a.record.kind == "preempt"
    )
    assert pre.cause == "confidence"
    # cut while the arguments were still streaming, not at the end of the call
    assert t.trace().attempts[0].output_tokens < len(args)
    assert run.of(ReleaseToolCall) == [
        ReleaseToolCall("c2", "create_booking", '{"date": "2026-03-02", "party": 2}', 1)
    ]
