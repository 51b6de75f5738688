"""The cascade state machine for one assistant turn over N ordered tiers.

Rules (the adapter may rely on every one of them):

1. The turn is NEW until :meth:`Turn.start`, RUNNING until it hands back ``FinishTurn``, then
   DONE. An event in the wrong state raises :class:`InvalidEvent` and changes nothing, except
   that a late token or end of an attempt already cancelled is ignored: streams race with
   cancellation, so the adapter cannot avoid delivering them.
2. Exactly one attempt is *active*: its text passes through the speech commit gate. At most
   one *hedge* attempt runs beside it; its text is buffered and never released unless it is
   promoted to active.
3. Released text is append-only. Any new active attempt continues after all released text;
   the unreleased tail of the attempt it replaces is dropped. If the new tier starts by
   repeating the released text, the repetition is swallowed.
4. While a hedge runs, or while the monitor is in doubt, the gate is frozen: nothing is released,
   so a hedge's prefix is always exactly the released text when it is promoted. A hedge that
   fails or times out ends the hedge, not the doubt: the gate stays frozen until the doubt is
   resolved, and a tier that failed is not hedged again in the same turn. A hedge that ended
   and cannot take over (cut off, filtered) is dropped as soon as the active tier fails.
5. Escalation (preempt) only goes to a stronger tier; fallback after a failure may take any tier
   not yet tried, stronger first.
6. Every budget check happens before the cost it guards is incurred, on the most each stream
   may be *billed*: an attempt is asked for at most ``StartTier.max_tokens`` output tokens, so
   that its input and that many tokens fit beside the most every other live stream may still
   bill; it starts only if one output token fits, and a stream is cut when its next token would
   not fit. A provider's usage replaces the core's count when a stream ends (or fails: an
   attempt that never reached its provider is billed no input tokens); usage beyond the
   cap (an upstream that billed past what it was asked for) ends the turn ``incomplete``.
7. The core never reads a clock: every event carries ``now`` (seconds, monotonic), and
   :meth:`Turn.next_deadline` says when to call :meth:`Turn.tick` at the latest. The
   end-of-turn deadline is enforced on every event, not only on ticks: a token or an end that
   arrives after it ends the turn and releases nothing. Time in the trace never runs backwards.
8. Tiers in ``unavailable`` (the adapter's circuit breakers say their providers keep failing)
   are skipped by routing, escalation, hedging and fallback alike, as if they were not in the
   cascade; the trace says so (cause ``health``). With no allowed tier left to start, the turn
   fails at once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

import msgspec

from .actions import (
    Action,
    CancelTier,
    Cause,
    Decision,
    DecisionKind,
    DecisionRecord,
    Filler,
    FinishTurn,
    Handoff,
    Release,
    ReleaseToolCall,
    Scores,
    StartTier,
    TurnStatus,
)
from .errors import BudgetError, InvalidEvent
from .gate import SpeechGate
from .params import CascadeParams, TierSpec
from .router import RouterEstimate
from .signals import (
    ConfidenceMonitor,
    RequestFeatures,
    complexity_of,
    incompleteness,
    request_features,
)
from .trace import AttemptTrace, ToolCallRecord, TurnTrace


class Answer(msgspec.Struct, frozen=True):
    """What a verifier sees when a tier finishes."""

    request: str
    text: str
    tool_calls: tuple[ToolCallRecord, ...]


# A verifier returns a description of what is wrong with the answer, or None if it is fine.
Verifier = Callable[[Answer], "str | None"]


class _Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    DONE = "done"


class _Call:
    __slots__ = ("arguments", "call_id", "name")

    def __init__(self) -> None:
        self.call_id = ""
        self.name = ""
        self.arguments: list[str] = []


class _Attempt:
    __slots__ = (
        "allowance",
        "call_order",
        "calls",
        "end_reason",
        "ended",
        "first_token",
        "guard",
        "id",
        "input_tokens",
        "last_token",
        "live",
        "monitor",
        "output_tokens",
        "probe",
        "promoted",
        "released_at_start",
        "spec",
        "speculative",
        "started",
        "text",
        "tier",
    )

    def __init__(
        self,
        attempt_id: int,
        tier: int,
        spec: TierSpec,
        monitor: ConfidenceMonitor,
        prefix: str,
        speculative: bool,
        input_tokens: int,
        now: float,
    ) -> None:
        self.id = attempt_id
        self.tier = tier
        self.spec = spec
        self.monitor = monitor
        self.speculative = speculative
        self.promoted = False
        self.started = now
        self.first_token: float | None = None
        self.last_token: float | None = None
        self.ended: float | None = None
        self.end_reason = ""
        self.live = True
        self.input_tokens = input_tokens
        self.output_tokens = 0
        self.allowance = 0  # the most output tokens it was asked for (StartTier.max_tokens)
        self.text: list[str] = []  # what this attempt said, after the repeat guard
        self.released_at_start = len(prefix)
        # The repeat guard: while the stream could still be re-saying the released prefix,
        # its text is held in ``probe`` rather than passed on.
        stripped = prefix.strip()
        self.guard: str | None = stripped or None
        self.probe = ""
        self.calls: dict[int, _Call] = {}
        self.call_order: list[int] = []

    def cost(self, price_in: float, price_out: float) -> float:
        return (self.input_tokens * price_in + self.output_tokens * price_out) / 1e6

    def worst_cost(self) -> float:
        """The most this attempt may be billed: its cost so far, or, while it streams, its
        input and every output token it was asked for."""
        spec = self.spec
        out = max(self.output_tokens, self.allowance) if self.live else self.output_tokens
        return (self.input_tokens * spec.price_in + out * spec.price_out) / 1e6

    def unrepeat(self, text: str) -> str:
        """Pass ``text`` on, minus any leading repetition of the released prefix."""
        guard = self.guard
        if guard is None:
            return text
        self.probe += text
        seen = self.probe.lstrip()
        if guard.startswith(seen):
            if len(seen) < len(guard):
                return ""  # still matching the prefix: wait for more
            self.guard, self.probe = None, ""
            return ""  # the whole prefix repeated: swallow it
        self.guard = None
        probe, self.probe = self.probe, ""
        if seen.startswith(guard):
            return seen[len(guard) :]
        return probe

    def joined(self) -> str:
        if len(self.text) > 1:
            self.text[:] = ["".join(self.text)]
        return self.text[0] if self.text else ""

    def tool_records(self) -> tuple[ToolCallRecord, ...]:
        out = []
        for index in self.call_order:
            c = self.calls[index]
            out.append(ToolCallRecord(c.call_id, c.name, "".join(c.arguments)))
        return tuple(out)

    def trace(self, t0: float, promoted: bool) -> AttemptTrace:
        def ms(t: float | None) -> float | None:
            return None if t is None else round((t - t0) * 1000.0, 3)

        return AttemptTrace(
            attempt=self.id,
            tier=self.tier,
            tier_name=self.spec.name,
            speculative=self.speculative,
            started_ms=round((self.started - t0) * 1000.0, 3),
            first_token_ms=ms(self.first_token),
            ended_ms=ms(self.ended),
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost(self.spec.price_in, self.spec.price_out),
            end_reason=self.end_reason or ("running" if self.live else ""),
            promoted=promoted,
        )


class Turn:
    """One turn of the cascade. See the module docstring for its rules."""

    def __init__(
        self,
        params: CascadeParams,
        request: str,
        *,
        input_tokens: int,
        turn_id: str = "turn",
        router: RouterEstimate | None = None,
        session_spent_usd: float = 0.0,
        verifiers: Sequence[Verifier] = (),
        first_tier: int = 0,
        max_tier: int | None = None,
        unavailable: frozenset[int] = frozenset(),
        features: RequestFeatures | None = None,
    ) -> None:
        if not params.tiers:
            raise BudgetError("a cascade needs at least one tier")
        if params.budgets.turn_cap_usd < 0 or params.budgets.session_cap_usd < 0:
            raise BudgetError("budget caps must not be negative")
        self.params = params
        self.request = request
        self.turn_id = turn_id
        self._tiers = params.tiers
        self._input_tokens = max(1, input_tokens)
        self._router = router
        self._verifiers = tuple(verifiers)
        self._first_tier = max(0, min(first_tier, len(self._tiers) - 1))
        top = len(self._tiers) - 1 if max_tier is None else max_tier
        self._max_tier = max(self._first_tier, min(top, len(self._tiers) - 1))
        self._unavailable = unavailable  # rule 8
        # ``features``: the runtime reads them for the router before the turn exists
        self._features = features if features is not None else request_features(request)
        self.complexity = complexity_of(self._features, params.complexity)
        budgets = params.budgets
        self.cap_usd = max(
            0.0, min(budgets.turn_cap_usd, budgets.session_cap_usd - session_spent_usd)
        )

        self._phase = _Phase.NEW
        self._t0 = 0.0
        self._attempts: list[_Attempt] = []
        self._active: _Attempt | None = None
        self._hedge: _Attempt | None = None
        self._tried: set[int] = set()
        self._failed: set[int] = set()  # tiers that failed this turn: never hedged again
        self._gate = SpeechGate(params.gate)
        self._doubt_until: float | None = None  # gate frozen until then, unless resolved
        self._no_escalation = False  # set once an escalation was refused for this attempt
        self._decisions: list[DecisionRecord] = []
        self._handoffs: list[Handoff] = []
        self._fillers: list[str] = []
        self._filler_time = 0.0
        self._tool_calls: tuple[ToolCallRecord, ...] = ()
        self._first_release: float | None = None
        self._last_release: float | None = None
        self._handoff_at: float | None = None
        self._handoff_ms: float | None = None
        self._escalated = False
        self._status: TurnStatus | None = None
        self._reason = ""
        self._end: float | None = None

    # -- queries ----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._phase is _Phase.DONE

    @property
    def released(self) -> str:
        return self._gate.released

    @property
    def features(self) -> tuple[float, ...]:
        return self._features.vector()

    @property
    def spent_usd(self) -> float:
        spent = 0.0  # read per token (the cap check): a loop, not a generator
        for a in self._attempts:
            spent += a.cost(a.spec.price_in, a.spec.price_out)
        return spent

    @property
    def first_tier_preempted(self) -> bool | None:
        """The router's label: did the turn's first attempt on tier 0 get replaced?"""
        first = self._attempts[0] if self._attempts else None
        if first is None or first.tier != 0:
            return None
        return self._escalated or first is not self._active

    def next_deadline(self) -> float | None:
        if self._phase is not _Phase.RUNNING:
            return None
        # read after every streamed token: a running minimum, no list
        deadline = self._t0 + self.params.budgets.end_of_turn_ms / 1000.0
        active, hedge = self._active, self._hedge
        if active is not None and active.live:
            deadline = min(deadline, self._attempt_deadline(active))
        if hedge is not None and hedge.live:
            deadline = min(deadline, self._attempt_deadline(hedge))
        if self._doubt_until is not None:
            deadline = min(deadline, self._doubt_until)
        elif hedge is None:
            hold = self._gate.hold_deadline()
            if hold is not None:
                deadline = min(deadline, hold)
        filler = self._filler_deadline()
        return deadline if filler is None else min(deadline, filler)

    # -- events -----------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        if self._phase is not _Phase.NEW:
            raise InvalidEvent(f"start() on a turn that is {self._phase.value}")
        self._phase = _Phase.RUNNING
        self._t0 = now
        out: list[Action] = []
        tier, cause, reason = self._route()
        scores = Scores(
            complexity=round(self.complexity, 4),
            router_p=None if self._router is None else round(self._router.p_preempt, 4),
        )
        healthy = self._healthy_near(tier)
        if healthy is None:
            down = ", ".join(self._tiers[t].name for t in self._allowed())
            reason = f"every allowed tier is unavailable (circuit open: {down})"
            self._decide(out, now, "stop", tier, "health", reason, scores)
            self._finish(out, now, "failed", reason)
            return out
        if healthy != tier:
            cause = "health"
            reason = (
                f"{reason}; but {self._tiers[tier].name} is unavailable (circuit open): "
                f"start on {self._tiers[healthy].name}"
            )
            tier = healthy
        self._decide(out, now, "route", tier, cause, reason, scores)
        if tier > self._first_tier:
            self._escalated = True
        self._begin_active(out, tier, now, fallback=False)
        return out

    def token(
        self,
        attempt_id: int,
        text: str,
        logprob: float | None,
        top_logprobs: Sequence[float],
        now: float,
    ) -> list[Action]:
        attempt = self._live_attempt(attempt_id)
        if attempt is None:
            return []
        out: list[Action] = []
        self._account_token(attempt, logprob, top_logprobs, now)
        if self._past_deadline(out, now):
            return out
        if attempt is self._hedge:
            attempt.text.append(text)
            self._check_budget(out, now)
            return out
        piece = attempt.unrepeat(text)
        if piece:
            attempt.text.append(piece)
            self._gate.push(piece, now)
        self._judge(out, attempt, now)
        if not self.done:
            self._check_budget(out, now)
        if not self.done:
            self._release(out, now)
        return out

    def tool_call(
        self,
        attempt_id: int,
        index: int,
        call_id: str | None,
        name: str | None,
        arguments: str,
        logprob: float | None,
        now: float,
    ) -> list[Action]:
        """A piece of a tool call: scored like a token, buffered until the attempt ends and is
        verified, then released whole."""
        attempt = self._live_attempt(attempt_id)
        if attempt is None:
            return []
        out: list[Action] = []
        self._account_token(attempt, logprob, (), now)
        if self._past_deadline(out, now):
            return out
        call = attempt.calls.get(index)
        if call is None:
            call = attempt.calls[index] = _Call()
            attempt.call_order.append(index)
        if call_id:
            call.call_id = call_id
        if name:
            call.name = name
        if arguments:
            call.arguments.append(arguments)
        if attempt is self._active:
            # the monitor watches tool arguments as they stream too: an unsure call is cut
            # mid-stream, not only judged (and paid for) once it has been written out whole.
            # No hedging here: nothing is being spoken, so there is no release to protect,
            # and the call is judged whole at its end anyway.
            self._judge(out, attempt, now, hedge=False)
        if not self.done:
            self._check_budget(out, now)
        return out

    def tier_finished(
        self,
        attempt_id: int,
        finish_reason: str | None,
        now: float,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> list[Action]:
        attempt = self._live_attempt(attempt_id)
        if attempt is None:
            return []
        attempt.live = False
        attempt.ended = now
        attempt.end_reason = finish_reason or "stop"
        if input_tokens is not None:
            attempt.input_tokens = input_tokens
        if output_tokens is not None:
            attempt.output_tokens = output_tokens
        out: list[Action] = []
        if self._past_deadline(out, now) or self._over_billed(out, attempt, now):
            return out
        if attempt is self._hedge:
            return out  # a finished hedge stays promotable until the active tier is judged
        attempt.probe = ""  # a dangling partial repeat of the prefix is dropped, not spoken
        attempt.guard = None
        text = self._gate.released[attempt.released_at_start :] + self._gate.pending
        calls = attempt.tool_records()
        problem = incompleteness(finish_reason, text, [c.arguments for c in calls])
        cause: Cause = "completeness"
        if problem is None:
            answer = Answer(self.request, self._gate.released + self._gate.pending, calls)
            for verify in self._verifiers:
                problem = verify(answer)
                if problem is not None:
                    cause = "correctness"
                    break
        if problem is None and self._stronger(attempt.tier) is not None and attempt.monitor.ready:
            p = attempt.monitor.p_correct()
            if p is not None and p < self.params.policy.preempt_below:
                cause = "confidence"
                problem = (
                    f"confidence {p:.2f} < {self.params.policy.preempt_below:.2f}"
                    " at the end of the answer"
                )
        if problem is not None and self._escalate(out, now, cause, problem, forced=True):
            return out
        if problem is not None and cause != "confidence":
            self._finish_unverified(out, attempt, calls, problem, now)
            return out
        self._accept(out, attempt, calls, now)
        return out

    def tier_failed(
        self, attempt_id: int, error: str, now: float, *, input_tokens: int | None = None
    ) -> list[Action]:
        """The attempt's stream failed. ``input_tokens``: what the provider billed for the
        prompt when the adapter knows it (0: the request never reached the provider)."""
        attempt = self._live_attempt(attempt_id)
        if attempt is None:
            return []
        attempt.live = False
        attempt.ended = now
        attempt.end_reason = f"error: {error}"
        if input_tokens is not None:
            attempt.input_tokens = max(0, input_tokens)
        self._failed.add(attempt.tier)
        out: list[Action] = []
        if self._past_deadline(out, now):
            return out
        if attempt is self._hedge:
            # rule 4: the hedge ends, the doubt does not; the gate stays frozen until it is
            # resolved (a tick at the doubt's deadline, or the monitor's next verdict)
            self._drop_hedge(out, now, "error", f"speculative {attempt.spec.name} failed: {error}")
            return out
        self._fallback(out, now, "error", f"{attempt.spec.name} failed: {error}")
        return out

    def tick(self, now: float) -> list[Action]:
        if self._phase is not _Phase.RUNNING:
            raise InvalidEvent(f"tick() on a turn that is {self._phase.value}")
        out: list[Action] = []
        if self._past_deadline(out, now):
            return out
        hedge = self._hedge
        if hedge is not None and hedge.live and now >= self._attempt_deadline(hedge):
            why = self._lateness(hedge)
            self._failed.add(hedge.tier)
            self._cancel_attempt(out, hedge, now, why, timed_out=True)
            self._drop_hedge(out, now, "latency", f"speculative {hedge.spec.name}: {why}")
        active = self._active
        if active is not None and active.live and now >= self._attempt_deadline(active):
            why = self._lateness(active)
            self._cancel_attempt(out, active, now, why, timed_out=True)
            self._fallback(out, now, "latency", f"{active.spec.name}: {why}")
            if self.done:
                return out
        if self._doubt_until is not None and now >= self._doubt_until:
            self._resolve_doubt(out, now)
        if self.done:
            return out
        filler = self._filler_deadline()
        if filler is not None and now >= filler:
            self._speak_filler(out, now)
        self._release(out, now)
        return out

    def cancel(self, now: float, reason: str = "cancelled by the client") -> list[Action]:
        if self._phase is not _Phase.RUNNING:
            raise InvalidEvent(f"cancel() on a turn that is {self._phase.value}")
        out: list[Action] = []
        tier = self._active.tier if self._active else self._first_tier
        self._decide(out, now, "stop", tier, "client", reason)
        self._finish(out, now, "cancelled", reason)
        return out

    def trace(self) -> TurnTrace:
        final = self._active or (self._attempts[-1] if self._attempts else None)
        final_tier = final.tier if final else self._first_tier
        end = self._end if self._end is not None else self._t0
        return TurnTrace(
            turn_id=self.turn_id,
            request=self.request,
            complexity=round(self.complexity, 4),
            router_p=None if self._router is None else round(self._router.p_preempt, 4),
            status=self._status or "incomplete",
            reason=self._reason,
            text=self._gate.released,
            fillers=tuple(self._fillers),
            tool_calls=self._tool_calls,
            final_tier=final_tier,
            final_tier_name=self._tiers[final_tier].name,
            escalated=self._escalated,
            cost_usd=self.spent_usd,
            ttft_ms=self._ms(self._first_release),
            handoff_ms=self._handoff_ms,
            end_ms=round((end - self._t0) * 1000.0, 3),
            attempts=tuple(a.trace(self._t0, a.promoted) for a in self._attempts),
            decisions=tuple(self._decisions),
            handoffs=tuple(self._handoffs),
        )

    # -- routing and escalation -------------------------------------------------------------

    def _route(self) -> tuple[int, Cause, str]:
        cx = self.params.complexity
        policy = self.params.policy
        first, top = self._first_tier, self._max_tier
        if top > first and self.complexity >= cx.skip_above:
            target = top if cx.skip_to < 0 else max(first, min(cx.skip_to, top))
            return (
                target,
                "complexity",
                f"request complexity {self.complexity:.2f} >= {cx.skip_above:.2f}: "
                f"start on {self._tiers[target].name}",
            )
        router = self._router
        if (
            top > first
            and router is not None
            and router.observations >= policy.router_min_observations
            and router.p_preempt >= policy.router_skip_above
        ):
            target = first + 1
            return (
                target,
                "router",
                f"router predicts P(preempt)={router.p_preempt:.2f} >= "
                f"{policy.router_skip_above:.2f} after {router.observations} turns: "
                f"start on {self._tiers[target].name}",
            )
        return (
            first,
            "policy",
            f"request complexity {self.complexity:.2f} < {cx.skip_above:.2f}: "
            f"start on {self._tiers[first].name}",
        )

    def _judge(
        self, out: list[Action], attempt: _Attempt, now: float, *, hedge: bool = True
    ) -> None:
        """The monitor's look at the active attempt after a token."""
        if self._no_escalation or not attempt.monitor.ready or self._stronger(attempt.tier) is None:
            return
        policy = self.params.policy
        p = attempt.monitor.p_correct()  # per token: the whole Confidence only for a reason
        if p is None:
            return  # no logprob yet: nothing to judge on (ready implies one, but be exact)
        if p < policy.preempt_below:
            conf = attempt.monitor.confidence()
            reason = (
                f"confidence {p:.2f} < {policy.preempt_below:.2f} "
                f"(q{int(self.params.monitor.quantile * 100)} p={_describe(conf.quantile_p)}, "
                f"min p={_describe(conf.min_p)}, entropy {conf.entropy:.2f} "
                f"over {conf.known} tokens)"
            )
            self._escalate(out, now, "confidence", reason, forced=False)
        elif p < policy.hedge_below:
            if hedge and self._doubt_until is None and self._hedge is None:
                self._enter_doubt(out, attempt, now, p)
        elif self._doubt_until is not None or self._hedge is not None:
            reason = f"confidence recovered to {p:.2f} >= {policy.hedge_below:.2f}"
            self._leave_doubt(out, now, reason)

    def _utility(self, attempt: _Attempt, target: int, p: float, now: float) -> float:
        policy = self.params.policy
        spec = self._tiers[target]
        remaining_usd = max(self.cap_usd - self.spent_usd, 1e-9)
        remaining_ms = max(
            self._t0 * 1000.0 + self.params.budgets.end_of_turn_ms - now * 1000.0, 1.0
        )
        gain = policy.w_quality * (spec.quality - p)
        cost_frac = min(1.0, self._start_cost(target) / remaining_usd)
        latency_frac = min(1.0, spec.expected_ttft_ms / remaining_ms)
        return gain - policy.w_cost * cost_frac - policy.w_latency * latency_frac

    def _enter_doubt(self, out: list[Action], attempt: _Attempt, now: float, p: float) -> None:
        policy = self.params.policy
        self._doubt_until = now + policy.hedge_window_ms / 1000.0
        target = self._stronger(attempt.tier)
        scores = self._scores(attempt)
        if not policy.hedging or target is None or target in self._failed:
            return
        if self._utility(attempt, target, p, now) <= 0:
            return
        if not self._affordable(target):
            reason = f"hedge on {self._tiers[target].name} would break the cost cap"
            self._decide(out, now, "refuse", attempt.tier, "budget", reason, scores, target)
            return
        reason = (
            f"confidence {p:.2f} < {policy.hedge_below:.2f}: start {self._tiers[target].name} "
            f"speculatively and hold the release for up to {policy.hedge_window_ms:.0f} ms"
        )
        self._decide(out, now, "hedge", attempt.tier, "confidence", reason, scores, target)
        self._hedge = self._open_attempt(out, target, now, speculative=True)

    def _leave_doubt(self, out: list[Action], now: float, reason: str) -> None:
        self._doubt_until = None
        if self._hedge is not None:
            hedge = self._hedge
            if hedge.live:
                self._cancel_attempt(out, hedge, now, "hedge not needed")
            elif not hedge.end_reason.startswith("error"):
                hedge.end_reason = "hedge not needed"
            self._hedge = None
            tier = self._active.tier if self._active else hedge.tier
            scores = self._scores(self._active) if self._active else Scores()
            self._decide(out, now, "hedge_cancel", tier, "confidence", reason, scores, hedge.tier)

    def _resolve_doubt(self, out: list[Action], now: float) -> None:
        active = self._active
        assert active is not None
        p = active.monitor.p_correct()
        policy = self.params.policy
        if p is not None and p < policy.preempt_below:
            reason = f"confidence still {p:.2f} < {policy.preempt_below:.2f}"
            self._escalate(out, now, "confidence", reason, forced=False)
            if self.done or self._active is not active:
                return
        self._leave_doubt(
            out,
            now,
            f"no verdict within {policy.hedge_window_ms:.0f} ms and confidence "
            f"{_describe(p)} >= {policy.preempt_below:.2f}: continue",
        )

    def _escalate(
        self, out: list[Action], now: float, cause: Cause, reason: str, *, forced: bool
    ) -> bool:
        """Preempt the active attempt for a stronger tier. False when refused."""
        active = self._active
        assert active is not None
        scores = self._scores(active)
        target = self._stronger(active.tier)
        if target is None:
            why = "no stronger tier is allowed"
            if active.tier < self._max_tier:
                why = "no stronger tier is available (circuit open)"
                cause = "health"
            self._refuse(out, now, active, cause, f"{reason}; {why}")
            return False
        hedge = self._hedge if self._hedge is not None and self._hedge.tier == target else None
        if not forced and hedge is None:
            p = scores.p_correct if scores.p_correct is not None else 1.0
            utility = self._utility(active, target, p, now)
            if utility <= 0:
                self._refuse(
                    out,
                    now,
                    active,
                    "policy",
                    f"{reason}; escalation not worth it (utility {utility:.2f} <= 0)",
                )
                return False
        if hedge is None and not self._affordable(target, replacing=active):
            cost = self._start_cost(target)
            self._refuse(
                out,
                now,
                active,
                "budget",
                f"{reason}; {self._tiers[target].name} would cost ≈${cost:.5f} with "
                f"${self.spent_usd:.5f} of ${self.cap_usd:.5f} spent",
            )
            return False
        self._decide(out, now, "preempt", active.tier, cause, reason, scores, target)
        self._cancel_attempt(out, active, now, "preempted")
        self._handover(out, active, target, hedge, now)
        return True

    def _refuse(
        self, out: list[Action], now: float, active: _Attempt, cause: Cause, reason: str
    ) -> None:
        self._no_escalation = True
        self._doubt_until = None
        self._decide(out, now, "refuse", active.tier, cause, reason, self._scores(active))
        if self._hedge is not None:
            self._leave_doubt(out, now, "escalation refused")

    def _fallback(self, out: list[Action], now: float, cause: Cause, reason: str) -> None:
        """The active attempt failed or stalled: hand over to another tier, or fail the turn."""
        failed = self._active
        assert failed is not None
        hedge = self._hedge
        if hedge is not None and not (hedge.live or hedge.end_reason in ("stop", "tool_calls")):
            # it ended and cannot take over: drop it now, or it would hold the gate frozen
            # (rule 4) under whichever tier takes over instead
            why = f"speculative {hedge.spec.name} ended ({hedge.end_reason}): it cannot take over"
            self._drop_hedge(out, now, "completeness", why)
            hedge = None
        if hedge is not None:
            target: int | None = hedge.tier
        else:
            target = self._fallback_target(failed.tier)
        if target is None:
            self._decide(out, now, "stop", failed.tier, cause, f"{reason}; no tier left to try")
            self._finish(out, now, "failed", reason)
            return
        if hedge is None and not self._affordable(target):
            why = f"{reason}; fallback to {self._tiers[target].name} would break the cost cap"
            self._decide(out, now, "refuse", failed.tier, "budget", why, to_tier=target)
            self._finish(out, now, "failed", why)
            return
        self._decide(out, now, "fallback", failed.tier, cause, reason, to_tier=target)
        self._handover(out, failed, target, hedge, now)

    def _fallback_target(self, failed_tier: int) -> int | None:
        skip = self._tried | self._unavailable
        stronger = [t for t in range(failed_tier + 1, self._max_tier + 1) if t not in skip]
        weaker = [t for t in range(failed_tier - 1, self._first_tier - 1, -1) if t not in skip]
        for t in stronger + weaker:
            return t
        return None

    def _handover(
        self, out: list[Action], old: _Attempt, target: int, hedge: _Attempt | None, now: float
    ) -> None:
        self._gate.drop_pending()
        self._doubt_until = None
        self._no_escalation = False
        self._escalated = True
        self._handoff_at = now
        self._handoff_ms = None
        handoff = Handoff(old.tier, target, self._gate.released_len, self._ms(now) or 0.0)
        self._handoffs.append(handoff)
        out.append(handoff)
        if hedge is not None:
            # rule 4: the gate was frozen since the hedge started, so its prefix is current
            assert hedge.released_at_start == self._gate.released_len
            self._hedge = None
            self._active = hedge
            hedge.promoted = True
            buffered, hedge.text = hedge.joined(), []
            piece = hedge.unrepeat(buffered)
            if piece:
                hedge.text.append(piece)
                self._gate.push(piece, now)
            if not hedge.live:
                # it already finished while speculative: judge it now, at ``now`` (rule 7: the
                # trace's clock never runs back to when its stream ended), keeping that end
                # time on its own record
                reason, ended = hedge.end_reason, hedge.ended
                hedge.live = True
                out.extend(self.tier_finished(hedge.id, reason, now))
                hedge.ended = ended
                return
            self._release(out, now)
            return
        self._begin_active(out, target, now, fallback=True)

    def _begin_active(self, out: list[Action], tier: int, now: float, *, fallback: bool) -> None:
        if not self._affordable(tier):
            affordable = [
                t
                for t in self._allowed()
                if t not in self._tried and t not in self._unavailable and self._affordable(t)
            ]
            if fallback or not affordable:
                reason = (
                    f"{self._tiers[tier].name} would cost ≈${self._start_cost(tier):.5f}, "
                    f"over the ${self.cap_usd:.5f} left for this turn"
                )
                self._decide(out, now, "refuse", tier, "budget", reason)
                self._finish(out, now, "failed", reason)
                return
            cheaper = affordable[0]
            reason = (
                f"{self._tiers[tier].name} is over the cost cap: "
                f"start on {self._tiers[cheaper].name}"
            )
            self._decide(out, now, "refuse", tier, "budget", reason, to_tier=cheaper)
            tier = cheaper
        self._active = self._open_attempt(out, tier, now, speculative=False)

    def _open_attempt(
        self, out: list[Action], tier: int, now: float, *, speculative: bool
    ) -> _Attempt:
        spec = self._tiers[tier]
        prefix = self._gate.released
        attempt = _Attempt(
            attempt_id=len(self._attempts),
            tier=tier,
            spec=spec,
            monitor=ConfidenceMonitor(self.params.monitor, self.complexity),
            prefix=prefix,
            speculative=speculative,
            input_tokens=self._input_tokens + len(prefix) // 4,
            now=now,
        )
        attempt.allowance = self._allowance(tier)
        self._attempts.append(attempt)
        self._tried.add(tier)
        out.append(StartTier(attempt.id, tier, prefix, speculative, attempt.allowance))
        return attempt

    # -- budgets ----------------------------------------------------------------------------

    def _start_cost(self, tier: int) -> float:
        spec = self._tiers[tier]
        tokens_in = self._input_tokens + self._gate.released_len // 4
        return (tokens_in * spec.price_in + spec.price_out) / 1e6

    def _allowance(self, tier: int, *, replacing: _Attempt | None = None) -> int:
        """How many output tokens ``tier`` may be asked for now: what the cap leaves after its
        input and the most every other stream may be billed (``replacing``, about to be cut,
        counts at its cost so far), up to the tier's own limit."""
        spec = self._tiers[tier]
        committed = 0.0
        for a in self._attempts:
            if a is replacing:
                committed += a.cost(a.spec.price_in, a.spec.price_out)
            else:
                committed += a.worst_cost()
        tokens_in = self._input_tokens + self._gate.released_len // 4
        left_micro = (self.cap_usd - committed) * 1e6 - tokens_in * spec.price_in
        if left_micro < -1e-9:
            return 0
        if spec.price_out <= 0.0:
            return spec.max_output_tokens
        # 1e-6: float noise must not cost the last whole token the cap pays for
        return max(0, min(spec.max_output_tokens, int(left_micro / spec.price_out + 1e-6)))

    def _affordable(self, tier: int, *, replacing: _Attempt | None = None) -> bool:
        """Can ``tier`` start now with at least one output token (rule 6)?"""
        return self._allowance(tier, replacing=replacing) >= 1

    def _check_budget(self, out: list[Action], now: float) -> None:
        """Cut any stream whose next token would break the cap (rule 6)."""
        spent = self.spent_usd
        # the common case (room left) runs per token: no list, same sum in the same order
        hedge, active = self._hedge, self._active
        need = 0.0
        if hedge is not None and hedge.live:
            need += hedge.spec.price_out
        if active is not None and active.live:
            need += active.spec.price_out
        if spent + need / 1e6 <= self.cap_usd + 1e-15:
            return
        if hedge is not None and hedge.live:
            self._cancel_attempt(out, hedge, now, "cost cap")
            self._drop_hedge(out, now, "budget", "the cost cap leaves no room for the hedge")
            # without the hedge, is there room for the active stream's next token?
            need = active.spec.price_out if active is not None and active.live else 0.0
            if spent + need / 1e6 <= self.cap_usd + 1e-15:
                return
        if active is not None and active.live:
            reason = f"cost cap ${self.cap_usd:.5f} reached (${spent:.5f} spent)"
            self._decide(out, now, "stop", active.tier, "budget", reason, self._scores(active))
            self._cancel_attempt(out, active, now, "cost cap")
            self._finish(out, now, "incomplete", reason)

    def _drop_hedge(self, out: list[Action], now: float, cause: Cause, reason: str) -> None:
        hedge = self._hedge
        if hedge is None:
            return
        self._hedge = None  # the doubt stays (rule 4): whoever resolves it unfreezes the gate
        tier = self._active.tier if self._active else hedge.tier
        self._decide(out, now, "hedge_cancel", tier, cause, reason, to_tier=hedge.tier)

    # -- release, fillers, finishing --------------------------------------------------------

    def _release(self, out: list[Action], now: float, *, final: bool = False) -> None:
        if self._doubt_until is not None or self._hedge is not None:
            return  # rule 4
        active = self._active
        tier = active.tier if active else self._first_tier
        eager = self.params.gate.eager_last_tier and self._stronger(tier) is None
        while True:
            piece = self._gate.take(now, final=final, eager=eager)
            if not piece:
                return
            self._note_release(now)
            out.append(Release(piece, tier))
            if final:
                return

    def _note_release(self, now: float) -> None:
        if self._first_release is None:
            self._first_release = now
        self._last_release = now
        if self._handoff_at is not None and self._handoff_ms is None:
            self._handoff_ms = round((now - self._handoff_at) * 1000.0, 3)

    def _filler_deadline(self) -> float | None:
        budgets = self.params.budgets
        if not budgets.fillers or len(self._fillers) >= 2:
            return None
        if self._first_release is None:
            since = self._t0 if not self._fillers else self._filler_time
        elif self._handoff_at is not None and self._handoff_ms is None:
            since = max(self._handoff_at, self._filler_time if self._fillers else 0.0)
        else:
            return None
        return since + budgets.first_text_ms / 1000.0

    def _speak_filler(self, out: list[Action], now: float) -> None:
        budgets = self.params.budgets
        remaining_ms = budgets.end_of_turn_ms - (now - self._t0) * 1000.0
        # a filler takes about 60 ms a character to say; only speak one that fits the budget
        fitting = [f for f in budgets.fillers if len(f) * 60.0 < remaining_ms]
        self._filler_time = now
        if not fitting:
            self._fillers.append("")
            return
        text = fitting[len(self._fillers) % len(fitting)]
        self._fillers.append(text)
        tier = self._active.tier if self._active else self._first_tier
        waited = budgets.first_text_ms
        self._decide(
            out, now, "filler", tier, "latency", f"no text for {waited:.0f} ms: say {text!r}"
        )
        out.append(Filler(text))

    def _accept(
        self, out: list[Action], attempt: _Attempt, calls: tuple[ToolCallRecord, ...], now: float
    ) -> None:
        conf = attempt.monitor.confidence()
        reason = (
            f"{attempt.spec.name} finished ({attempt.end_reason}) "
            f"with confidence {_describe(conf.p_correct)}"
        )
        self._decide(out, now, "accept", attempt.tier, "policy", reason, self._scores(attempt))
        if self._hedge is not None:
            hedge = self._hedge
            if hedge.live:
                self._cancel_attempt(out, hedge, now, "hedge not needed")
            self._hedge = None
            self._decide(
                out,
                now,
                "hedge_cancel",
                attempt.tier,
                "confidence",
                f"{attempt.spec.name} finished well: speculative {hedge.spec.name} not needed",
                to_tier=hedge.tier,
            )
        self._doubt_until = None
        self._release(out, now, final=True)
        self._emit_calls(out, attempt, calls)
        self._finish(out, now, "completed", reason)

    def _finish_unverified(
        self,
        out: list[Action],
        attempt: _Attempt,
        calls: tuple[ToolCallRecord, ...],
        problem: str,
        now: float,
    ) -> None:
        """The last tier allowed finished with a problem nobody can fix: say what we have."""
        self._doubt_until = None
        if self._hedge is not None:
            # a hedge still streaming is cut first: _finish only cancels what it still holds
            # (an active billed past the cap gets here with its hedge live)
            self._cancel_attempt(out, self._hedge, now, "turn ending")
            self._drop_hedge(out, now, "policy", "the turn is ending")
        self._release(out, now, final=True)
        malformed = problem.startswith("malformed")
        if not malformed:
            self._emit_calls(out, attempt, calls)
        self._finish(out, now, "failed" if malformed else "incomplete", problem)

    def _emit_calls(
        self, out: list[Action], attempt: _Attempt, calls: tuple[ToolCallRecord, ...]
    ) -> None:
        self._tool_calls = calls
        for c in calls:
            out.append(ReleaseToolCall(c.call_id, c.name, c.arguments, attempt.tier))

    def _finish(self, out: list[Action], now: float, status: TurnStatus, reason: str) -> None:
        for attempt in (self._hedge, self._active):
            if attempt is not None and attempt.live:
                self._cancel_attempt(out, attempt, now, f"turn {status}")
        self._doubt_until = None
        self._phase = _Phase.DONE
        self._status = status
        self._reason = reason
        self._end = now
        out.append(FinishTurn(status, reason))

    def _past_deadline(self, out: list[Action], now: float) -> bool:
        """Rule 7: at or past the end-of-turn deadline, any event ends the turn (a chunk can
        arrive just before the timer fires); nothing more is released."""
        budgets = self.params.budgets
        if now < self._t0 + budgets.end_of_turn_ms / 1000.0:
            return False
        tier = self._active.tier if self._active else self._first_tier
        reason = f"end-of-turn deadline of {budgets.end_of_turn_ms:.0f} ms reached"
        self._decide(out, now, "stop", tier, "latency", reason)
        self._finish(out, now, "incomplete", reason)
        return True

    def _over_billed(self, out: list[Action], attempt: _Attempt, now: float) -> bool:
        """Rule 6: the provider's usage (just applied) broke the cap. Only an upstream that
        billed past the ``max_tokens`` it was asked for, or a prompt far longer than estimated,
        gets here; the turn stops rather than spend more or call itself completed."""
        spent = self.spent_usd
        if spent <= self.cap_usd + 1e-12:
            return False
        reason = (
            f"billed usage broke the cost cap: {attempt.spec.name} billed "
            f"{attempt.input_tokens} in / {attempt.output_tokens} out, asked for at most "
            f"{attempt.allowance} out (${spent:.6f} spent of ${self.cap_usd:.6f})"
        )
        self._decide(out, now, "stop", attempt.tier, "budget", reason, self._scores(attempt))
        if attempt is self._active:
            # what it said was paid for and had the monitor's look: say it, then stop
            attempt.probe, attempt.guard = "", None
            self._finish_unverified(out, attempt, attempt.tool_records(), reason, now)
        else:
            self._finish(out, now, "incomplete", reason)
        return True

    # -- helpers ----------------------------------------------------------------------------

    def _allowed(self) -> range:
        return range(self._first_tier, self._max_tier + 1)

    def _stronger(self, tier: int) -> int | None:
        """The next stronger allowed tier that is not unavailable (rule 8), if any."""
        for t in range(tier + 1, self._max_tier + 1):
            if t not in self._unavailable:
                return t
        return None

    def _healthy_near(self, tier: int) -> int | None:
        """``tier`` if available, else the nearest available one: stronger first (rule 8)."""
        if tier not in self._unavailable:
            return tier
        stronger = self._stronger(tier)
        if stronger is not None:
            return stronger
        for t in range(tier - 1, self._first_tier - 1, -1):
            if t not in self._unavailable:
                return t
        return None

    def _live_attempt(self, attempt_id: int) -> _Attempt | None:
        if not 0 <= attempt_id < len(self._attempts):
            raise InvalidEvent(f"no attempt {attempt_id} was started in this turn")
        if self._phase is _Phase.NEW:
            raise InvalidEvent("the turn has not started")
        attempt = self._attempts[attempt_id]
        if self._phase is _Phase.DONE or not attempt.live:
            return None  # rule 1: a late event of a cancelled or finished stream
        return attempt

    def _account_token(
        self, attempt: _Attempt, logprob: float | None, top: Sequence[float], now: float
    ) -> None:
        if attempt.first_token is None:
            attempt.first_token = now
        attempt.last_token = now
        attempt.output_tokens += 1
        attempt.monitor.observe(logprob, top)

    def _attempt_deadline(self, attempt: _Attempt) -> float:
        spec = attempt.spec
        if attempt.last_token is None:
            return attempt.started + spec.ttft_timeout_ms / 1000.0
        return attempt.last_token + spec.stall_timeout_ms / 1000.0

    @staticmethod
    def _lateness(attempt: _Attempt) -> str:
        spec = attempt.spec
        if attempt.first_token is None:
            return f"no first token within {spec.ttft_timeout_ms:.0f} ms"
        return f"stalled: no token for {spec.stall_timeout_ms:.0f} ms"

    def _cancel_attempt(
        self,
        out: list[Action],
        attempt: _Attempt,
        now: float,
        reason: str,
        *,
        timed_out: bool = False,
    ) -> None:
        if not attempt.live:
            return
        attempt.live = False
        attempt.ended = now
        attempt.end_reason = reason
        out.append(CancelTier(attempt.id, reason, timed_out))

    def _scores(self, attempt: _Attempt) -> Scores:
        conf = attempt.monitor.confidence()
        return Scores(
            p_correct=_round(conf.p_correct),
            quantile_p=_round(conf.quantile_p),
            min_p=_round(conf.min_p),
            entropy=round(conf.entropy, 4),
            complexity=round(self.complexity, 4),
            threshold=self.params.policy.preempt_below,
            tokens=conf.tokens,
            cost_usd=round(self.spent_usd, 8),
        )

    def _decide(
        self,
        out: list[Action],
        now: float,
        kind: DecisionKind,
        tier: int,
        cause: Cause,
        reason: str,
        scores: Scores | None = None,
        to_tier: int | None = None,
    ) -> None:
        record = DecisionRecord(
            t_ms=self._ms(now) or 0.0,
            kind=kind,
            tier=tier,
            tier_name=self._tiers[tier].name,
            cause=cause,
            reason=reason,
            scores=scores or Scores(),
            to_tier=to_tier,
        )
        self._decisions.append(record)
        out.append(Decision(record))

    def _ms(self, t: float | None) -> float | None:
        return None if t is None else round((t - self._t0) * 1000.0, 3)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _describe(p: float | None) -> str:
    return "unknown (no logprobs)" if p is None else f"{p:.2f}"
