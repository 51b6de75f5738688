"""The speech track: phrases, order, cancel, and what a listener heard (fake voice, real time)."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from realtime_cascade import wire
from realtime_cascade.audio.speech import (
    ItemAudio,
    SpeechTrack,
    Timeline,
    phrase_cut,
)
from realtime_cascade.audio.tts import Word

from .fakes import MS_PER_CHAR, FakeTts

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("text", "first", "cut"),
    [
        ("Let me check that.", False, 18),
        ("Let me check that. I can", False, 18),
        ("at 7.30 tonight", False, 0),  # "7.30" is not a boundary
        (" I can", True, 0),
        (" I can book a", True, 11),  # first phrase: three whole words are enough
        (" I can book a", False, 0),
        ("word " * 30, False, 149),  # too long: at the last word boundary
        ("", True, 0),
        (".", False, 1),
    ],
)
def test_phrase_cut(text: str, first: bool, cut: int) -> None:
    assert phrase_cut(text, first=first) == cut


def test_timeline_keeps_whole_words() -> None:
    import numpy as np

    t = Timeline()
    text = "Sakura has tables, at six."
    samples = np.full(2000 * 24, 1000, dtype=np.int16)  # 2 s, loud to the end
    words = (Word(0, 6, 0.0), Word(7, 10, 500.0), Word(11, 17, 900.0), Word(19, 21, 1400.0),
             Word(22, 25, 1600.0))  # fmt: skip
    t.add(text, 0, 0.0, samples, words)
    assert t.heard(499) == 0
    assert t.heard(500) == len("Sakura")
    assert t.heard(1400) == len("Sakura has tables,")  # punctuation goes with its word
    assert t.heard(1999) == len("Sakura has tables, at")
    assert t.heard(2000) == len(text)
    # a second phrase after 300 ms of filler audio
    t.duration_ms = 2300.0
    t.add(" Yes.", len(text), 2300.0, samples[: 500 * 24], ())
    assert t.heard(2700) == len(text)
    assert t.heard(2800) == len(text) + len(" Yes.")


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []

    def __call__(self, data: bytes) -> None:
        self.events.append(msgspec.json.decode(data))

    def kinds(self) -> list[str]:
        return [str(e["type"]) for e in self.events]


def track(tts: FakeTts, sink: Sink) -> tuple[SpeechTrack, ItemAudio]:
    t = SpeechTrack(tts, wire.EventWriter("sess_x"), sink, "resp_1")
    return t, ItemAudio("item_1", 0, 0, Timeline())


async def test_phrases_in_order_transcript_before_audio() -> None:
    sink, tts = Sink(), FakeTts(chunks=3)
    t, item = track(tts, sink)
    done: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(t.run)
        # word by word (a last tier): the first phrase goes after three words, then by phrase
        for piece in ["I", " can", " book", " a", " table", " for", " two.", " Shall", " I?"]:
            t.say(item, piece)
        t.flush(item)
        t.then(lambda: done.append("closed"))
        await t.drained()
        t.close()
    assert tts.spoken == ["I can book", " a table for two.", " Shall I?"]
    assert item.spoken == "I can book a table for two. Shall I?"
    assert done == ["closed"]
    kinds = sink.kinds()
    assert kinds[0] == "response.output_audio_transcript.delta"
    assert kinds.count("response.output_audio_transcript.delta") == 3
    assert t.first_audio_at is not None
    assert item.timeline.duration_ms == len(item.spoken) * MS_PER_CHAR


async def test_cancel_drops_unspoken_phrases_and_runs_what_waits() -> None:
    sink, tts = Sink(), FakeTts(delay=0.05)
    t, item = track(tts, sink)
    order: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(t.run)
        t.say(item, "First phrase.")
        t.say(item, " Second phrase.")
        t.then(lambda: order.append("after"))
        await anyio.sleep(0.07)  # the first is out, the second is being synthesised
        t.cancel()
        assert order == ["after"]
        t.say(item, " Ignored.")
        t.then(lambda: order.append("at once"))
        assert order == ["after", "at once"]
        await t.drained()
    assert item.spoken == "First phrase."
    assert tts.spoken == ["First phrase."]


async def test_a_failed_phrase_is_skipped_and_reported_once() -> None:
    sink, tts = Sink(), FakeTts(fail_on="bad")
    errors: list[str] = []
    t, item = track(tts, sink)
    t.on_error = errors.append
    async with anyio.create_task_group() as tg:
        tg.start_soon(t.run)
        for piece in ["A bad one.", " Good.", " Also bad."]:
            t.say(item, piece)
        await t.drained()
        t.close()
    assert item.spoken == " Good."
    assert len(errors) == 1
