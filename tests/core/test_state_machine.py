"""A Hypothesis state machine over one turn of the core, checked against an external model.

Hypothesis drives a :class:`Turn` with arbitrary interleavings of tokens (English, CJK,
line-separated, unbroken text; good, doubtful, missing and invalid logprobs), ends (with honest,
missing or inflated usage), failures, ticks (at deadlines or anywhere) and cancels, on 2- and
3-tier profiles with hedging on and off. Two runs in three are hedging ground (three tiers,
hedging on, a cap with room for a hedge, if only just), with rules that put the active tier in
doubt, end or fail a hedge (cut off, most often) and fail the active tier beside a hedge:
without them about one run in ten hedged at all, too few to find a finished hedge that freezes
the gate. The model keeps its
own account, from the actions alone, of the attempts (which are live, which is the hedge, which
tier failed), of what was billed, and of the text released, and checks the core's rules after
every event:

- released text is append-only and equals the core's; every start continues after it;
- nothing is released while a hedge runs, by an event after the end-of-turn deadline, or by a
  failing hedge or an early tick while the doubt it was started for lasts (rule 4, rule 7);
- a tier that failed is never hedged again in the turn;
- the cost the core reports is what the model says was billed, and within the cap whenever the
  upstream billed no more than it was asked for; otherwise the turn is not ``completed``;
- decision times never run backwards, nor past the clock; ``end_ms`` and ``handoff_ms`` agree;
- the last tier releases every token at once when nothing holds the gate, and an unfrozen gate
  never holds more than ``max_phrase_chars`` plus a token, whatever the script;
- a deadline that fires changes something or moves, and the turn always ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from realtime_cascade.core import (
    Action,
    BudgetParams,
    CancelTier,
    CascadeParams,
    Decision,
    Filler,
    FinishTurn,
    GateParams,
    Handoff,
    PolicyParams,
    Release,
    ReleaseToolCall,
    StartTier,
    TierSpec,
    Turn,
)

TOKENS = [
    "Sure",
    ",",
    ".",
    " the",
    " flight",
    " 7",
    ".30",
    " is",
    " booked",
    "!",
    "?",
    " Friday",
    "day",
    "今天",
    "天气",
    "很好",
    "，",
    "。",
    "我们",
    "\n",
    "item\n",
    "xxxxxxxx",
    " ",
    "é",
    "\u0301",
]
LONGEST_TOKEN = max(len(t) for t in TOKENS)

usual = st.sampled_from([-0.01, -0.01, -1.0, -1.0, -2.5])  # confident, doubtful, bad
logprobs = st.one_of(
    usual,
    usual,
    usual,
    st.none(),
    st.floats(-6.0, 0.0),
    st.sampled_from([710.0, math.inf, math.nan, 3.0, -math.inf, 1e-7]),  # broken upstreams
)
tops = st.lists(st.sampled_from([-0.1, -1.0, -3.0, 0.5, math.nan]), max_size=3).map(tuple)
steps = st.one_of(st.floats(0.0, 0.08), st.floats(0.0, 0.6))

INPUT_TOKENS = 40
MS = 1e-3  # the trace rounds milliseconds to 3 decimals


@dataclass
class Attempt:
    id: int
    tier: int
    speculative: bool
    prefix: str
    max_tokens: int
    live: bool = True
    tokens: int = 0  # delivered while live: what the core counts
    billed_in: int | None = None
    billed_out: int | None = None


@dataclass
class Model:
    released: str = ""
    attempts: dict[int, Attempt] = field(default_factory=dict)
    active: int | None = None
    hedge: int | None = None  # a speculative attempt whose text is held (rule 4)
    doubt_until: float | None = None  # the doubt a hedge was started for, if known
    failed: set[int] = field(default_factory=set)
    decision_ms: float = 0.0
    overbilled: bool = False
    finish: FinishTurn | None = None


class CoreMachine(RuleBasedStateMachine):
    turn: Turn
    params: CascadeParams
    model: Model
    now: float

    @initialize(
        n_tiers=st.sampled_from([3, 2]),
        hedging=st.sampled_from([True, True, False]),
        window=st.one_of(st.just(600.0), st.floats(10, 1500)),
        gate=st.builds(
            GateParams,
            min_phrase_chars=st.integers(1, 12),
            max_phrase_chars=st.integers(8, 60),
            lookahead_tokens=st.integers(0, 2),
            max_hold_ms=st.floats(20, 800),
            eager_last_tier=st.booleans(),
        ),
        cap=st.sampled_from([0.05, 0.05, 0.0005, 0.0002, 0.0, 0.0001, 0.00002, 0.05]),
        end_ms=st.one_of(st.sampled_from([20000.0, 4000.0]), st.floats(300, 6000)),
        first_text_ms=st.one_of(st.just(900.0), st.floats(50, 2000)),
        timeouts=st.one_of(
            st.just((2000.0, 1500.0)), st.tuples(st.floats(100, 3000), st.floats(50, 2000))
        ),
        max_out=st.sampled_from([6, 40, 600]),
        request=st.sampled_from(
            ["Hi.", "Hi.", "Move my flight and keep my seat, unless it is full?"]
        ),
        ground=st.sampled_from([True, True, False]),
        ground_cap=st.sampled_from([0.05, 0.0005, 0.0001, 0.00005]),
    )
    def setup(
        self,
        n_tiers: int,
        hedging: bool,
        window: float,
        gate: GateParams,
        cap: float,
        end_ms: float,
        first_text_ms: float,
        timeouts: tuple[float, float],
        max_out: int,
        request: str,
        ground: bool,
        ground_cap: float,
    ) -> None:
        if ground:
            # hedging ground: three tiers, hedging on, and room in the cap and the clock for a
            # hedge to start, end and be left behind by a fallback (without it, about one run
            # in ten hedges at all)
            n_tiers, hedging = 3, True
            cap = ground_cap  # room for a hedge, if only just: two streams against one cap
            end_ms = max(end_ms, 3000.0)
        ttft, stall = timeouts
        tiers = (
            TierSpec("light", 0.1, 0.4, 0.8, 150, ttft, stall, max_out),
            TierSpec("mid", 0.5, 2.0, 0.9, 250, ttft, stall, max_out),
            TierSpec("strong", 2.5, 10.0, 0.97, 400, ttft, stall, max_out),
        )
        self.params = CascadeParams(
            tiers=(tiers[0], tiers[2]) if n_tiers == 2 else tiers,
            policy=PolicyParams(hedging=hedging, hedge_window_ms=window),
            gate=gate,
            budgets=BudgetParams(
                first_text_ms=first_text_ms, end_of_turn_ms=end_ms, turn_cap_usd=cap
            ),
        )
        self.turn = Turn(self.params, request, input_tokens=INPUT_TOKENS)
        self.model = Model()
        self.now = 0.0
        self.apply("start", self.turn.start(0.0))

    # -- the model's account of one batch of actions -----------------------------------------

    @property
    def deadline_passed(self) -> bool:
        return self.now >= self.params.budgets.end_of_turn_ms / 1000.0

    def apply(self, event: str, actions: list[Action], *, hedge_failed: bool = False) -> None:
        m = self.model
        late = self.deadline_passed
        for action in actions:
            match action:
                case StartTier():
                    assert action.prefix == m.released, "a tier starts after the released text"
                    assert action.max_tokens is not None and action.max_tokens >= 1
                    assert not late, "nothing starts after the end-of-turn deadline"
                    if action.speculative:
                        assert action.tier not in m.failed, "a failed tier is hedged again"
                        assert m.hedge is None, "two hedges at once"
                        m.hedge = action.attempt
                        window = self.params.policy.hedge_window_ms / 1000.0
                        m.doubt_until = self.now + window
                    else:
                        m.active = action.attempt
                    m.attempts[action.attempt] = Attempt(
                        action.attempt,
                        action.tier,
                        action.speculative,
                        action.prefix,
                        action.max_tokens,
                    )
                    live = [a for a in m.attempts.values() if a.live]
                    assert len(live) <= 2, "more than an active attempt and a hedge"
                case CancelTier():
                    a = m.attempts[action.attempt]
                    assert a.live, "cancelling an attempt that already ended"
                    a.live = False
                    if action.timed_out:
                        m.failed.add(a.tier)
                case Release():
                    assert not late, f"{event} released text after the end-of-turn deadline"
                    assert m.hedge is None, f"{event} released text while a hedge runs"
                    if hedge_failed or (event == "tick" and m.doubt_until is not None):
                        assert m.doubt_until is None or self.now >= m.doubt_until, (
                            f"{event} released text while its doubt lasts"
                        )
                    assert action.text, "an empty release"
                    m.released += action.text
                    if event == "token":
                        # the monitor may have recovered (a silent end of the doubt once its
                        # hedge is gone): the model takes the core's word for tokens only
                        m.doubt_until = None
                case Handoff():
                    assert action.released_chars == len(m.released)
                    if m.hedge is not None and m.attempts[m.hedge].tier == action.to_tier:
                        m.active = m.hedge  # promoted: its text is the active's now
                    elif m.hedge is not None:
                        # handed to another tier: the hedge has nothing left to hedge
                        assert not m.attempts[m.hedge].live, "a hedge outlived its handoff"
                    m.hedge = None
                    m.doubt_until = None
                case Decision(record=record):
                    assert record.t_ms >= m.decision_ms - 1e-9, "decision time ran backwards"
                    assert record.t_ms <= self.now * 1000.0 + MS, "a decision in the future"
                    m.decision_ms = record.t_ms
                    if record.kind == "hedge_cancel":
                        m.hedge = None
                        if record.cause in ("confidence", "policy"):
                            m.doubt_until = None  # resolved; a failure drop leaves the doubt
                    elif record.kind == "refuse" and m.hedge is None:
                        m.doubt_until = None  # an escalation refused ends the doubt
                case FinishTurn():
                    assert m.finish is None
                    m.finish = action
                    m.hedge = None
                case Filler() | ReleaseToolCall():
                    pass
        if self.turn.done:
            assert not self.live_ids(), "a stream left running after the turn ended"
        if late and event != "late":
            assert self.turn.done, f"{event} after the end-of-turn deadline left the turn running"

    def live_ids(self) -> list[int]:
        return [a.id for a in self.model.attempts.values() if a.live]

    def advance(self, dt: float) -> None:
        self.now += dt

    # -- rules ---------------------------------------------------------------------------------

    @precondition(lambda self: not self.turn.done and bool(self.live_ids()))
    @rule(
        pick=st.integers(0, 1),
        burst=st.lists(st.tuples(st.sampled_from(TOKENS), steps), min_size=1, max_size=10),
        lp=logprobs,
        top=tops,
    )
    def tokens(
        self,
        pick: int,
        burst: list[tuple[str, float]],
        lp: float | None,
        top: tuple[float, ...],
    ) -> None:
        """A burst of tokens on one stream, all with one logprob (a sustained doubt hedges)."""
        self.stream(pick, burst, lp, top)

    @precondition(lambda self: not self.turn.done and bool(self.live_ids()))
    @rule(
        pick=st.integers(0, 1),
        burst=st.lists(st.tuples(st.sampled_from(TOKENS), steps), min_size=4, max_size=8),
    )
    def doubtful_tokens(self, pick: int, burst: list[tuple[str, float]]) -> None:
        """A run the monitor doubts (P(correct) ≈ 0.56 on an easy request): hedging ground."""
        self.stream(pick, burst, -1.0, ())

    def stream(
        self, pick: int, burst: list[tuple[str, float]], lp: float | None, top: tuple[float, ...]
    ) -> None:
        ids = self.live_ids()
        self.stream_on(self.model.attempts[ids[pick % len(ids)]], burst, lp, top)

    def stream_on(
        self, a: Attempt, burst: list[tuple[str, float]], lp: float | None, top: tuple[float, ...]
    ) -> None:
        for text, dt in burst:
            if self.turn.done or not a.live or a.tokens >= a.max_tokens:
                return  # an honest upstream stops at max_tokens (its end comes as "length")
            self.advance(dt)
            a.tokens += 1
            was_hedge = a.id == self.model.hedge
            self.apply("token", self.turn.token(a.id, text, lp, top, self.now))
            self.check_gate(a.id, was_hedge)

    @precondition(lambda self: not self.turn.done and bool(self.live_ids()))
    @rule(
        pick=st.integers(0, 5),
        reason=st.sampled_from(["stop", "stop", "length", "content_filter"]),
        usage=st.sampled_from(["none", "counted", "more", "over"]),
        dt=steps,
    )
    def finish(self, pick: int, reason: str, usage: str, dt: float) -> None:
        if pick not in (2, 3) or not any(self.model.attempts[i].tokens for i in self.live_ids()):
            return  # streams end less often than they stream
        ids = self.live_ids()
        self.end(self.model.attempts[ids[pick % len(ids)]], reason, usage, dt)

    def end(self, a: Attempt, reason: str, usage: str, dt: float) -> None:
        self.advance(dt)
        estimate = INPUT_TOKENS + len(a.prefix) // 4
        tokens_in: int | None = None
        tokens_out: int | None = None
        match usage:
            case "counted":
                tokens_in, tokens_out = estimate, a.tokens
            case "more":  # billed tokens the stream never showed, within what was asked
                tokens_in, tokens_out = estimate, max(a.tokens, a.max_tokens)
            case "over":  # an upstream that ignored max_tokens
                tokens_in, tokens_out = estimate, a.max_tokens + 50
                self.model.overbilled = True
        a.live = False
        a.billed_in, a.billed_out = tokens_in, tokens_out
        actions = self.turn.tier_finished(
            a.id, reason, self.now, input_tokens=tokens_in, output_tokens=tokens_out
        )
        self.apply("finish", actions)

    # -- hedging ground: the rules above alone start a hedge in about one run in ten ----------

    def can_doubt(self) -> bool:
        m = self.model
        if self.turn.done or m.hedge is not None or m.active is None:
            return False
        a = m.attempts[m.active]
        return a.live and a.tier < len(self.params.tiers) - 1

    @precondition(can_doubt)
    @rule(
        burst=st.lists(
            st.tuples(st.sampled_from(TOKENS), st.floats(0.0, 0.05)), min_size=4, max_size=6
        )
    )
    def doubt(self, burst: list[tuple[str, float]]) -> None:
        """A doubtful run on an active tier that has a stronger one above it: a hedge starts
        (with hedging on, and unless the cap or the policy refuses it)."""
        assert self.model.active is not None
        self.stream_on(self.model.attempts[self.model.active], burst, -1.0, ())

    def hedge_live(self) -> bool:
        m = self.model
        return not self.turn.done and m.hedge is not None and m.attempts[m.hedge].live

    @precondition(hedge_live)
    @rule(
        reason=st.sampled_from(["length", "length", "content_filter", "stop", "error"]),
        usage=st.sampled_from(["none", "counted", "more"]),
        n=st.integers(0, 3),
        dt=st.floats(0.0, 0.05),
    )
    def hedge_ends(self, reason: str, usage: str, n: int, dt: float) -> None:
        """The hedge says a little and ends, most often cut off (it cannot take over then),
        billed up to what it was asked for, or fails (its tier is never hedged again)."""
        assert self.model.hedge is not None
        a = self.model.attempts[self.model.hedge]
        self.stream_on(a, [(" Sure", dt)] * n, -0.01, ())
        if not a.live or self.turn.done:
            return
        if reason != "error":
            self.end(a, reason, usage, dt)
            return
        self.advance(dt)
        a.live = False
        self.model.failed.add(a.tier)
        actions = self.turn.tier_failed(a.id, "502 bad gateway", self.now)
        self.apply("fail", actions, hedge_failed=True)

    def active_beside_hedge(self) -> bool:
        m = self.model
        if self.turn.done or m.hedge is None or m.active is None:
            return False
        return m.attempts[m.active].live

    @precondition(active_beside_hedge)
    @rule(dt=st.floats(0.0, 0.05))
    def active_fails(self, dt: float) -> None:
        """The active tier fails while a hedge runs or waits to be promoted: a fallback."""
        assert self.model.active is not None
        a = self.model.attempts[self.model.active]
        self.advance(dt)
        a.live = False
        self.model.failed.add(a.tier)
        self.apply("fail", self.turn.tier_failed(a.id, "connection reset", self.now))

    @precondition(lambda self: not self.turn.done and bool(self.live_ids()))
    @rule(pick=st.integers(0, 7), dt=steps)
    def fail(self, pick: int, dt: float) -> None:
        if pick not in (2, 3):  # both values, so either live stream may fail
            return  # failures are rarer still
        ids = self.live_ids()
        a = self.model.attempts[ids[pick % len(ids)]]
        self.advance(dt)
        a.live = False
        self.model.failed.add(a.tier)
        hedge_failed = a.id == self.model.hedge
        # a quick failure before any token is a refused connection: nothing was billed (the
        # adapter says input_tokens=0); read off the draws already made, so runs stay the same
        refused = a.tokens == 0 and dt < 0.04
        if refused:
            a.billed_in = 0
        actions = self.turn.tier_failed(
            a.id, "connection refused", self.now, input_tokens=0 if refused else None
        )
        self.apply("fail", actions, hedge_failed=hedge_failed)

    @precondition(lambda self: not self.turn.done)
    @rule(dice=st.integers(0, 3), dt=steps)
    def tick(self, dice: int, dt: float) -> None:
        at_deadline = dice == 2  # a quarter of ticks fire a deadline; the rest come early
        deadline = self.turn.next_deadline()
        assert deadline is not None, "a running turn always has a deadline"
        if at_deadline:
            self.now = max(self.now, deadline)
        else:
            self.advance(dt)
        acted = self.turn.tick(self.now)
        self.apply("tick", acted)
        if at_deadline and not self.turn.done:
            after = self.turn.next_deadline()
            assert acted or (after is not None and after > self.now), "the timer would spin"

    @precondition(lambda self: not self.turn.done)
    @rule(dice=st.integers(0, 15), dt=st.floats(0.0, 8.0))
    def cancel(self, dice: int, dt: float) -> None:
        if dice != 7:  # a middle value: Hypothesis favours the ends of a range
            return  # a client cancels now and then, not every few events
        self.advance(dt)
        self.apply("cancel", self.turn.cancel(self.now))

    @precondition(lambda self: any(not a.live for a in self.model.attempts.values()))
    @rule(pick=st.integers(0, 5), dt=steps)
    def late(self, pick: int, dt: float) -> None:
        """A late event of a stream already cancelled or ended: always ignored (rule 1)."""
        ended = [a for a in self.model.attempts.values() if not a.live]
        a = ended[pick % len(ended)]
        self.advance(dt)
        assert self.turn.token(a.id, "late", -0.1, (), self.now) == []
        assert self.turn.tier_finished(a.id, "stop", self.now) == []

    @precondition(lambda self: self.turn.done)
    @rule()
    def done(self) -> None:
        """Nothing more happens to an ended turn; its trace stays what it was."""
        assert self.turn.trace().text == self.model.released
        assert self.turn.next_deadline() is None

    # -- checks --------------------------------------------------------------------------------

    def check_gate(self, attempt: int, was_hedge: bool) -> None:
        """The gate holds only what it must (a peek at its pending text, nothing else)."""
        turn = self.turn
        if turn.done or was_hedge or attempt != self.model.active:
            return
        if self.model.hedge is not None:
            return  # frozen (rule 4)
        pending = turn._gate.pending
        tier = self.model.attempts[attempt].tier
        last = tier == len(self.params.tiers) - 1
        if last and self.params.gate.eager_last_tier:
            # nothing may hold the last tier back: it is never in doubt (nothing to escalate
            # to) and, per the model, no hedge runs
            assert pending == "", "the last tier's text was held back"
        elif turn._doubt_until is None:  # the monitor's doubt is not in the actions: peek
            limit = self.params.gate.max_phrase_chars + LONGEST_TOKEN
            assert len(pending) <= limit, f"an unfrozen gate holds {len(pending)} chars"

    @invariant()
    def released_text_is_the_cores(self) -> None:
        if hasattr(self, "turn"):
            assert self.turn.released == self.model.released

    @invariant()
    def cost_is_what_was_billed_and_within_the_cap(self) -> None:
        if not hasattr(self, "turn"):
            return
        spent = 0.0
        for a in self.model.attempts.values():
            spec = self.params.tiers[a.tier]
            tokens_in = (
                a.billed_in if a.billed_in is not None else INPUT_TOKENS + len(a.prefix) // 4
            )
            tokens_out = a.billed_out if a.billed_out is not None else a.tokens
            spent += (tokens_in * spec.price_in + tokens_out * spec.price_out) / 1e6
        assert math.isclose(self.turn.spent_usd, spent, rel_tol=1e-9, abs_tol=1e-12)
        cap = self.turn.cap_usd
        if not self.model.overbilled:
            assert spent <= cap + 1e-12, f"${spent:.6f} spent over the ${cap:.6f} cap"
        elif spent > cap + 1e-12 and self.turn.done:
            assert self.turn.trace().status != "completed"

    def teardown(self) -> None:
        if not hasattr(self, "turn"):
            return
        turn = self.turn
        # the turn always ends: drive it by its deadlines (streams left hanging never return)
        for _ in range(10_000):
            if turn.done:
                break
            deadline = turn.next_deadline()
            assert deadline is not None
            self.now = max(self.now, deadline)
            self.apply("tick", turn.tick(self.now))
        assert turn.done, "the turn did not end by its deadlines"
        trace = turn.trace()
        event(f"status={trace.status}")
        event(f"attempts={len(trace.attempts)}")
        event(f"hedges={sum(a.speculative for a in trace.attempts)}")
        event(f"handoffs={len(trace.handoffs)}")
        event(f"released={'yes' if trace.text else 'no'}")
        assert trace.text == self.model.released
        assert trace.end_ms >= max((d.t_ms for d in trace.decisions), default=0.0) - 1e-6
        if trace.ttft_ms is not None:
            assert trace.end_ms >= trace.ttft_ms - 1e-6
        if trace.handoff_ms is not None:
            assert trace.handoff_ms >= 0.0
        budget_end = self.params.budgets.end_of_turn_ms
        assert trace.end_ms <= max(budget_end, self.now * 1000.0) + MS


TestCore = CoreMachine.TestCase
TestCore.settings = settings(
    max_examples=2000,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
