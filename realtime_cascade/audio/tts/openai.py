"""``POST /audio/speech`` with ``response_format="pcm"`` through the ``openai`` package,
streamed: audio is passed on as it arrives (OpenAI, Kokoro-FastAPI, …)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
import openai

from ...providers.openai import MissingAPIKey
from ..pcm import RATE, Resampler, from_bytes
from . import SpeechChunk, SpeechError


class OpenAISpeechConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST {base_url}/audio/speech`` (OpenAI, or a compatible server: Kokoro-FastAPI, …)."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"
    api_key_env: str = "OPENAI_API_KEY"  # "" for an endpoint that needs no key
    sample_rate: int = 24_000  # of the endpoint's raw "pcm" format (OpenAI: 24 kHz)
    instructions: str | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0


def api_key(env: str, what: str) -> str:
    """The key in ``env`` (``MissingAPIKey`` when unset); a placeholder when ``env`` is ""."""
    if not env:
        return "unused"  # the SDK insists on some key; a keyless local server ignores it
    key = os.environ.get(env, "")
    if not key:
        raise MissingAPIKey(
            f"{what}: environment variable {env} is not set "
            '(set api_key_env = "" for an endpoint that needs no key)'
        )
    return key


class OpenAISpeech:
    """Streams raw PCM from an OpenAI-compatible ``/audio/speech`` endpoint."""

    name = "openai"

    def __init__(self, config: OpenAISpeechConfig) -> None:
        self.config = config
        self._client = openai.AsyncOpenAI(
            api_key=api_key(config.api_key_env, "tts"),
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
        )

    def check_voice(self, voice: str) -> None:
        pass  # the endpoint knows its voices (and refuses others itself)

    async def warm(self) -> None:
        pass

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[SpeechChunk]:
        if not text.strip():
            return
        c = self.config
        extra: dict[str, object] = {}
        if c.instructions:
            extra["instructions"] = c.instructions
        carry = b""
        resampler = Resampler(c.sample_rate, RATE) if c.sample_rate != RATE else None
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=c.model,
                voice=voice or c.voice,
                input=text,
                response_format="pcm",
                speed=speed,
                extra_body=extra or None,
            ) as response:
                async for data in response.iter_bytes():
                    data = carry + data
                    cut = len(data) - len(data) % 2
                    carry = data[cut:]
                    if cut:
                        samples = from_bytes(data[:cut])
                        if resampler is not None:
                            samples = resampler.feed(samples)
                        yield SpeechChunk(samples)
                if resampler is not None:
                    yield SpeechChunk(resampler.flush())
        except openai.APIStatusError as exc:
            raise SpeechError(f"tts: HTTP {exc.status_code}") from None
        except openai.OpenAIError as exc:
            raise SpeechError(f"tts: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._client.close()


