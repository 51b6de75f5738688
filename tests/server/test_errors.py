"""Raw WebSocket: every bad frame or out-of-order event gets the right ``error``; the session
goes on."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from realtime_cascade.server.app import HARD_FRAME_FACTOR, RealtimeServer

from .conftest import ServerFactory
from .helpers import BOOK, HARD, Raw, raw, text_of, user_item

pytestmark = pytest.mark.anyio


async def expect_error(client: Raw, frame: dict[str, Any] | str | bytes) -> dict[str, Any]:
    await client.send(frame)
    event = await client.recv()
    assert event["type"] == "error", event
    error: dict[str, Any] = event["error"]
    assert error["message"]
    return error


async def still_works(client: Raw) -> None:
    events = await client.turn(BOOK)
    assert events[-1]["response"]["status"] == "completed"
    assert "book a table" in text_of(events)


async def test_invalid_json(server: RealtimeServer) -> None:
    async with raw(server) as c:
        error = await expect_error(c, '{"type": "response.create",')
        assert error["code"] == "invalid_json"
        assert error["type"] == "invalid_request_error"
        await still_works(c)


async def test_unknown_event_type(server: RealtimeServer) -> None:
    async with raw(server) as c:
        error = await expect_error(c, {"type": "response.explode", "event_id": "e1"})
        assert (error["code"], error["event_id"], error["param"]) == ("unknown_event", "e1", "type")
        error = await expect_error(c, [1, 2])
        assert error["code"] == "invalid_event"
        error = await expect_error(c, {"event_id": "e2"})
        assert (error["code"], error["event_id"]) == ("invalid_event", "e2")
        await still_works(c)


async def test_wrong_field_types(server: RealtimeServer) -> None:
    async with raw(server) as c:
        error = await expect_error(
            c, {"type": "session.update", "event_id": "e3", "session": {"instructions": 5}}
        )
        assert error["code"] == "invalid_event"
        assert (error["event_id"], error["param"]) == ("e3", "session.instructions")
        bad_item = user_item(BOOK) | {"event_id": "e4"}
        bad_item["item"]["content"][0]["text"] = ["not", "a", "string"]
        error = await expect_error(c, bad_item)
        assert (error["event_id"], error["param"]) == ("e4", "item.content[0].text")
        error = await expect_error(
            c,
            {"type": "session.update", "event_id": "e5", "session": {"cascade": {"max_tierr": 1}}},
        )
        assert (error["code"], error["event_id"]) == ("invalid_event", "e5")
        await still_works(c)


async def test_binary_frame(server: RealtimeServer) -> None:
    async with raw(server) as c:
        error = await expect_error(c, b'{"type": "response.create"}')
        assert error["code"] == "binary_frame_not_supported"
        await still_works(c)


async def test_oversize_frame_soft_then_hard(make_server: ServerFactory) -> None:
    # a small limit, so the hard-limit frame fits in socket buffers and the client's send
    # completes before the server closes
    async with make_server(max_frame_bytes=2000) as server:
        await _oversize(server)


async def _oversize(server: RealtimeServer) -> None:
    limit = server.limits.max_frame_bytes
    async with raw(server) as c:
        big = user_item("x" * (limit + 10)) | {"event_id": "big"}
        error = await expect_error(c, big)
        assert (error["code"], error["event_id"]) == ("frame_too_large", "big")
        # multi-byte characters count in bytes, not characters
        error = await expect_error(c, user_item("é" * (limit // 2 + 10)))
        assert error["code"] == "frame_too_large"
        await still_works(c)
    async with raw(server) as c:
        await c.send(user_item("x" * (limit * HARD_FRAME_FACTOR + 10)))
        with pytest.raises(ConnectionClosed) as info:
            await c.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def test_cancel_with_nothing_running(server: RealtimeServer) -> None:
    async with raw(server) as c:
        error = await expect_error(c, {"type": "response.cancel", "event_id": "c1"})
        assert (error["code"], error["event_id"]) == ("response_cancel_not_active", "c1")
        await still_works(c)


async def test_output_for_unknown_call(server: RealtimeServer) -> None:
    async with raw(server) as c:
        frame = {
            "type": "conversation.item.create",
            "event_id": "o1",
            "item": {"type": "function_call_output", "call_id": "call_nope", "output": "{}"},
        }
        error = await expect_error(c, frame)
        assert (error["code"], error["event_id"], error["param"]) == (
            "unknown_call_id",
            "o1",
            "item.call_id",
        )
        await still_works(c)


async def test_bad_audio_events_refused_clearly(server: RealtimeServer) -> None:
    async with raw(server) as c:
        append = {"type": "input_audio_buffer.append", "event_id": "a1"}
        for frame, code in (
            (append | {"audio": "AAAA"}, "invalid_audio"),  # 3 bytes: not PCM16
            (append | {"audio": "**"}, "invalid_audio"),  # not base64
            (
                {"type": "input_audio_buffer.commit", "event_id": "a1"},
                "input_audio_buffer_commit_empty",
            ),
        ):
            error = await expect_error(c, frame)
            assert (error["code"], error["event_id"]) == (code, "a1")
        error = await expect_error(
            c, {"type": "session.update", "session": {"output_modalities": ["video"]}}
        )
        assert error["param"] == "session.output_modalities[0]"
        error = await expect_error(
            c,
            {
                "type": "session.update",
                "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 4000}}}},
            },
        )
        assert (error["code"], error["param"]) == (
            "invalid_value",
            "session.audio.input.format.rate",
        )
        await still_works(c)


async def test_one_response_at_a_time_and_barge_in(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send(user_item(HARD))
        await c.send({"type": "response.create"})
        await c.until("response.output_text.delta")
        error = await expect_error(c, {"type": "response.create", "event_id": "r2"})
        assert (error["code"], error["event_id"]) == (
            "conversation_already_has_active_response",
            "r2",
        )
        # a new user message during the response is a barge-in
        await c.send(user_item(BOOK))
        events = await c.until("conversation.item.added")
        done = next(e for e in events if e["type"] == "response.done")["response"]
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "turn_detected"
        trace = next(e for e in events if e["type"] == "cascade.trace")["trace"]
        assert done["output"][0]["content"][0]["text"] == trace["text"]
        assert events[-1]["item"]["role"] == "user"
        await c.send({"type": "response.create"})
        events = await c.until("response.done")
        assert events[-1]["response"]["status"] == "completed"


async def test_items_retrieve_delete_truncate(server: RealtimeServer) -> None:
    async with raw(server) as c:
        events = await c.turn(BOOK)
        item = events[-1]["response"]["output"][0]
        await c.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item["id"],
                "content_index": 0,
                "audio_end_ms": 0,
                "text_end": 5,
            }
        )
        assert (await c.recv())["type"] == "conversation.item.truncated"
        await c.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
        got = await c.recv()
        assert got["item"]["content"][0]["text"] == text_of(events)[:5]
        await c.send({"type": "conversation.item.delete", "item_id": item["id"]})
        assert (await c.recv())["type"] == "conversation.item.deleted"
        error = await expect_error(
            c, {"type": "conversation.item.retrieve", "item_id": item["id"], "event_id": "d"}
        )
        assert (error["code"], error["event_id"]) == ("item_not_found", "d")


async def test_unknown_model(server: RealtimeServer) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{server.port}/v1/realtime?model=nope") as ws:
        event = Raw(ws)
        error = await event.recv()
        assert error["type"] == "error" and error["error"]["code"] == "model_not_found"
        assert "default" in error["error"]["message"]
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
