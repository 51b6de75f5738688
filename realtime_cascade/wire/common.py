"""What client and server events share: the error tree and the pieces both carry."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# --- errors ---------------------------------------------------------------------------------


class ProtocolError(Exception):
    """A client frame the server cannot act on; the session stays up."""

    error_type: str = "invalid_request_error"

    def __init__(
        self, code: str, message: str, *, param: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.event_id = event_id


class FrameError(ProtocolError):
    """The frame itself is unusable (binary, oversize, not JSON, over the rate limit)."""


class EventError(ProtocolError):
    """Valid JSON that is not a known, well-formed client event."""


# --- shared pieces ----------------------------------------------------------------------------


class InputText(msgspec.Struct, tag="input_text", tag_field="type"):
    text: str


class InputAudio(msgspec.Struct, tag="input_audio", tag_field="type"):
    audio: str | None = None
    transcript: str | None = None


class OutputText(msgspec.Struct, tag="output_text", tag_field="type"):
    text: str


class OutputAudio(msgspec.Struct, tag="output_audio", tag_field="type", omit_defaults=True):
    """Spoken output: ``transcript`` is the text whose audio was sent (audio is not kept)."""

    transcript: str
    audio: str | None = None


ContentPart = InputText | InputAudio | OutputText | OutputAudio


def text_of(part: ContentPart) -> str:
    """The words of a content part: its text, or its audio's transcript ("" if none yet)."""
    match part:
        case InputText(text=text) | OutputText(text=text):
            return text
        case InputAudio(transcript=transcript) | OutputAudio(transcript=transcript):
            return transcript or ""


class FunctionTool(msgspec.Struct, omit_defaults=True):
    name: str
    type: Literal["function"] = "function"
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolChoiceFunction(msgspec.Struct):
    type: Literal["function"]
    name: str


ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunction
MaxTokens = int | Literal["inf"]
Modality = Literal["text", "audio"]


class PolicyOverrides(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Per-session (or per-response) overrides of the profile's escalation policy."""

    preempt_below: float | None = None
    hedge_below: float | None = None
    hedging: bool | None = None
    w_quality: float | None = None
    w_cost: float | None = None
    w_latency: float | None = None


class BudgetOverrides(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    first_text_ms: float | None = None
    end_of_turn_ms: float | None = None
    turn_cap_usd: float | None = None
    session_cap_usd: float | None = None
    fillers: list[str] | None = None


class AudioFormat(msgspec.Struct, omit_defaults=True):
    """Only ``audio/pcm`` (PCM16 mono, little-endian) is supported; ``rate`` 8000..48000."""

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: int | None = None


class TranscriptionParams(msgspec.Struct, omit_defaults=True):
    model: str | None = None  # informational: the profile's recogniser transcribes
    language: str | None = None
    prompt: str | None = None


class TurnDetectionParams(msgspec.Struct, omit_defaults=True):
    type: Literal["server_vad", "semantic_vad"] | None = None  # None: server_vad
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    idle_timeout_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    eagerness: Literal["low", "medium", "high", "auto"] | None = None  # semantic_vad


class AudioInputParams(msgspec.Struct, omit_defaults=True):
    format: AudioFormat | None = None
    transcription: TranscriptionParams | None = None
    # null turns server VAD off (the client commits); omitted keeps the current setting
    turn_detection: TurnDetectionParams | msgspec.UnsetType | None = msgspec.UNSET


class AudioOutputParams(msgspec.Struct, omit_defaults=True):
    format: AudioFormat | None = None
    voice: str | None = None
    speed: float | None = None


class AudioParams(msgspec.Struct, omit_defaults=True):
    input: AudioInputParams | None = None
    output: AudioOutputParams | None = None


class CascadeOverrides(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The ``cascade`` extension object of ``session.update`` and ``response.create``.

    Tiers are named (as in the profile) or indexed from 0, the lightest.
    """

    first_tier: int | str | None = None
    max_tier: int | str | None = None
    policy: PolicyOverrides | None = None
    budgets: BudgetOverrides | None = None
