"""Which speech-to-text and text-to-speech a profile uses: ``[audio]`` or ``[profiles.X.audio]``.

The embedded default needs no table at all (pocketsphinx in, espeak-ng out, offline)::

    [audio.stt]                      # every profile; [profiles.X.audio.stt] for one profile
    kind = "openai"                  # or "pocketsphinx" (the default)
    base_url = "https://api.openai.com/v1"
    model = "gpt-4o-mini-transcribe"
    api_key_env = "OPENAI_API_KEY"

    [audio.tts]
    kind = "openai"                  # or "espeak" (the default)
    model = "gpt-4o-mini-tts"
    voice = "alloy"

A :class:`Speech` holds the two built engines; it is created with the profile and loads its
models lazily (the first audio a session appends warms the recogniser in the background).
"""

from __future__ import annotations

import functools

import msgspec

from .stt import (
    OpenAITranscriber,
    OpenAITranscriptionConfig,
    PocketsphinxConfig,
    PocketsphinxTranscriber,
    Transcriber,
)
from .tts import EspeakSynthesizer, OpenAISpeech, OpenAISpeechConfig, Synthesizer


class PocketsphinxStt(
    PocketsphinxConfig,
    frozen=True,
    forbid_unknown_fields=True,
    tag="pocketsphinx",
    tag_field="kind",
):
    pass


class OpenAIStt(
    OpenAITranscriptionConfig,
    frozen=True,
    forbid_unknown_fields=True,
    tag="openai",
    tag_field="kind",
):
    pass


class EspeakTts(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="espeak", tag_field="kind"
):
    voice: str = "en-us"  # an espeak-ng voice ("en-us", "en-gb", "en-us+f3", …)
    wpm: int = 175  # words a minute at speed 1.0


class OpenAITts(
    OpenAISpeechConfig, frozen=True, forbid_unknown_fields=True, tag="openai", tag_field="kind"
):
    pass


SttConfig = PocketsphinxStt | OpenAIStt
TtsConfig = EspeakTts | OpenAITts


class AudioConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stt: SttConfig = PocketsphinxStt()
    tts: TtsConfig = EspeakTts()


class Speech:
    """A profile's recogniser and synthesiser."""

    def __init__(self, stt: Transcriber, tts: Synthesizer) -> None:
        self.stt = stt
        self.tts = tts

    async def aclose(self) -> None:
        await self.stt.aclose()
        await self.tts.aclose()


def build_speech(config: AudioConfig) -> Speech:
    """The engines ``config`` names; ``MissingAPIKey`` when an endpoint's key is unset."""
    stt: Transcriber
    match config.stt:
        case PocketsphinxStt() as ps:
            fields = {f: getattr(ps, f) for f in PocketsphinxConfig.__struct_fields__}
            stt = PocketsphinxTranscriber(PocketsphinxConfig(**fields))
        case OpenAIStt() as oa:
            fields = {f: getattr(oa, f) for f in OpenAITranscriptionConfig.__struct_fields__}
            stt = OpenAITranscriber(OpenAITranscriptionConfig(**fields))
    tts: Synthesizer
    match config.tts:
        case EspeakTts(voice=voice, wpm=wpm):
            tts = EspeakSynthesizer(voice, wpm)
        case OpenAITts() as ot:
            fields = {f: getattr(ot, f) for f in OpenAISpeechConfig.__struct_fields__}
            tts = OpenAISpeech(OpenAISpeechConfig(**fields))
    return Speech(stt, tts)


@functools.cache
def embedded() -> Speech:
    """The embedded engines, shared by every profile built without a ``speech`` (tests, code):
    a recogniser's decoders cost ~0.25 s to load, so they are loaded once per process."""
    return build_speech(AudioConfig())
