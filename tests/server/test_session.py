"""The pure parts of a session: conversation, overrides, the response builder. No sockets."""

from __future__ import annotations

import itertools
import json
from typing import Any

import msgspec
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade import wire
from realtime_cascade.core import (
    Decision,
    DecisionRecord,
    Filler,
    FinishTurn,
    Handoff,
    Release,
    ReleaseToolCall,
)
from realtime_cascade.providers.base import Message
from realtime_cascade.server.conversation import Conversation
from realtime_cascade.server.errors import SessionError
from realtime_cascade.server.response import ResponseBuilder
from realtime_cascade.server.settings import Settings, apply_overrides, chat_tools, merge_overrides


def ids() -> Any:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter)}"


def user(text: str, item_id: str) -> wire.MessageItem:
    return wire.MessageItem(item_id, "user", [wire.InputText(text)])


def test_messages_in_chat_shape_with_tool_calls() -> None:
    conv = Conversation()
    conv.add(user("weather?", "u1"))
    conv.add(wire.MessageItem("a1", "assistant", [wire.OutputText("Let me look.")]))
    conv.add(wire.FunctionCallItem("f1", "call_1", "get_weather", '{"q":"Paris"}'))
    conv.add(wire.FunctionCallItem("f2", "call_2", "get_time", "{}"))
    conv.add(wire.FunctionCallOutputItem("o1", "call_1", "sunny"))
    conv.add(wire.FunctionCallOutputItem("o2", "call_2", "noon"))
    conv.add(wire.MessageItem("a2", "assistant", [wire.OutputText("")]))  # nothing released
    msgs = conv.messages("Be brief.")
    assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "tool"]
    assert msgs[2].content == "Let me look."
    assert msgs[2].tool_calls is not None and [c["id"] for c in msgs[2].tool_calls] == [
        "call_1",
        "call_2",
    ]
    assert msgs[3] == Message("tool", "sunny", tool_call_id="call_1")


def test_tool_outputs_must_answer_a_known_call_once() -> None:
    conv = Conversation()
    with pytest.raises(SessionError) as info:
        conv.add(wire.FunctionCallOutputItem("o1", "call_1", "x"))
    assert info.value.code == "unknown_call_id"
    conv.add(wire.FunctionCallItem("f1", "call_1", "f", "{}"))
    conv.add(wire.FunctionCallOutputItem("o1", "call_1", "x"))
    with pytest.raises(SessionError) as info:
        conv.add(wire.FunctionCallOutputItem("o2", "call_1", "y"))
    assert info.value.code == "duplicate_call_output"


def test_insertion_order_and_delete() -> None:
    conv = Conversation()
    assert conv.add(user("a", "i1")) is None
    assert conv.add(user("b", "i2")) == "i1"
    assert conv.add(user("c", "i3"), "i1") == "i1"
    assert conv.add(user("z", "i0"), "root") is None
    assert [i.id for i in conv.items] == ["i0", "i1", "i3", "i2"]
    with pytest.raises(SessionError):
        conv.add(user("d", "i4"), "missing")
    with pytest.raises(SessionError):
        conv.add(user("again", "i1"))
    conv.delete("i3")
    assert [i.id for i in conv.items] == ["i0", "i1", "i2"]


def test_truncate_only_assistant_text() -> None:
    conv = Conversation()
    conv.add(user("hi", "u"))
    conv.add(wire.MessageItem("a", "assistant", [wire.OutputText("Hello there")]))
    with pytest.raises(SessionError):
        conv.truncate("u", 0, 1)
    with pytest.raises(SessionError):
        conv.truncate("a", 0, 99)
    conv.truncate("a", 0, None)
    assert conv.messages("")[-1].content == "Hello there"
    conv.truncate("a", 0, 5)
    assert conv.messages("")[-1].content == "Hello"


def test_overrides_merge_and_validate() -> None:
    profile = config_mod.build_profile(config_mod.load())
    base = wire.CascadeOverrides(max_tier="strong", policy=wire.PolicyOverrides(hedging=False))
    top = wire.CascadeOverrides(policy=wire.PolicyOverrides(preempt_below=0.3))
    merged = merge_overrides(base, top)
    assert merged.max_tier == "strong"
    assert merged.policy == wire.PolicyOverrides(preempt_below=0.3, hedging=False)
    eff = apply_overrides(profile.params, merged)
    assert eff.max_tier == 1 and eff.first_tier == 0
    assert eff.params.policy.preempt_below == 0.3 and not eff.params.policy.hedging
    for bad in (
        wire.CascadeOverrides(max_tier="huge"),
        wire.CascadeOverrides(first_tier=5),
        wire.CascadeOverrides(first_tier=1, max_tier=0),
        wire.CascadeOverrides(policy=wire.PolicyOverrides(preempt_below=0.9)),
        wire.CascadeOverrides(budgets=wire.BudgetOverrides(turn_cap_usd=-1.0)),
    ):
        with pytest.raises(SessionError) as info:
            apply_overrides(profile.params, bad)
        assert info.value.code == "invalid_value" and info.value.param


