"""``POST /audio/transcriptions`` (a WAV upload) through the ``openai`` package: OpenAI
(``gpt-4o-mini-transcribe``, ``whisper-1``), or any compatible server (faster-whisper-server,
vLLM, …)."""

from __future__ import annotations

import io
import wave
from typing import Annotated

import msgspec
import openai

from ..pcm import RATE, Samples, to_bytes
from ..tts import api_key
from . import TranscriptionError


class OpenAITranscriptionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST {base_url}/audio/transcriptions``."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini-transcribe"
    api_key_env: str = "OPENAI_API_KEY"  # "" for an endpoint that needs no key
    language: str | None = None
    prompt: str | None = None  # vocabulary hints ("Sakura, Luigi's, R-1001")
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0


def wav_bytes(samples: Samples, rate: int = RATE) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_bytes(samples))
    return out.getvalue()


class OpenAITranscriber:
    name = "openai"

    def __init__(self, config: OpenAITranscriptionConfig) -> None:
        self.config = config
        self._client = openai.AsyncOpenAI(
            api_key=api_key(config.api_key_env, "stt"),
            base_url=config.base_url, timeout=config.timeout_s, max_retries=0
        )

    async def warm(self) -> None:
        pass

    async def transcribe(
        self, samples: Samples, *, language: str | None = None, prompt: str | None = None
    ) -> str:
        c = self.config
        language = language or c.language
        prompt = prompt or c.prompt
        try:
            result = await self._client.audio.transcriptions.create(
                model=c.model,
                file=("speech.wav", wav_bytes(samples), "audio/wav"),
                language=language if language else openai.omit,
                prompt=prompt if prompt else openai.omit,
                response_format="json",
            )
        except openai.APIStatusError as exc:
            raise TranscriptionError(f"stt: HTTP {exc.status_code}") from None
        except openai.OpenAIError as exc:
            raise TranscriptionError(f"stt: {type(exc).__name__}") from None
        return str(result.text).strip()

    async def aclose(self) -> None:
        await self._client.close()
