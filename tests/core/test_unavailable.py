"""Rule 8: tiers marked unavailable (open circuit breakers) are skipped by routing, escalation,
hedging and fallback; with none left the turn fails at once, saying why."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_cascade.core import (
    CancelTier,
    CascadeParams,
    ComplexityParams,
    Decision,
    PolicyParams,
    TierSpec,
    Turn,
)

from .driver import Step, TierScript, drive, words

T0 = TierSpec("t0", 0.1, 0.4, 0.7, 100, ttft_timeout_ms=500, stall_timeout_ms=300)
T1 = TierSpec("t1", 0.5, 2.0, 0.85, 200, ttft_timeout_ms=800, stall_timeout_ms=500)
T2 = TierSpec("t2", 2.5, 10.0, 0.97, 400, ttft_timeout_ms=1500, stall_timeout_ms=800)
THREE = CascadeParams(tiers=(T0, T1, T2))
EASY = words("Sure. I booked a table for two at seven.")
SHAKY = words("Let me check that.") + words(" I think maybe Friday", logprob=-2.5)
GOOD = words(" Your flight is moved to Friday at 8:05.", first=0.3, delay=0.02)


def turn(unavailable: set[int], params: CascadeParams = THREE, **kw: object) -> Turn:
    return Turn(
        params,
        "Move my flight to Friday.",
        input_tokens=40,
        unavailable=frozenset(unavailable),
        **kw,  # type: ignore[arg-type]
    )


def records(run_actions: list) -> list:  # type: ignore[type-arg]
    return [a.record for _, a in run_actions if isinstance(a, Decision)]


def test_route_skips_an_unavailable_first_tier_and_says_so() -> None:
    t = turn({0})
    run = drive(t, [TierScript(EASY), TierScript(EASY), TierScript(EASY)])
    assert [s.tier for s in run.started] == [1]
    route = records(run.actions)[0]
    assert (route.kind, route.cause, route.tier) == ("route", "health", 1)
    assert "t0 is unavailable (circuit open)" in route.reason
    assert run.finish is not None and run.finish.status == "completed"


def test_route_goes_weaker_when_nothing_stronger_is_available() -> None:
    # complexity forces the top tier, which is down; t1 is the nearest one up, else down
    params = CascadeParams(tiers=(T0, T1, T2), complexity=ComplexityParams(skip_above=0.0))
    t = turn({2}, params)
    run = drive(t, [TierScript(EASY), TierScript(EASY), TierScript(EASY)])
    assert [s.tier for s in run.started] == [1]
    t = turn({1, 2}, params)
    run = drive(t, [TierScript(EASY), TierScript(EASY), TierScript(EASY)])
    assert [s.tier for s in run.started] == [0]


def test_every_tier_unavailable_fails_at_once() -> None:
    t = turn({0, 1, 2})
    run = drive(t, [TierScript(EASY), TierScript(EASY), TierScript(EASY)])
    assert run.started == []
    assert run.finish is not None and run.finish.status == "failed"
    assert "every allowed tier is unavailable" in run.finish.reason
    assert run.finish_time == 100.0  # no waiting at all
    stop = records(run.actions)[-1]
    assert (stop.kind, stop.cause) == ("stop", "health")
    trace = t.trace()
    assert trace.status == "failed" and trace.attempts == ()


def test_only_the_allowed_range_counts() -> None:
    # max_tier=1 with t0 and t1 down: t2 is healthy but not allowed
    t = turn({0, 1}, max_tier=1)
    run = drive(t, [TierScript(EASY), TierScript(EASY), TierScript(EASY)])
    assert run.started == [] and run.finish is not None and run.finish.status == "failed"


def test_escalation_skips_an_unavailable_middle_tier() -> None:
    t = turn({1})
    run = drive(t, [TierScript(SHAKY), TierScript(GOOD), TierScript(GOOD)])
    assert [s.tier for s in run.started if not s.speculative] == [0, 2]
    assert all(s.tier != 1 for s in run.started)
    assert run.finish is not None and run.finish.status == "completed"


def test_no_escalation_when_every_stronger_tier_is_down() -> None:
    # nothing to escalate to: the light tier's shaky answer is released as it is
    t = turn({1, 2})
    run = drive(t, [TierScript(SHAKY), TierScript(GOOD), TierScript(GOOD)])
    assert [s.tier for s in run.started] == [0]
    assert run.finish is not None and run.finish.status == "completed"
    assert run.released == "Let me check that. I think maybe Friday"


def test_refused_escalation_names_the_open_circuit() -> None:
    # an incomplete answer forces an escalation; the only stronger tier is down
    truncated = TierScript(words("Let me check that and"), end="length")
    t = turn({1}, CascadeParams(tiers=(T0, T1)))
    run = drive(t, [truncated, TierScript(GOOD)])
    refuse = [r for r in records(run.actions) if r.kind == "refuse"]
    assert refuse and refuse[0].cause == "health"
    assert "circuit open" in refuse[0].reason
    assert run.finish is not None and run.finish.status == "incomplete"


def test_fallback_skips_unavailable_tiers() -> None:
    t = turn({1})
    run = drive(t, [TierScript(words("Let"), end="error:boom"), TierScript(GOOD), TierScript(GOOD)])
    assert [s.tier for s in run.started] == [0, 2]
    fallback = [r for r in records(run.actions) if r.kind == "fallback"]
    assert fallback and fallback[0].to_tier == 2


def test_fallback_with_nothing_healthy_left_fails_with_the_error() -> None:
    t = turn({1, 2})
    run = drive(t, [TierScript([], end="error:HTTP 503"), TierScript(GOOD), TierScript(GOOD)])
    assert run.finish is not None and run.finish.status == "failed"
    assert "HTTP 503" in run.finish.reason


def test_timeouts_are_marked_on_the_cancel() -> None:
    # a tier that never sends a token is cancelled as timed out; a preempted one is not
    t = turn(set())
    run = drive(t, [TierScript([], end="hang"), TierScript(GOOD), TierScript(GOOD)])
    cancels = [a for _, a in run.actions if isinstance(a, CancelTier)]
    assert cancels[0].timed_out and "no first token" in cancels[0].reason
    t = turn(set())
    run = drive(t, [TierScript(SHAKY), TierScript(GOOD), TierScript(GOOD)])
    cancels = [a for _, a in run.actions if isinstance(a, CancelTier)]
    assert cancels and not any(c.timed_out for c in cancels)


def test_no_hedge_onto_an_unavailable_tier() -> None:
    doubtful = words("Let me check that.") + words(" maybe", logprob=-0.9) + words(" ok.")
    params = CascadeParams(tiers=(T0, T1), policy=PolicyParams(hedge_below=0.99))
    t = turn({1}, params)
    run = drive(t, [TierScript(doubtful), TierScript(GOOD)])
    assert [s.tier for s in run.started] == [0]
    assert not any(r.kind == "hedge" for r in records(run.actions))


@settings(max_examples=150, deadline=None)
@given(
    down=st.sets(st.integers(0, 2)),
    scripts=st.lists(
        st.tuples(
            st.sampled_from(["easy", "shaky", "hang", "error", "length"]),
            st.floats(0.01, 0.5),
        ),
        min_size=3,
        max_size=3,
    ),
    first=st.integers(0, 2),
)
def test_an_unavailable_tier_is_never_started(
    down: set[int], scripts: list[tuple[str, float]], first: int
) -> None:
    made = []
    for kind, first_delay in scripts:
        steps = {
            "easy": EASY,
            "shaky": SHAKY,
            "hang": [],
            "error": words("Hmm"),
            "length": words("Let me"),
        }[kind]
        if steps:
            steps = [Step(first_delay, *_rest(steps[0])), *steps[1:]]
        end = {"hang": "hang", "error": "error:boom", "length": "length"}.get(kind, "stop")
        made.append(TierScript(steps, end=end))
    t = turn(down, first_tier=first)
    run = drive(t, made)
    assert all(s.tier not in down for s in run.started)
    assert run.finish is not None
    if set(range(first, 3)) <= down:
        assert run.finish.status == "failed" and run.started == []


def _rest(step: Step) -> tuple[str, float | None]:
    return step.text, step.logprob