def test_settings_update_is_all_or_nothing() -> None:
    settings = Settings(config_mod.build_profile(config_mod.load()))
    with pytest.raises(SessionError):
        settings.update(
            wire.SessionParams(instructions="x", cascade=wire.CascadeOverrides(max_tier="nope"))
        )
    assert settings.instructions == ""
    settings.update(wire.SessionParams(instructions="x", max_output_tokens=50))
    obj = settings.object("sess_1")
    assert (obj.instructions, obj.max_output_tokens, obj.cascade.tiers) == (
        "x",
        50,
        ["light", "strong"],
    )


def test_chat_tools_shape() -> None:
    tools = chat_tools([wire.FunctionTool("f", description="d")])
    assert tools == (
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
        },
    )


def _builder(conv: Conversation | None) -> tuple[ResponseBuilder, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    response = wire.ResponseObject(
        id="resp_1",
        status="in_progress",
        output=[],
        conversation_id="sess_1",
        output_modalities=["text"],
        max_output_tokens="inf",
    )
    builder = ResponseBuilder(
        response,
        wire.EventWriter("sess_1"),
        lambda b: sent.append(json.loads(b)),
        conv,
        ["light", "strong"],
        ids(),
    )
    return builder, sent


def _record(kind: Any) -> DecisionRecord:
    return DecisionRecord(
        t_ms=1.0, kind=kind, tier=0, tier_name="light", cause="confidence", reason="r"
    )


def test_builder_event_order_and_cancel_truncation() -> None:
    conv = Conversation()
    conv.add(user("hi", "u"))
    builder, sent = _builder(conv)
    builder.created()
    for action in (
        Decision(_record("route")),
        Release("Hello", 0),
        Filler("One moment."),
        Release(" there", 0),
        Decision(_record("preempt")),
        Handoff(0, 1, 11, 5.0),
        FinishTurn("cancelled", "client_cancelled"),
    ):
        builder.feed(action)
    builder.finish(None)
    kinds = [e["type"] for e in sent]
    assert kinds == [
        "response.created",
        "cascade.decision",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "cascade.filler",
        "response.output_text.delta",
        "cascade.decision",
        "cascade.handoff",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert sent[3]["item"]["content"] == [] and sent[3]["previous_item_id"] == "u"
    assert sent[9]["to_tier_name"] == "strong"
    done = sent[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["content"][0]["text"] == "Hello there"
    assert done["output"][0]["status"] == "incomplete"
    assert conv.messages("")[-1] == Message("assistant", "Hello there")


def test_builder_tool_call_and_failure() -> None:
    conv = Conversation()
    builder, sent = _builder(conv)
    builder.feed(Release("Checking.", 0))
    builder.feed(ReleaseToolCall("call_9", "get_weather", '{"q":1}', 0))
    builder.finish(None, error="boom")
    kinds = [e["type"] for e in sent]
    assert kinds.index("response.output_text.done") < kinds.index(
        "response.function_call_arguments.delta"
    )
    args = next(e for e in sent if e["type"] == "response.function_call_arguments.done")
    assert (args["call_id"], args["name"], args["arguments"]) == (
        "call_9",
        "get_weather",
        '{"q":1}',
    )
    done = sent[-1]["response"]
    assert done["status"] == "failed" and done["status_details"]["error"]["message"] == "boom"
    assert done["usage"]["total_tokens"] == 0
    assert [i["type"] for i in done["output"]] == ["message", "function_call"]
    # the call is now answerable
    conv.add(wire.FunctionCallOutputItem("o", "call_9", "sunny"))


def test_out_of_band_response_leaves_history_alone() -> None:
    builder, sent = _builder(None)
    builder.feed(Release("Hi.", 0))
    builder.feed(FinishTurn("completed", "ok"))
    builder.finish(None)
    assert "conversation.item.added" not in [e["type"] for e in sent]
    assert msgspec.json.decode(json.dumps(sent[-1]), type=wire.ServerEvent)
