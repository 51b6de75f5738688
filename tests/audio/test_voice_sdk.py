"""Acceptance: a spoken request through the official ``openai`` SDK's GA realtime client.

The request is synthesised with Piper and streamed as audio (base64 PCM16, 24 kHz) with
``input_audio_buffer.append``; server VAD finds the speech, Whisper transcribes it, the
booking profile's cascade answers with a tool call (a table search), the client runs the tool,
and the answer comes back as speech: ``response.output_audio.delta`` and its transcript.
The second test speaks over that answer: the response is cancelled and the client's
``conversation.item.truncate(audio_end_ms)`` leaves the words that were heard.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from openai import AsyncOpenAI
from realtime_cascade.demos.booking.agent import system_prompt
from realtime_cascade.demos.booking.domain import Store
from realtime_cascade.demos.booking.tools import execute
from realtime_cascade.demos.booking.wsagent import realtime_tools

from realtime_cascade import config as config_mod
from realtime_cascade.audio.pcm import RATE
from realtime_cascade.server.app import RealtimeServer

from .speech import BARGE_IN, REQUEST, chunks_b64, speak

pytestmark = pytest.mark.anyio

BOOKING = Path(__file__).resolve().parents[2] / "demos" / "booking" / "config.toml"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    async with RealtimeServer(config_mod.load(BOOKING), host="127.0.0.1", port=0) as srv:
        yield srv


@asynccontextmanager
async def voice_session(server: RealtimeServer, store: Store) -> AsyncIterator[Any]:
    client = AsyncOpenAI(
        api_key="sk-test", base_url=f"http://127.0.0.1:{server.port}/v1", max_retries=0
    )
    async with client.realtime.connect(model="booking") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": system_prompt(store),
                "tools": realtime_tools(),
                "output_modalities": ["audio"],
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}
                },
            }
        )
        yield conn


async def until(conn: Any, kind: str, within: float = 20.0) -> list[Any]:
    events: list[Any] = []
    with anyio.fail_after(within):
        async for event in conn:  # dispatch on .type (cascade.* arrive in unrelated classes)
            events.append(event)
            assert event.type != "error", event
            if event.type == kind:
                return events
    raise AssertionError(f"connection ended before {kind}")


async def speak_request(conn: Any, store: Store) -> tuple[list[Any], str]:
    """Say the request, run the tool call it leads to; (events so far, the transcript)."""
    for chunk in chunks_b64(speak(REQUEST)):
        await conn.input_audio_buffer.append(audio=chunk)
    events = await until(conn, "response.done")
    kinds = [e.type for e in events]
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
    ):
        assert kind in kinds, kind
    assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index(
        "input_audio_buffer.committed"
    )
    transcript = next(
        e.transcript
        for e in events
        if e.type == "conversation.item.input_audio_transcription.completed"
    )
    calls = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [c.name for c in calls] == ["search_availability"], transcript
    call = calls[0]
    await conn.conversation.item.create(
        item={
            "type": "function_call_output",
            "call_id": call.call_id,
            "output": execute(store, call.name, call.arguments),
        }
    )
    await conn.response.create()
    return events, transcript


def audio_ms(events: list[Any]) -> float:
    pcm = b"".join(
        base64.b64decode(e.delta) for e in events if e.type == "response.output_audio.delta"
    )
    return len(pcm) / 2 / RATE * 1000


async def test_spoken_request_gets_a_spoken_answer(server: RealtimeServer) -> None:
    store = Store()
    async with voice_session(server, store) as conn:
        _, heard = await speak_request(conn, store)
        assert "table for two tomorrow" in heard
        answer = await until(conn, "response.done")
    kinds = [e.type for e in answer]
    assert kinds.index("response.output_audio_transcript.delta") < kinds.index(
        "response.output_audio.delta"
    )
    assert "response.output_text.delta" not in kinds  # audio mode: transcript deltas instead
    done = answer[-1].response
    assert done.status == "completed"
    transcript = "".join(
        e.delta for e in answer if e.type == "response.output_audio_transcript.delta"
    )
    final = next(e for e in answer if e.type == "response.output_audio_transcript.done")
    assert final.transcript == transcript
    assert "has tables for 2" in transcript  # the search's result, read out
    # about 8-25 characters a second (Piper's voice speaks at a natural rate)
    seconds = audio_ms(answer) / 1000
    assert len(transcript) / 25 < seconds < len(transcript) / 8
    part = done.output[0].content[0]
    assert part.type == "output_audio" and part.transcript == transcript


async def test_barge_in_cancels_and_truncates_to_what_was_heard(server: RealtimeServer) -> None:
    store = Store()
    async with voice_session(server, store) as conn:
        await speak_request(conn, store)
        # the answer starts: speak over it as soon as its first audio arrives
        first = await until(conn, "response.output_audio.delta")
        item_id = first[-1].item_id
        for chunk in chunks_b64(speak(BARGE_IN)):
            await conn.input_audio_buffer.append(audio=chunk)
        events = first + await until(conn, "response.done")
        kinds = [e.type for e in events]
        assert kinds.index("input_audio_buffer.speech_started") < kinds.index("response.done")
        done = events[-1].response
        assert done.status == "cancelled"
        assert done.status_details.reason == "turn_detected"
        spoken = next(e for e in events if e.type == "response.output_audio_transcript.done")
        sent_ms = audio_ms(events)
        assert spoken.transcript and sent_ms > 1000

        # the client played one second of it when the user spoke
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=1000)
        truncated = await until(conn, "conversation.item.truncated")
        assert truncated[-1].audio_end_ms == 1000
        await conn.conversation.item.retrieve(item_id=item_id)
        item = (await until(conn, "conversation.item.retrieved"))[-1].item
        heard = item.content[0].transcript
        assert spoken.transcript.startswith(heard)
        assert 0 < len(heard) < len(spoken.transcript)
        assert len(heard.split()) <= 4  # one second of speech: a few words, whole ones
        assert spoken.transcript[len(heard) : len(heard) + 1] in (" ", "")

        # the barge-in itself is transcribed, and answered from the truncated history
        events = await until(conn, "conversation.item.input_audio_transcription.completed")
        assert events[-1].transcript
