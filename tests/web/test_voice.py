"""The console's server voice mode, with a WAV file as the microphone.

Chromium's fake capture device plays a WAV made with Piper (the spoken request, then
silence) into ``getUserMedia``; the page's AudioWorklet turns it into PCM16 appends, the server's
VAD and Whisper make a user turn of it, and the spoken answer comes back as audio deltas
that the page plays through Web Audio while it shows their transcript.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from realtime_cascade.audio.pcm import RATE, to_bytes
from tests.audio.speech import REQUEST, speak

from .conftest import CHROMIUM, CHROMIUM_ARGS, open_page
from .test_browser import expect, of_type, open_and_connect, record_frames, tab_to

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TURN_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The request, spoken, with a second of silence before and three after."""
    path = tmp_path_factory.mktemp("voice") / "request.wav"
    silence = np.zeros(RATE, dtype=np.int16)
    samples = np.concatenate((silence, speak(REQUEST), silence, silence, silence))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(to_bytes(samples))
    return path


@pytest.fixture(scope="module")
def voice_browser(browser: Browser, microphone_wav: Path) -> Iterator[Browser]:
    """A second Chromium (the same Playwright) whose microphone is the WAV, played once, with
    no permission prompt: capture flags are per browser process."""
    args = [
        *CHROMIUM_ARGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone_wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    voice = browser.browser_type.launch(executable_path=CHROMIUM, args=args)
    try:
        yield voice
    finally:
        voice.close()


@pytest.fixture
def voice_page(voice_browser: Browser) -> Iterator[Page]:
    with open_page(voice_browser, permissions=["microphone"]) as page:
        yield page


def test_microphone_in_spoken_answer_out(
    voice_page: Page, live_server: str, output_dir: Path
) -> None:
    page = voice_page
    sent: list[dict[str, Any]] = []
    frames = record_frames(page, sent)
    page.goto(live_server)
    page.get_by_label("Voice", exact=True).select_option("server")
    open_and_connect(page, live_server)
    expect(page.get_by_test_id("ptt")).to_be_hidden()
    tab_to(page, "mic")
    page.keyboard.press("Enter")
    mic = page.get_by_test_id("mic")
    expect(mic).to_have_attribute("aria-pressed", "true")
    expect(mic).to_have_accessible_name("Stop microphone")

    # the server heard the request: the user's bubble shows its transcript (the words vary:
    # the browser's own audio processing — echo cancelling, noise suppression, resampling —
    # makes the recogniser's input rougher than in tests/audio, which checks them exactly)
    said = page.locator("[data-testid=user-message] .text").filter(
        has_text=re.compile(r"^\w+( \S+){2,}$")  # a few words (not "…", not a lone noise)
    )
    try:
        expect(said).to_have_count(1, timeout=TURN_TIMEOUT_MS)
    except AssertionError as exc:
        heard_events = [
            (f["type"], f.get("transcript"), f.get("audio_start_ms"), f.get("audio_end_ms"))
            for f in frames
            if f["type"].startswith(("input_audio_buffer", "conversation.item.input_audio"))
        ]
        raise AssertionError(f"no transcript of the request; the server: {heard_events}") from exc
    heard = said.inner_text()
    # the answer: its transcript on the page, its audio playing
    reply = page.get_by_test_id("assistant-message").last
    expect(reply.get_by_test_id("assistant-text")).to_have_text(
        re.compile(r"\w+ \w+"), timeout=TURN_TIMEOUT_MS
    )
    playback = page.get_by_test_id("playback")
    expect(playback).to_have_attribute("data-state", "playing")
    page.screenshot(path=str(output_dir / "voice-playing.png"))
    expect(reply).to_have_attribute("data-status", "completed", timeout=TURN_TIMEOUT_MS)

    appends = of_type(sent, "input_audio_buffer.append")
    assert len(appends) > 20  # ~40 ms each
    update = of_type(sent, "session.update")[-1]["session"]
    assert update["output_modalities"] == ["audio"]
    assert update["audio"]["input"]["format"]["rate"] == 24000  # the context runs at 24 kHz
    kinds = [f["type"] for f in frames]
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "conversation.item.input_audio_transcription.completed",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
    ):
        assert kind in kinds, kind
    trace = of_type(frames, "cascade.trace")[-1]["trace"]
    assert trace["request"] == heard  # the cascade answered what the server heard
    spoken = "".join(f["delta"] for f in of_type(frames, "response.output_audio_transcript.delta"))
    expect(reply.get_by_test_id("assistant-text")).to_have_text(spoken)
    chunks = int(playback.get_attribute("data-chunks") or 0)
    assert chunks == len(of_type(frames, "response.output_audio.delta"))
    # Web Audio really plays it: the last source ends once the context's clock has run through
    # every chunk, and only then does the page say it is idle again
    expect(playback).to_have_attribute("data-state", "idle", timeout=TURN_TIMEOUT_MS)
