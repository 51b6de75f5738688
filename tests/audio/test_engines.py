"""The engines: espeak-ng and pocketsphinx embedded, and OpenAI-compatible endpoints over HTTP
(a small local server stands in for the provider), and the ``[audio]`` config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import msgspec
import numpy as np
import pytest
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteStream

from realtime_cascade import config as config_mod
from realtime_cascade.audio.config import AudioConfig, OpenAIStt, OpenAITts, build_speech
from realtime_cascade.audio.pcm import RATE, resample, to_bytes
from realtime_cascade.audio.stt import (
    OpenAITranscriber,
    OpenAITranscriptionConfig,
    PocketsphinxConfig,
    PocketsphinxTranscriber,
    TranscriptionError,
)
from realtime_cascade.audio.tts import (
    EspeakSynthesizer,
    OpenAISpeech,
    OpenAISpeechConfig,
    SpeechError,
)

from .speech import BARGE_IN, REQUEST, speak

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_espeak_speaks_with_word_timings() -> None:
    text = "Sakura has tables for two, at seven."
    chunks = [c async for c in EspeakSynthesizer().synthesize(text)]
    (chunk,) = chunks
    seconds = len(chunk.samples) / RATE
    assert 1.5 < seconds < 4.0
    assert np.abs(chunk.samples).max() > 5000
    words = [text[w.start : w.end] for w in chunk.words]
    assert words == ["Sakura", "has", "tables", "for", "two", "at", "seven"]
    starts = [w.ms for w in chunk.words]
    assert starts == sorted(starts) and starts[-1] < seconds * 1000
    slower = EspeakSynthesizer().speak(text, speed=0.5)
    assert len(slower.samples) > 1.5 * len(chunk.samples)


async def test_pocketsphinx_transcribes_espeak() -> None:
    stt = PocketsphinxTranscriber()
    await stt.warm()
    heard = await stt.transcribe(speak(REQUEST, engine="espeak"))
    assert heard == "do you have a table for two tomorrow evening"
    assert await stt.transcribe(np.zeros(RATE, dtype=np.int16)) == ""
    with pytest.raises(TranscriptionError) as info:
        await stt.transcribe(speak(REQUEST, engine="espeak"), language="fr")
    assert info.value.code == "unsupported_language"


async def test_pocketsphinx_transcript_depends_on_the_audio_alone() -> None:
    # One worker, so every decode reuses its decoder, as two sessions' turns do when the pool
    # hands both to one worker (which, under load, it does). The request as server VAD commits
    # it (the tail silence cut to 500 ms) came back "u have a table…" when the worker had
    # decoded it before: the decoder's noise estimate carried over from one utterance to the next.
    stt = PocketsphinxTranscriber(PocketsphinxConfig(decoders=1))
    request = speak(REQUEST, engine="espeak")[: 2900 * RATE // 1000]
    try:
        barge_in = speak(BARGE_IN, engine="espeak")
        heard = [await stt.transcribe(audio) for audio in (request, request, barge_in)]
        heard.append(await stt.transcribe(request))
    finally:
        await stt.aclose()
    expected = "do you have a table for two tomorrow evening"
    assert heard == [expected, expected, heard[2], expected]


# --- an OpenAI-compatible endpoint, served locally -----------------------------------------------


@dataclass
class Provider:
    """POST /v1/audio/transcriptions and /v1/audio/speech, recording what it was sent."""

    status: int = 200
    speech_rate: int = 22050
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def serve(self, tg: anyio.abc.TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, self._connection)

    async def _connection(self, sock: SocketStream) -> None:
        async with sock:
            conn = BufferedByteStream(sock)
            while True:
                try:
                    head = await conn.receive_until(b"\r\n\r\n", 65536)
                except (anyio.IncompleteRead, anyio.EndOfStream):
                    return
                line, *rest = head.decode().split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in rest)}
                body = await conn.receive_exactly(int(headers.get("content-length", "0")))
                path = line.split()[1]
                self.requests.append((path, headers, body))
                await sock.send(self._answer(path, body))

    def _answer(self, path: str, body: bytes) -> bytes:
        if self.status != 200:
            payload = b'{"error": {"message": "down for maintenance", "type": "server_error"}}'
            return self._response(self.status, "application/json", payload)
        if path.endswith("/audio/transcriptions"):
            return self._response(200, "application/json", b'{"text": " hello there "}')
        request = msgspec.json.decode(body)
        chunk = EspeakSynthesizer().speak(request["input"])
        return self._response(200, "audio/pcm", to_bytes(resample(chunk.samples, RATE, 22050)))

    @staticmethod
    def _response(status: int, kind: str, payload: bytes) -> bytes:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
        return head.encode() + b"\r\n" + payload


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    async with anyio.create_task_group() as tg:
        await p.serve(tg)
        yield p
        tg.cancel_scope.cancel()


async def test_openai_transcription_endpoint(provider: Provider) -> None:
    stt = OpenAITranscriber(
        OpenAITranscriptionConfig(
            base_url=f"http://127.0.0.1:{provider.port}/v1",
            model="whisper-1",
            api_key_env="",
            prompt="Sakura, Luigi's",
        )
    )
    assert await stt.transcribe(speak(REQUEST), language="en") == "hello there"
    path, headers, body = provider.requests[-1]
    assert path == "/v1/audio/transcriptions"
    assert headers["content-type"].startswith("multipart/form-data")
    assert b"RIFF" in body and b"WAVE" in body  # the audio, as a WAV file
    for part in (b"whisper-1", b"Sakura, Luigi's", b'name="language"'):
        assert part in body
    provider.status = 500
    with pytest.raises(TranscriptionError, match="HTTP 500"):
        await stt.transcribe(speak(REQUEST))
    await stt.aclose()


async def test_openai_speech_endpoint(provider: Provider) -> None:
    tts = OpenAISpeech(
        OpenAISpeechConfig(
            base_url=f"http://127.0.0.1:{provider.port}/v1",
            api_key_env="",
            voice="marin",
            sample_rate=22050,  # this server's raw PCM rate: resampled to 24 kHz
        )
    )
    text = "Sakura has tables for two."
    chunks = [c async for c in tts.synthesize(text, speed=1.25)]
    samples = np.concatenate([c.samples for c in chunks])
    direct = EspeakSynthesizer().speak(text).samples  # espeak varies by a few ms a run
    assert abs(len(samples) - len(direct)) < 0.02 * len(direct)
    assert not any(c.words for c in chunks)  # an endpoint gives no timings: they are estimated
    request = msgspec.json.decode(provider.requests[-1][2])
    assert (request["voice"], request["response_format"], request["speed"]) == (
        "marin",
        "pcm",
        1.25,
    )
    provider.status = 503
    with pytest.raises(SpeechError, match="HTTP 503"):
        _ = [c async for c in tts.synthesize(text)]
    await tts.aclose()


# --- config ---------------------------------------------------------------------------------------


def test_audio_config(monkeypatch: pytest.MonkeyPatch) -> None:
    default = config_mod.load()
    assert default.audio == AudioConfig()
    assert config_mod.build_profile(default).speech is None  # the shared embedded engines
    text = """
