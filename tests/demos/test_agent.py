"""The agent loop: tool steps through the cascade, the tool-call cap and the session budget."""

from __future__ import annotations

import anyio

from demos.booking.agent import (
    BUDGET_SENTENCE,
    Agent,
    AgentLimits,
    Policy,
    TurnResult,
    session_profile,
)
from demos.booking.demo import CONFIG, PROFILE
from demos.booking.domain import Store
from realtime_cascade import config

STRONG = Policy("strong-only", 1, 1)


def play(text: str, limits: AgentLimits, policy: Policy = STRONG) -> tuple[TurnResult, Store]:
    async def main() -> tuple[TurnResult, Store]:
        base = config.build_profile(config.load(CONFIG), PROFILE)
        store = Store()
        agent = Agent(session_profile(base, store), store, limits=limits, policy=policy)
        return await agent.turn(text), store

    return anyio.run(main)


def test_tool_steps_execute_and_the_reply_reports_them() -> None:
    result, store = play("Cancel R-1001 and also cancel F-2003, and tell me what I get back.",
                         AgentLimits())
    assert [t.name for t in result.tools] == ["cancel_booking", "cancel_booking"]
    assert len(result.steps) == 3  # two calls, then the reply
    assert "$189" in result.text and not result.decisions
    assert store.get("F-2003").status == "cancelled"


def test_max_tool_calls_is_a_traced_decision_and_a_sentence() -> None:
    result, store = play("Cancel R-1001 and also cancel F-2003, and tell me what I get back.",
                         AgentLimits(max_tool_calls=1))
    (decision,) = result.decisions
    assert decision.kind == "tool_cap"
    assert "max_tool_calls 1" in decision.reason and "cancel_booking" in decision.reason
    assert "one step at a time" in result.text and "already done stands" in result.text
    assert store.get("R-1001").status == "cancelled"  # the call within the cap ran
    assert store.get("F-2003").status == "confirmed"  # the one beyond it did not


def test_session_budget_is_a_traced_decision_and_a_sentence() -> None:
    result, _ = play("What's on booking F-2001?", AgentLimits(session_budget_usd=0.0001))
    assert [d.kind for d in result.decisions] == ["session_budget"]
    assert result.text.endswith(BUDGET_SENTENCE)
    assert result.cost_usd <= 0.0001
