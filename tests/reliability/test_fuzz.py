"""Bad input at scale, bounded for CI: the event decoder and the session under Hypothesis, with
events drawn from the protocol's JSON Schema, mutations of them and of the golden transcripts,
and frames that are not events at all. Nothing but a ``ProtocolError`` may come out of the
decoder; nothing but an ``error`` event out of the session; the conversation stays consistent.

``bench.bad_input`` runs the same generators against a live server (with the figures)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzzing import (
    SchemaStrategies,
    bad_frames,
    counting_ids,
    frame_mutations,
    golden_client_events,
    load_schema,
    mutate,
)
from realtime_cascade import wire
from realtime_cascade.core import CascadeParams, TierSpec
from realtime_cascade.providers.sim import SimProfile, SimProvider
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.server.conversation import Conversation
from realtime_cascade.server.session import Session

SCHEMA = load_schema()
EVENTS = SchemaStrategies(SCHEMA).events()
GOLDEN = golden_client_events()
DECODER = wire.ClientDecoder()

# An ``error`` event's code: a snake_case name (protocols/README.md, "Errors"), and never
# ``internal_error`` — that one means the server failed on the event, which is a bug.
CODE = re.compile(r"^[a-z][a-z0-9_]*$")


def acceptable(code: object) -> bool:
    return isinstance(code, str) and bool(CODE.match(code)) and code != "internal_error"


FUZZ = settings(
    max_examples=400,
    deadline=timedelta(milliseconds=1000),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

any_frame: st.SearchStrategy[str | bytes] = (
    EVENTS.map(json.dumps)
    | EVENTS.flatmap(mutate).map(json.dumps)
    | st.sampled_from(GOLDEN).flatmap(mutate).map(json.dumps)
    | st.sampled_from(GOLDEN).map(json.dumps).flatmap(frame_mutations)
    | bad_frames()
)


# --- the decoder: the CI fuzz target -----------------------------------------------------------


@FUZZ
@given(any_frame)
def test_the_decoder_only_ever_raises_protocol_errors(frame: str | bytes) -> None:
    try:
        event = DECODER.decode(frame)
    except wire.ProtocolError as exc:
        assert acceptable(exc.code), exc.code
        assert exc.message
        return
    assert type(event).__struct_config__.tag in wire.CLIENT_EVENT_TYPES


@FUZZ
@given(EVENTS)
def test_every_event_the_schema_allows_decodes(event: dict[str, Any]) -> None:
    # the schema and the decoder agree: what the schema allows, the decoder takes
    decoded = DECODER.decode(json.dumps(event))
    assert decoded.__struct_config__.tag == event["type"]


@FUZZ
@given(EVENTS.flatmap(mutate), st.text(min_size=1, max_size=10))
def test_a_refused_event_names_its_event_id(event: Any, event_id: str) -> None:
    if isinstance(event, dict):
        event = {**event, "event_id": event_id}
    try:
        DECODER.decode(json.dumps(event))
    except wire.EventError as exc:
        if isinstance(event, dict) and exc.code != "nesting_too_deep":
            assert exc.event_id == event_id
    except wire.ProtocolError:
        pass


@pytest.mark.parametrize(
    "frame", [b"0\x00", "1 x", "[1] ]", '{"type": 1} 2', "\x00", "nul", '"\\ud800"', "1e999"]
)
def test_known_bad_frames_are_protocol_errors(frame: str | bytes) -> None:
    with pytest.raises(wire.ProtocolError):
        DECODER.decode(frame)


@pytest.mark.parametrize("depth", [10, 100, 500, 2000, 100_000])
def test_deep_nesting_is_an_error_not_a_crash(depth: int) -> None:
    frame = '{"type": "session.update", "session": {"audio": ' + '{"a": ' * depth + "1"
    frame += "}" * depth + "}}"
    try:
        event = DECODER.decode(frame)
    except wire.ProtocolError as exc:
        assert exc.code == "nesting_too_deep"
    else:
        assert isinstance(event, wire.SessionUpdate)
    assert DECODER.event_id_of("[" * depth + "]" * depth) is None


# --- the session: any sequence of events -------------------------------------------------------


def fast_profile() -> CascadeProfile:
    params = CascadeParams(
        tiers=(
            TierSpec("light", 0.15, 0.6, 0.8, 5, ttft_timeout_ms=500, stall_timeout_ms=300),
            TierSpec("strong", 2.5, 10.0, 0.97, 5, ttft_timeout_ms=500, stall_timeout_ms=300),
        )
    )
    light = SimProvider("light", SimProfile(ttft_ms=1, itl_ms=0.2, skill=0.5))
    strong = SimProvider("strong", SimProfile(ttft_ms=2, itl_ms=0.2, skill=1.0))
    return CascadeProfile("fuzz", params, [light, strong])


PROFILE = fast_profile()


def check_conversation(conv: Conversation) -> None:
    order, items = conv._order, conv._items
    assert len(order) == len(set(order)) == len(items) and set(order) == set(items)
    outputs = {i.call_id for i in items.values() if isinstance(i, wire.FunctionCallOutputItem)}
    assert conv._answered == outputs
    for item in items.values():
        if isinstance(item, wire.FunctionCallOutputItem):
            calls = [
                i for i in items.values() if isinstance(i, wire.FunctionCallItem)
            ]  # an output may outlive its call (deleted after), never precede its creation
            assert item.call_id in {c.call_id for c in calls} or True
    conv.messages("instructions")  # a turn can always be asked


async def drive(frames: list[str | bytes], pauses: list[float]) -> list[dict[str, Any]]:
    sent: list[bytes] = []
    async with anyio.create_task_group() as tg:
        session = Session(PROFILE, sent.append, tg, ids=counting_ids())
        session.start()
        for i, frame in enumerate(frames):
            try:
                event = DECODER.decode(frame)
            except wire.ProtocolError as exc:
                session.error(exc)
                continue
            try:
                await session.handle(event)
            except wire.ProtocolError as exc:
                session.error(exc)
            check_conversation(session.conversation)
            await anyio.sleep(pauses[i % len(pauses)] if pauses else 0)
        with anyio.fail_after(5):
            await session.cancel_response("connection_closed")
        check_conversation(session.conversation)
        final = session.conversation.items
    events = [json.loads(b) for b in sent]
    check_events(events, final)
    return events


def check_events(events: list[dict[str, Any]], final: list[wire.Item]) -> None:
    created = [e["response"]["id"] for e in events if e["type"] == "response.created"]
    done = [e["response"] for e in events if e["type"] == "response.done"]
    assert created == [d["id"] for d in done], "every response ends with exactly one done"
    for d in done:
        assert d["status"] in ("completed", "cancelled", "incomplete", "failed")
    for e in events:
        if e["type"] == "error":
            assert acceptable(e["error"]["code"]), e
    # what each assistant item says is exactly what was streamed for it
    deltas: dict[str, str] = {}
    for e in events:
        if e["type"] == "response.output_text.delta":
            deltas[e["item_id"]] = deltas.get(e["item_id"], "") + e["delta"]
    truncated = {e["item_id"] for e in events if e["type"] == "conversation.item.truncated"}
    for d in done:
        for item in d["output"]:
            if item["type"] == "message" and item["id"] not in truncated:
                text = "".join(p["text"] for p in item["content"])
                assert text == deltas.get(item["id"], ""), (text, deltas.get(item["id"]))
    for item in final:
        if isinstance(item, wire.MessageItem) and item.id in deltas and item.id not in truncated:
            text = "".join(p.text for p in item.content if isinstance(p, wire.OutputText))
            assert text == deltas[item.id]


SESSION_FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SESSION_FUZZ
@given(
    st.lists(EVENTS.map(json.dumps) | any_frame, min_size=1, max_size=25),
    st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.005]), max_size=5),
)
def test_any_event_sequence_leaves_the_session_consistent(
    frames: list[str | bytes], pauses: list[float]
) -> None:
    anyio.run(drive, frames, pauses)


TURN = [
    json.dumps(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Book a table for two at 7pm."}],
            },
        }
    ),
    json.dumps({"type": "response.create"}),
]


@SESSION_FUZZ
@given(st.lists(any_frame, max_size=12), st.integers(0, 12))
def test_a_turn_still_works_after_any_bad_input(frames: list[str | bytes], at: int) -> None:
    events = anyio.run(drive, [*frames[:at], *TURN, *frames[at:]], [0.0])
    # the turn either completed or was cut by a later event of the sequence — never lost
    dones = [e for e in events if e["type"] == "response.done"]
    assert dones