[audio.stt]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "gpt-4o-mini-transcribe"
api_key_env = "TEST_STT_KEY"

[profiles.default]
[[profiles.default.tiers]]
name = "only"

[profiles.local]
audio = { tts = { kind = "espeak", voice = "en-gb", wpm = 160 } }
[[profiles.local.tiers]]
name = "only"
"""
    cfg = config_mod.loads(text)
    assert isinstance(cfg.audio.stt, OpenAIStt)
    with pytest.raises(config_mod.ConfigError, match="TEST_STT_KEY"):
        config_mod.build_profile(cfg, "default")
    monkeypatch.setenv("TEST_STT_KEY", "sk-x")
    speech = config_mod.build_profile(cfg, "default").speech
    assert speech is not None and speech.stt.name == "openai" and speech.tts.name == "piper"
    local = config_mod.build_profile(cfg, "local").speech  # its own table: embedded stt
    assert local is not None and local.stt.name == "whisper" and local.vad == "silero"
    assert isinstance(local.tts, EspeakSynthesizer) and local.tts.voice == "en-gb"
    with pytest.raises(config_mod.ConfigError, match="kind"):
        config_mod.loads(text.replace('kind = "openai"', 'kind = "vosk"'))
    speech = build_speech(AudioConfig(tts=OpenAITts(api_key_env="")))
    assert isinstance(speech.tts, OpenAISpeech)
