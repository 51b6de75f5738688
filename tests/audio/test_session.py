"""The audio protocol over a real WebSocket, with instant fake speech engines."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.audio import turn
from realtime_cascade.audio.codec import g711_decode, g711_encode
from realtime_cascade.audio.config import Speech
from realtime_cascade.audio.pcm import RATE, encode_b64, resample
from realtime_cascade.server.app import RealtimeServer
from tests.server.helpers import Raw, raw, text_of, user_item

from .fakes import MS_PER_CHAR, FakeStt, FakeTts, silence, tone

pytestmark = pytest.mark.anyio

MANUAL = {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}}
VOICE = {"type": "session.update", "session": {"output_modalities": ["audio"]}}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def stt() -> FakeStt:
    return FakeStt("Book a table for two at 7pm tonight.")


@pytest.fixture
def tts() -> FakeTts:
    return FakeTts()


@pytest.fixture
async def server(stt: FakeStt, tts: FakeTts) -> AsyncIterator[RealtimeServer]:
    cfg = config_mod.load()
    profile = config_mod.build_profile(cfg, "default")
    profile.speech = Speech(stt, tts, vad="energy")  # the tones here are not speech to Silero
    async with RealtimeServer(cfg, host="127.0.0.1", port=0, profiles={"default": profile}) as srv:
        yield srv


async def send_audio(c: Raw, samples: np.ndarray, chunk_ms: int = 100) -> None:
    step = chunk_ms * RATE // 1000
    for i in range(0, len(samples), step):
        chunk = encode_b64(samples[i : i + step])
        await c.send({"type": "input_audio_buffer.append", "audio": chunk})


def utterance(ms: int = 800) -> np.ndarray:
    return np.concatenate((silence(300), tone(ms), silence(700)))


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_session_shows_and_updates_its_audio_settings(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send(
            {
                "type": "session.update",
                "session": {
                    "output_modalities": ["audio"],
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcm", "rate": 16000},
                            "transcription": {"language": "en"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                        },
                        "output": {"voice": "en-gb", "speed": 1.2},
                    },
                },
            }
        )
        session = (await c.until("session.updated"))[-1]["session"]
    assert session["output_modalities"] == ["audio"]
    audio = session["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 16000}
    assert audio["input"]["transcription"] == {"model": "fake-stt", "language": "en"}
    td = audio["input"]["turn_detection"]
    assert (td["silence_duration_ms"], td["threshold"], td["create_response"]) == (300, 0.5, True)
    assert audio["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "en-gb",
        "speed": 1.2,
    }


async def test_server_vad_commits_transcribes_and_answers(
    server: RealtimeServer, stt: FakeStt
) -> None:
    async with raw(server) as c:
        await send_audio(c, utterance())
        events = await c.until("response.done")
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.done",
    ]
    seen = kinds(events)
    firsts = [seen.index(k) for k in order]
    assert firsts == sorted(firsts)
    started, stopped, committed, added = (events[seen.index(k)] for k in order[:4])
    assert started["audio_start_ms"] == 0 and stopped["audio_end_ms"] == 1600
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert added["item"]["content"] == [{"type": "input_audio", "audio": None, "transcript": None}]
    done = events[seen.index("conversation.item.input_audio_transcription.completed")]
    assert done["transcript"] == stt.text and done["usage"]["type"] == "duration"
    # the item is the speech, padding and the silence that ended it: 300 + 800 + 500 ms
    assert done["usage"]["seconds"] == 1.6
    # the recogniser heard it from its first pause (speculative: rule 9), silence not yet in
    how = events[seen.index("cascade.transcription")]
    assert how["item_id"] == done["item_id"] and how["speculative"] is True
    assert len(stt.heard) == 1 and 1100 * RATE // 1000 <= len(stt.heard[0]) <= 1300 * RATE // 1000
    trace = next(e for e in events if e["type"] == "cascade.trace")["trace"]
    assert trace["request"] == stt.text  # the cascade answered the transcript
    assert "book a table" in text_of(events)  # text mode: text deltas


async def test_other_input_rates_are_resampled(server: RealtimeServer, stt: FakeStt) -> None:
    async with raw(server) as c:
        await c.send(MANUAL | {"session": {"audio": {"input": {
            "turn_detection": None, "format": {"type": "audio/pcm", "rate": 16000}}}}})  # fmt: skip
        await c.until("session.updated")
        await send_audio(c, resample(tone(500), RATE, 16000), chunk_ms=37)
        await c.send({"type": "input_audio_buffer.commit"})
        events = await c.until("conversation.item.input_audio_transcription.completed")
    assert "response.created" not in kinds(events)  # a client's commit does not respond
    assert abs(len(stt.heard[0]) - RATE // 2) <= 2


async def test_clear_and_empty_commit(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send(MANUAL)
        await c.until("session.updated")
        await send_audio(c, tone(300))
        await c.send({"type": "input_audio_buffer.clear"})
        assert (await c.recv())["type"] == "input_audio_buffer.cleared"
        await c.send({"type": "input_audio_buffer.commit", "event_id": "e1"})
        error = (await c.until("error"))[-1]["error"]
        assert (error["code"], error["event_id"]) == ("input_audio_buffer_commit_empty", "e1")


@pytest.mark.parametrize("stt", [FakeStt(error="the recogniser broke")])
async def test_transcription_failure(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await send_audio(c, utterance())
        events = await c.until("conversation.item.input_audio_transcription.failed")
        failed = events[-1]
        assert failed["error"]["message"] == "the recogniser broke"
        assert failed["item_id"] == events[kinds(events).index("input_audio_buffer.committed")][
            "item_id"
        ]
        assert "response.created" not in kinds(events)


@pytest.mark.parametrize("stt", [FakeStt("")])
async def test_nothing_recognised_nothing_answered(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await send_audio(c, utterance())
        await c.until("conversation.item.input_audio_transcription.completed")
        await send_audio(c, utterance())  # a second one: still no response
        events = await c.until("conversation.item.input_audio_transcription.completed")
        assert "response.created" not in kinds(events)


async def test_spoken_answer_and_truncation(server: RealtimeServer, tts: FakeTts) -> None:
    async with raw(server) as c:
        await c.send(VOICE)
        await c.until("session.updated")
        await c.send(user_item("Book a table for two at 7pm tonight."))
        await c.send({"type": "response.create"})
        events = await c.until("response.done")
        seen = kinds(events)
        assert "response.output_text.delta" not in seen
        transcript = "".join(
            e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
        )
        assert transcript == "".join(tts.spoken)
        item = events[-1]["response"]["output"][0]
        assert item["content"] == [{"type": "output_audio", "transcript": transcript}]
        # the fake voice: 50 ms a character, so 1 s is the first 20 characters, whole words
        words_in_1s = transcript[: 1000 // MS_PER_CHAR].rsplit(" ", 1)[0]
        await c.send({"type": "conversation.item.truncate", "item_id": item["id"],
                      "content_index": 0, "audio_end_ms": 1000})  # fmt: skip
        assert (await c.recv())["type"] == "conversation.item.truncated"
        await c.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
        got = (await c.recv())["item"]["content"][0]["transcript"]
        assert got == words_in_1s
        # more than the audio sent is refused
        await c.send({"type": "conversation.item.truncate", "item_id": item["id"],
                      "content_index": 0, "audio_end_ms": 10**6})  # fmt: skip
        error = (await c.until("error"))[-1]["error"]
        assert (error["code"], error["param"]) == ("invalid_value", "audio_end_ms")


@pytest.mark.parametrize("tts", [FakeTts(fail_on="table")])
async def test_speech_failure_is_reported_and_the_rest_is_spoken(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send(VOICE)
        await c.until("session.updated")
        await c.send(user_item("Book a table for two at 7pm tonight."))
        await c.send({"type": "response.create"})
        events = await c.until("response.done")
    errors = [e for e in events if e["type"] == "error"]
    assert [e["error"]["code"] for e in errors] == ["speech_failed"]
    done = next(e for e in events if e["type"] == "response.output_audio_transcript.done")
    assert "table" not in done["transcript"] and done["transcript"]
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize("tts", [FakeTts(delay=0.2)])
async def test_speech_barges_in_on_a_slow_answer(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send(VOICE)
        await c.until("session.updated")
        await c.send(user_item("Book a table for two at 7pm tonight."))
        await c.send({"type": "response.create"})
        await c.until("response.output_audio.delta")
        await send_audio(c, utterance())
        events = await c.until("response.done")
        assert events[-1]["response"]["status"] == "cancelled"
        assert events[-1]["response"]["status_details"]["reason"] == "turn_detected"
        seen = kinds(events)
        assert seen.index("input_audio_buffer.speech_started") < seen.index("response.done")


async def test_interrupt_response_false_lets_the_answer_finish(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": {"type": "server_vad", "interrupt_response": False}}}}})  # fmt: skip
        await c.until("session.updated")
        await c.send(user_item("Book a table for two at 7pm tonight."))
        await c.send({"type": "response.create"})
        await c.until("response.output_text.delta")
        await send_audio(c, utterance())
        events = await c.until("response.done")
        assert events[-1]["response"]["status"] == "completed"


async def test_telephony_audio_in_and_out(server: RealtimeServer, stt: FakeStt) -> None:
    async with raw(server) as c:
        await c.send({"type": "session.update", "session": {"output_modalities": ["audio"],
            "audio": {"input": {"format": {"type": "audio/pcmu"}},
                      "output": {"format": {"type": "audio/pcma"}}}}})  # fmt: skip
        session = (await c.until("session.updated"))[-1]["session"]
        assert session["audio"]["input"]["format"] == {"type": "audio/pcmu", "rate": 8000}
        assert session["audio"]["output"]["format"] == {"type": "audio/pcma", "rate": 8000}
        mulaw = g711_encode(resample(utterance(), RATE, 8000), "pcmu")
        for i in range(0, len(mulaw), 800):  # 100 ms appends, one byte a sample
            chunk = base64.b64encode(mulaw[i : i + 800]).decode()
            await c.send({"type": "input_audio_buffer.append", "audio": chunk})
        events = await c.until("response.done")
    assert events[kinds(events).index("input_audio_buffer.speech_stopped")]["audio_end_ms"] in (
        range(1560, 1640)
    )
    done = events[kinds(events).index("conversation.item.input_audio_transcription.completed")]
    assert abs(done["usage"]["seconds"] - 1.6) < 0.04  # as PCM16 at 24 kHz
    assert abs(len(stt.heard[0]) - 1200 * RATE // 1000) < RATE // 10  # from the first pause
    out = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    spoken = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    # A-law at 8 kHz: one byte a sample; the fake voice gives MS_PER_CHAR per character
    assert abs(len(out) - len(spoken) * MS_PER_CHAR * 8) <= 8 * 30
    assert np.abs(g711_decode(out, "pcma").astype(int)).max() > 500


async def test_g711_rates_are_fixed(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send({"type": "session.update", "session": {"audio": {"input": {
            "format": {"type": "audio/pcmu", "rate": 16000}}}}})  # fmt: skip
        error = (await c.until("error"))[-1]["error"]
        assert error["param"] == "session.audio.input.format.rate"


@pytest.mark.parametrize(
    ("stt", "answered"),
    [(FakeStt("I'd like a table for two and"), False), (FakeStt("A table for two."), True)],
)
async def test_semantic_vad_waits_on_an_unfinished_sentence(
    server: RealtimeServer, stt: FakeStt, answered: bool
) -> None:
    async with raw(server) as c:
        await c.send({"type": "session.update", "session": {"audio": {"input": {
            "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}}})  # fmt: skip
        td = (await c.until("session.updated"))[-1]["session"]["audio"]["input"]["turn_detection"]
        assert (td["type"], td["eagerness"], td["silence_duration_ms"]) == (
            "semantic_vad", "high", turn.SILENCE_MS["high"])  # fmt: skip
        await send_audio(c, utterance())
        events = await c.until("conversation.item.input_audio_transcription.completed")
        # the user goes on speaking before the hold (1 s at "high") ends
        await send_audio(c, np.concatenate((tone(300), silence(100))))
        events += await c.until("input_audio_buffer.speech_started", within=5)
        assert ("response.created" in kinds(events)) is answered


async def test_audio_faster_than_the_bound_is_refused(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send(MANUAL)
        await c.until("session.updated")
        five_s = encode_b64(silence(5_000))
        for _ in range(14):  # 70 s of audio at once: past the 60 s burst
            await c.send({"type": "input_audio_buffer.append", "audio": five_s})
        error = (await c.until("error"))[-1]["error"]
        assert error["code"] == "rate_limit_exceeded"
        await c.send({"type": "input_audio_buffer.commit"})  # the session goes on
        await c.until("input_audio_buffer.committed")


async def test_an_unknown_voice_is_refused(server: RealtimeServer) -> None:
    async with raw(server) as c:
        await c.send({"type": "session.update",
                      "session": {"audio": {"output": {"voice": "missing-voice"}}}})  # fmt: skip
        error = (await c.until("error"))[-1]["error"]
        assert error["param"] == "session.audio.output.voice"
        await c.send({"type": "session.update", "session": {"audio": {"output": {
            "voice": "alloy"}}}})  # fmt: skip
        assert (await c.until("session.updated"))[-1]["session"]["audio"]["output"]["voice"] == (
            "alloy"
        )


async def test_the_transcription_prompt_is_checked_and_reaches_the_recogniser(
    server: RealtimeServer, stt: FakeStt
) -> None:
    where = "session.audio.input.transcription"
    async with raw(server) as c:
        for transcription, param in [
            ({"prompt": "x" * 1001}, f"{where}.prompt"),  # bounded
            ({"prompt": "Sakura\x00"}, f"{where}.prompt"),  # plain text only
            ({"language": "english please"}, f"{where}.language"),  # ISO 639-1
        ]:
            audio = {"input": {"transcription": transcription}}
            await c.send({"type": "session.update", "session": {"audio": audio}})
            error = (await c.until("error"))[-1]["error"]
            assert (error["code"], error["param"]) == ("invalid_value", param)
        prompt = "A caller booking a table at Sakura: guests, dates, times."
        await c.send({"type": "session.update", "session": {"audio": {"input": {
            "transcription": {"prompt": prompt, "language": "en"}}}}})  # fmt: skip
        session = (await c.until("session.updated"))[-1]["session"]
        assert session["audio"]["input"]["transcription"]["prompt"] == prompt
        await send_audio(c, utterance())
        await c.until("conversation.item.input_audio_transcription.completed")
    assert stt.prompts == [prompt]
