"""Conversation state stays what the listener was given, whatever the client does mid-response:
editing the item a response is still writing stops the response first."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import HARD, ServerFactory, raw, user_item

pytestmark = pytest.mark.anyio


async def _streaming(c: Any) -> tuple[str, str]:
    await c.send(user_item(HARD))
    await c.send({"type": "response.create"})
    events = await c.until("response.output_text.delta")
    return events[-1]["item_id"], events[-1]["delta"]


@pytest.mark.parametrize("edit", ["truncate", "delete"])
async def test_editing_the_item_being_written_cancels_the_response_first(
    make_server: ServerFactory, edit: str
) -> None:
    async with make_server() as server, raw(server) as c:
        item_id, first_delta = await _streaming(c)
        if edit == "truncate":
            await c.send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": 0,
                    "text_end": 3,
                }
            )
        else:
            await c.send({"type": "conversation.item.delete", "item_id": item_id})
        events = await c.until(
            "conversation.item.truncated" if edit == "truncate" else "conversation.item.deleted"
        )
        done = next(e["response"] for e in events if e["type"] == "response.done")
        assert done["status"] == "cancelled"
        assert done["status_details"]["reason"] == "client_cancelled"
        later = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        streamed = done["output"][0]["content"][0]["text"]
        assert streamed == first_delta + later  # the item holds exactly what was released
        await c.send({"type": "conversation.item.retrieve", "item_id": item_id})
        got = await c.recv()
        if edit == "truncate":
            # exactly the edit applied to what was released: no text streamed after it
            assert got["item"]["content"][0]["text"] == streamed[:3]
        else:
            assert got["error"]["code"] == "item_not_found"
        # and the session goes on
        events = await c.turn("Book a table for two.")
        assert events[-1]["response"]["status"] == "completed"
