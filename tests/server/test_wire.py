"""The wire module alone: decoding errors are typed; templates equal the structs' encoding."""

from __future__ import annotations

import json

import msgspec
import pytest

from realtime_cascade import wire


@pytest.fixture
def decoder() -> wire.ClientDecoder:
    return wire.ClientDecoder()


def test_decodes_sdk_shaped_events(decoder: wire.ClientDecoder) -> None:
    event = decoder.decode(
        json.dumps(
            {
                "type": "session.update",
                "event_id": "x",
                "session": {
                    "type": "realtime",
                    "instructions": "hi",
                    "tools": [{"type": "function", "name": "f", "parameters": {}}],
                    "tool_choice": {"type": "function", "name": "f"},
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
                    "tracing": "auto",  # unknown to us: ignored, not an error
                    "cascade": {"max_tier": "strong", "budgets": {"turn_cap_usd": 0.01}},
                },
            }
        )
    )
    assert isinstance(event, wire.SessionUpdate) and event.event_id == "x"
    assert isinstance(event.session.tool_choice, wire.ToolChoiceFunction)
    assert event.session.cascade is not None and event.session.cascade.max_tier == "strong"


@pytest.mark.parametrize(
    ("frame", "code", "param", "event_id"),
    [
        (b"{", "invalid_json", None, None),
        (b'"str"', "invalid_event", None, None),
        (b'{"type": 1, "event_id": "a"}', "invalid_event", "type", "a"),
        (b'{"type": "nope", "event_id": "b"}', "unknown_event", "type", "b"),
        (b'{"type": "response.cancel", "response_id": 3}', "invalid_event", "response_id", None),
        (
            b'{"type": "conversation.item.create", "item": {"type": "weird"}}',
            "invalid_event",
            "item.type",
            None,
        ),
    ],
)
def test_decode_errors(
    decoder: wire.ClientDecoder, frame: bytes, code: str, param: str | None, event_id: str | None
) -> None:
    with pytest.raises(wire.ProtocolError) as info:
        decoder.decode(frame)
    assert (info.value.code, info.value.param, info.value.event_id) == (code, param, event_id)


def test_text_delta_template_matches_struct() -> None:
    writer = wire.EventWriter("sess_0123456789")
    template = writer.text_delta_template("resp_1", 'item_"q"', 2, 0)
    data = template.encode('he said "hi" \u00e9\n')
    event = msgspec.json.decode(data, type=wire.ServerEvent)
    assert event == wire.ResponseOutputTextDelta(
        event_id=event.event_id,
        response_id="resp_1",
        item_id='item_"q"',
        output_index=2,
        content_index=0,
        delta='he said "hi" \u00e9\n',
    )
    assert event.event_id == "event_23456789_1"
    assert writer.next_id() == "event_23456789_2"


def test_server_events_start_with_type() -> None:
    data = wire.EventWriter("s").encode(wire.ConversationItemDeleted(item_id="i"))
    assert data.startswith(b'{"type":"conversation.item.deleted"')


TRICKY = [
    "",
    'he said "hi"',
    "back\\slash \\n not a newline \\u0041",
    "\n\r\t\b\f",
    "".join(chr(c) for c in range(0x20)) + "\x7f",
    "é ü ß – “curly” 中文 日本語 한국어",
    "emoji 🙂👍🏽 and a flag 🇫🇷",
    "\u2028\u2029 line separators",
    "</script><!-- -->",
    "\ufeff\u200b zero width",
    "a" * 5000,
]


@pytest.mark.parametrize("delta", TRICKY)
def test_text_delta_template_is_byte_identical_to_the_struct(delta: str) -> None:
    spliced, encoded = wire.EventWriter("sess_0123456789"), wire.EventWriter("sess_0123456789")
    template = spliced.text_delta_template('resp_"1\\', "item_é", 3, 1)
    for _ in range(12):  # event ids past one digit
        struct = wire.ResponseOutputTextDelta(
            response_id='resp_"1\\', item_id="item_é", output_index=3, content_index=1, delta=delta
        )
        assert template.encode(delta) == encoded.encode(struct)
    assert spliced.next_id() == encoded.next_id()  # one id sequence with the other events
