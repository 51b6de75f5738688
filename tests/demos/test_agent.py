"""The booking agent on the agent API: tool steps through the cascade, the tool-call cap and the
session budget — in-process and over a WebSocket, where the server runs the tools."""

from __future__ import annotations

import anyio
import msgspec
from realtime_cascade.demos.booking.agent import Policy, agent, make_agent
from realtime_cascade.demos.booking.demo import CONFIG, PROFILE, served_profile
from realtime_cascade.demos.booking.domain import Store
from realtime_cascade.demos.booking.script import _ACKS
from realtime_cascade.demos.booking.tools import TOOLS
from realtime_cascade.demos.booking.wsagent import WsConversation

from realtime_cascade import Agent, Sentences, config
from realtime_cascade.agents.testing import AgentConversation, TurnResult, _Recorder
from realtime_cascade.core import Release
from realtime_cascade.server.app import RealtimeServer

STRONG = Policy("strong-only", 1, 1)
CFG = config.load(CONFIG)
TWO_CANCELS = "Cancel R-1001 and also cancel F-2003, and tell me what I get back."


def play(
    text: str, a: Agent[Store] = agent, policy: Policy = STRONG, cap: float | None = None
) -> tuple[TurnResult, Store]:
    async def main() -> tuple[TurnResult, Store]:
        async with AgentConversation(
            a,
            config=CFG,
            profile_name=PROFILE,
            first_tier=policy.first_tier,
            max_tier=policy.max_tier,
            session_cap_usd=cap,
        ) as conv:
            return await conv.say(text), conv.state

    return anyio.run(main)


def test_the_agents_tools_are_the_demos_schemas() -> None:
    assert tuple(t.definition() for t in agent.tools) == TOOLS  # type: ignore[union-attr]


def test_tool_steps_execute_and_the_reply_reports_them() -> None:
    result, store = play(TWO_CANCELS)
    assert result.tool_names == ("cancel_booking", "cancel_booking")
    assert len(result.steps) == 3  # two calls, then the reply
    assert result.tiers == ("strong", "strong", "strong")
    assert "$189" in result.text and not result.decisions
    assert store.get("F-2003").status == "cancelled"
    result.assert_tool_called("cancel_booking", booking_id="F-2003")
    # the first step says something before its call: heard long before a filler would be due
    ack, narration, _ = result.text.split(". ", 2)
    assert ack + "." in _ACKS and narration == "I'll go ahead and cancel R-1001 for you"
    first_text_ms = CFG.profiles[PROFILE].budgets.first_text_ms
    assert result.first_text_ms is not None and result.first_text_ms < first_text_ms
    assert result.fillers == ()


def test_once_something_was_heard_the_later_steps_run_without_fillers() -> None:
    # a strong tier so slow that every step outlasts first_text_ms: fillers cover the wait for
    # the acknowledgement, and none follows it in the silent tool step or before the reply
    profile = CFG.profiles[PROFILE]
    light, strong = profile.tiers
    provider = msgspec.structs.replace(strong.provider, ttft_ms=3000.0)
    slow = msgspec.structs.replace(strong, provider=provider, ttft_timeout_ms=20000.0)
    profile = msgspec.structs.replace(profile, tiers=(light, slow))
    cfg = msgspec.structs.replace(CFG, profiles={**CFG.profiles, PROFILE: profile})

    async def main() -> TurnResult:
        async with AgentConversation(
            agent, config=cfg, profile_name=PROFILE, first_tier=1, max_tier=1
        ) as conv:
            return await conv.say(TWO_CANCELS)

    result = anyio.run(main)
    first_text_ms = profile.budgets.first_text_ms
    assert result.steps[0].fillers and result.first_text_ms is not None
    assert result.first_text_ms > first_text_ms
    assert all(s.end_ms > first_text_ms for s in result.steps)
    assert all(not s.fillers for s in result.steps[1:])
    assert len(result.fillers) == len(result.steps[0].fillers)


def test_max_tool_calls_is_a_traced_decision_and_a_sentence() -> None:
    result, store = play(TWO_CANCELS, make_agent(max_tool_calls=1))
    (decision,) = result.decisions
    assert decision.kind == "tool_cap"
    assert "max_tool_calls 1" in decision.reason and "cancel_booking" in decision.reason
    assert "one step at a time" in result.text and "already done stands" in result.text
    assert store.get("R-1001").status == "cancelled"  # the call within the cap ran
    assert store.get("F-2003").status == "confirmed"  # the one beyond it did not
    assert [r.status for r in result.tools] == ["ok", "not_run"]


def test_session_budget_is_a_traced_decision_and_a_sentence() -> None:
    result, _ = play("What's on booking F-2001?", cap=0.0001)
    assert [d.kind for d in result.decisions] == ["session_budget"]
    assert result.text.endswith(Sentences().budget)
    assert result.cost_usd <= 0.0001


def test_steps_are_heard_apart() -> None:
    rec = _Recorder()
    rec.feed(Release("Let me check that.", 0))  # a step whose trailing space never came out
    rec.new_step()
    rec.feed(Release("I've cancelled R-1001.", 1))
    rec.feed(Release(" The refund is $0.", 1))
    rec.new_step()
    rec.feed(Release(" Anything else?", 0))
    assert "".join(rec.heard) == (
        "Let me check that. I've cancelled R-1001. The refund is $0. Anything else?"
    )


def test_over_websocket_the_server_runs_the_tools_and_the_cap_and_the_session_goes_on() -> None:
    async def main() -> tuple[TurnResult, TurnResult, Store]:
        stores: dict[str, Store] = {}
        profile = served_profile(CFG, stores, max_tool_calls=1)
        async with RealtimeServer(
            CFG, host="127.0.0.1", port=0, profiles={PROFILE: profile}
        ) as server:
            from websockets.asyncio.client import connect

            async with connect(server.url(PROFILE), max_size=None) as ws:
                talk = WsConversation(ws, policy=STRONG)
                await talk.open()
                capped = await talk.turn(TWO_CANCELS)
                after = await talk.turn("Is R-1003 still confirmed?")
                store = stores[talk.session_id]
        await profile.aclose()
        return capped, after, store

    capped, after, store = anyio.run(main)
    (decision,) = capped.decisions
    assert decision.kind == "tool_cap" and "cancel_booking" in decision.reason
    assert [(t.name, t.status) for t in capped.tools] == [
        ("cancel_booking", "ok"),
        ("cancel_booking", "not_run"),
    ]
    assert "one step at a time" in capped.text and "already done stands" in capped.text
    assert store.get("R-1001").status == "cancelled"
    assert store.get("F-2003").status == "confirmed"
    # the call the cap stopped got an output, so the server's conversation stays well formed
    assert not after.decisions and "confirmed" in after.text
    assert msgspec.json.decode(after.tools[0].arguments) == {"booking_id": "R-1003"}
