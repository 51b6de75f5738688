"""The domain-backed sim script: the light tier's depth and the strong tier's."""

from __future__ import annotations

import random

import msgspec

from demos.booking.script import SCRIPT
from demos.booking.tools import TOOLS
from demos.booking.verify import verify
from realtime_cascade.core import Answer, ToolCallRecord
from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.sim import Reply

LIGHT, STRONG = 0.5, 1.0


def ask(text: str, skill: float, *history: Message) -> Reply:
    messages = (Message("system", "booking agent"), *history, Message("user", text))
    return SCRIPT.reply(TierRequest(messages, tools=TOOLS), skill, random.Random(0))


def test_easy_request_same_call_and_sure_on_both_tiers() -> None:
    text = "Do you have a table for two at Sakura on March 12 at 7pm?"
    light, strong = ask(text, LIGHT), ask(text, STRONG)
    assert light == strong
    (call,) = light.tool_calls
    assert call.name == "search_availability" and call.sure == "sure"
    args = msgspec.json.decode(call.arguments)
    assert args == {"kind": "restaurant", "date": "2025-03-12", "restaurant": "Sakura",
                    "party_size": 2, "time": "19:00"}


def test_hard_request_light_is_unsure_and_wrong() -> None:
    lookup = Message("tool", msgspec.json.encode({
        "tool": "lookup_booking", "args": {"booking_id": "F-2003"}, "ok": True,
        "booking": {"booking_id": "F-2003", "kind": "flight", "status": "confirmed",
                    "flight": "CA202", "origin": "SFO", "destination": "LAX",
                    "date": "2025-03-20", "depart": "13:00", "arrive": "14:25",
                    "fare_class": "flex", "price": 189, "name": "Okafor"}}).decode())
    text = "Please push my flight F-2003 back by two days and keep it in the evening."
    light = ask(text, LIGHT)
    strong = ask(text, STRONG)
    assert light.tool_calls[0].name == strong.tool_calls[0].name == "lookup_booking"
    assert light.tool_calls[0].sure == "sure"  # the first step is within its depth
    call = Message("assistant", None, tool_calls=({"id": "c1", "type": "function"},))
    messages = (Message("user", text), call, lookup)
    light = SCRIPT.reply(TierRequest(messages, tools=TOOLS), LIGHT, random.Random(0))
    strong = SCRIPT.reply(TierRequest(messages, tools=TOOLS), STRONG, random.Random(0))
    assert msgspec.json.decode(strong.tool_calls[0].arguments)["date"] == "2025-03-22"
    assert msgspec.json.decode(strong.tool_calls[0].arguments)["time_from"] == "17:00"
    assert light.tool_calls[0].arguments != strong.tool_calls[0].arguments
    assert light.tool_calls[0].sure == "unsure"


def test_rule_breaking_is_confident_and_left_to_the_verifier() -> None:
    text = "I'd like a table for two at Luigi's on April 31 at 7pm."
    light = ask(text, LIGHT)
    (call,) = light.tool_calls
    assert call.sure == "sure"
    answer = Answer(text, "", (ToolCallRecord("c", call.name, call.arguments),))
    assert "not a calendar date" in (verify(answer) or "")
    strong = ask(text, STRONG)
    assert not strong.tool_calls
    spoken = "".join(s.text for s in strong.segments)
    assert "April has only 30 days" in spoken
    assert all(s.sure == "sure" for s in strong.segments)


def test_answers_from_the_conversation() -> None:
    made = Message("tool", msgspec.json.encode({
        "tool": "create_booking", "ok": True, "args": {},
        "booking": {"booking_id": "R-5001", "kind": "restaurant", "status": "confirmed",
                    "restaurant": "Sakura", "date": "2025-03-12", "time": "19:00",
                    "party_size": 2, "name": "Silva"}}).decode())
    reply = ask("What's the booking reference again?", LIGHT, made)
    assert "R-5001" in "".join(s.text for s in reply.segments)
