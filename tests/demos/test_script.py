"""The domain-backed sim script: the light tier's depth and the strong tier's."""

from __future__ import annotations

import random

import msgspec
from realtime_cascade.demos.booking.script import _ACKS, SCRIPT, Call, narration
from realtime_cascade.demos.booking.tools import TOOLS
from realtime_cascade.demos.booking.verify import verify

from realtime_cascade.core import Answer, ToolCallRecord
from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.sim import Reply, tokenize

LIGHT, STRONG = 0.5, 1.0
FAR_BELOW = 0.3  # a tier for which a 0.55 request is well beyond its depth


def ask(text: str, skill: float, *history: Message) -> Reply:
    messages = (Message("system", "booking agent"), *history, Message("user", text))
    return SCRIPT.reply(TierRequest(messages, tools=TOOLS), skill, random.Random(0))


def said(reply: Reply) -> str:
    return "".join(s.text for s in reply.segments)


def test_easy_request_same_call_and_sure_on_both_tiers() -> None:
    text = "Do you have a table for two at Sakura on March 12 at 7pm?"
    light, strong = ask(text, LIGHT), ask(text, STRONG)
    assert light == strong
    # a plain request: a confident acknowledgement before the call, nothing more; the trailing
    # space lets the speech gate release it while only call tokens follow
    (ack,) = light.segments
    assert ack.text.rstrip() in _ACKS and ack.text.endswith(" ") and ack.sure == "sure"
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
    assert not light.segments and not strong.segments  # later tool steps call without words
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


PATEL = ("Book Sakura for three on March 14 at 7pm under Patel, and if that's full, the closest "
         "time after it.")
DOUBLE = "For booking R-1001, move it to March 13 at 8:30pm and make it four people."


def test_just_beyond_and_right_doubts_its_words_only() -> None:
    # difficulty 0.55, just beyond the light tier: its first call (the lookup) is right, but it
    # is in doubt about the key detail of what it says it will do — the monitor hedges there
    # and recovers on the sure rest and call
    light, strong = ask(DOUBLE, LIGHT), ask(DOUBLE, STRONG)
    assert said(light) == said(strong) and light.tool_calls == strong.tool_calls
    ack, lead, key, rest = light.segments
    assert ack.text.rstrip() in _ACKS
    assert (lead.text, key.text, rest.text) == ("I'll pull up booking", " R-1001", " first. ")
    assert [s.sure for s in light.segments] == ["sure", "sure", "doubt", "sure"]
    assert light.tool_calls[0].sure == "sure"
    assert all(s.sure == "sure" for s in strong.segments)


def test_just_beyond_and_wrong_doubts_then_is_unsure() -> None:
    # its first search drops the condition ("if that's full, the closest time after it"): the
    # key detail in doubt (a hedge), then the rest of the words and the call unsure (preempt)
    light, strong = ask(PATEL, LIGHT), ask(PATEL, STRONG)
    assert light.tool_calls[0].arguments != strong.tool_calls[0].arguments
    assert said(strong).endswith("I'll see what Sakura has for 3 on March 14 after 19:00 first. ")
    assert said(light).endswith("I'll see what Sakura has for 3 on March 14 at 19:00 first. ")
    assert [s.sure for s in light.segments] == ["sure", "sure", "doubt", "unsure"]
    assert light.tool_calls[0].sure == "unsure"
    # the words before the first phrase boundary are the same: nothing heard is contradicted
    assert said(light).split(".")[0] == said(strong).split(".")[0]


def test_far_beyond_and_wrong_is_unsure_in_its_words_too() -> None:
    light = ask(PATEL, FAR_BELOW)
    assert [s.sure for s in light.segments] == ["sure", "sure", "unsure", "unsure"]
    assert light.tool_calls[0].sure == "unsure"


def test_narrations_end_in_enough_tokens_for_the_monitor() -> None:
    # the rest of a narration, with its trailing space, is at least three tokens: where the call
    # is wrong they are unsure, and three unsure tokens stop the phrase before it is released
    calls = [
        Call("lookup_booking", {"booking_id": "F-2003"}),
        Call("cancel_booking", {"booking_id": "R-1001"}),
        Call("search_availability", {"kind": "flight", "date": "2025-03-20"}),
        Call("search_availability", {"kind": "flight", "date": "2025-03-20", "origin": "SFO",
                                     "destination": "LAX", "time_from": "15:00"}),
        Call("search_availability", {"kind": "restaurant", "date": "2025-04-31",
                                     "party_size": 2}),
        Call("create_booking", {"kind": "flight", "date": "2025-03-20", "name": "Kim",
                                "flight": "CA206", "fare_class": "flex"}),
        Call("create_booking", {"kind": "restaurant", "date": "2025-03-20", "name": "Kim",
                                "restaurant": "Sakura", "time": "20:00", "party_size": 2}),
        Call("change_booking", {"booking_id": "R-1001"}),
        Call("change_booking", {"booking_id": "R-1001", "time": "20:30"}),
        Call("change_booking", {"booking_id": "F-2003", "flight": "CA206",
                                "date": "2025-03-22", "fare_class": "flex"}),
    ]
    for c in calls:
        lead, key, rest = narration(c)
        assert len(tokenize(rest + " ")) >= 3, (c, rest)
        assert len(tokenize(key)) >= 1 and lead and not lead.endswith(" ")
        assert (lead + key + rest).endswith(".")
    assert "".join(narration(calls[4])) == "I'll look for 2 on April 31 first."
    assert "".join(narration(calls[9])) == (
        "I'll see if I can move F-2003 to flight CA206 on March 22 in flex."
    )
