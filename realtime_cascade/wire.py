"""The wire contract: client and server events of the Realtime-compatible protocol, as msgspec
structs.

Client events form ONE closed tagged union (``type`` is the tag), decoded by ONE long-lived
:class:`ClientDecoder`; server events are structs encoded by an :class:`EventWriter`, which
stamps each with a per-session ``event_id``. ``protocols/README.md`` is the prose spec and
``protocols/schema/`` the JSON Schema generated from these structs (``realtime-cascade schema``).

Client structs ignore fields they do not know (OpenAI clients send more than we use), except
inside our own ``cascade`` extension objects, where a typo should be an error, not a no-op.

Errors a frame can cause, each one an ``error`` event for the client::

    ProtocolError            a client frame the server cannot act on (code, message, param)
    ├── FrameError           the frame itself: binary, too large, not JSON, too many
    ├── EventError           JSON that is not a known, well-formed client event
    └── session.SessionError a well-formed event that the session's state refuses
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Literal, get_args

import msgspec

from .core.actions import DecisionRecord
from .core.trace import TurnTrace

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


# --- client events ----------------------------------------------------------------------------


class SessionParams(msgspec.Struct, omit_defaults=True):
    type: Literal["realtime"] | None = None
    model: str | None = None
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    output_modalities: list[Modality] | None = None
    max_output_tokens: MaxTokens | None = None
    audio: AudioParams | None = None
    cascade: CascadeOverrides | None = None


class MessageParam(msgspec.Struct, tag="message", tag_field="type"):
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart]
    id: str | None = None


class FunctionCallParam(msgspec.Struct, tag="function_call", tag_field="type"):
    name: str
    arguments: str
    call_id: str | None = None
    id: str | None = None


class FunctionCallOutputParam(msgspec.Struct, tag="function_call_output", tag_field="type"):
    call_id: str
    output: str
    id: str | None = None


ItemParam = MessageParam | FunctionCallParam | FunctionCallOutputParam


class ResponseParams(msgspec.Struct, omit_defaults=True):
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    output_modalities: list[Modality] | None = None
    max_output_tokens: MaxTokens | None = None
    metadata: dict[str, str] | None = None
    conversation: str | None = None  # "auto" (default) or "none": not added to the conversation
    input: list[Any] | None = None  # not supported yet: an error
    cascade: CascadeOverrides | None = None


class _ClientEvent(msgspec.Struct, tag_field="type", kw_only=True):
    event_id: str | None = None


class SessionUpdate(_ClientEvent, tag="session.update"):
    session: SessionParams


class InputAudioBufferAppend(_ClientEvent, tag="input_audio_buffer.append"):
    audio: str


class InputAudioBufferCommit(_ClientEvent, tag="input_audio_buffer.commit"):
    pass


class InputAudioBufferClear(_ClientEvent, tag="input_audio_buffer.clear"):
    pass


class ConversationItemCreate(_ClientEvent, tag="conversation.item.create"):
    item: ItemParam
    previous_item_id: str | None = None


class ConversationItemRetrieve(_ClientEvent, tag="conversation.item.retrieve"):
    item_id: str


class ConversationItemDelete(_ClientEvent, tag="conversation.item.delete"):
    item_id: str


class ConversationItemTruncate(_ClientEvent, tag="conversation.item.truncate"):
    item_id: str
    content_index: int
    audio_end_ms: int
    # Extension: characters of the text the listener heard (a client-side TTS knows this).
    # Without it, server audio maps ``audio_end_ms`` onto the transcript (text items: kept).
    text_end: int | None = None


class ResponseCreate(_ClientEvent, tag="response.create"):
    response: ResponseParams | None = None


class ResponseCancel(_ClientEvent, tag="response.cancel"):
    response_id: str | None = None


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemRetrieve
    | ConversationItemDelete
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel
)

CLIENT_EVENT_TYPES: frozenset[str] = frozenset(
    str(cls.__struct_config__.tag) for cls in get_args(ClientEvent)
)

_PATH = re.compile(r" - at `\$\.?(.*)`$")


class ClientDecoder:
    """One long-lived decoder over the client-event union; errors become typed exceptions."""

    def __init__(self) -> None:
        self._decoder: msgspec.json.Decoder[ClientEvent] = msgspec.json.Decoder(ClientEvent)
        self._lenient = msgspec.json.Decoder()

    def decode(self, data: str | bytes) -> ClientEvent:
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise self._explain(data, str(exc)) from None
        except msgspec.DecodeError as exc:
            raise FrameError("invalid_json", f"the frame is not valid JSON: {exc}") from None
        except RecursionError:
            # msgspec stops at the interpreter's recursion limit; no event nests that deep
            raise FrameError("nesting_too_deep", "the frame's JSON nests too deeply") from None

    def event_id_of(self, data: str | bytes) -> str | None:
        """The ``event_id`` of a frame that will not be processed (slow path, errors only)."""
        try:
            value = self._lenient.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return None
        event_id = value.get("event_id") if isinstance(value, dict) else None
        return event_id if isinstance(event_id, str) else None

    def _explain(self, data: str | bytes, detail: str) -> ProtocolError:
        # Only on the error path: decode leniently to tell "unknown type" from "bad field".
        try:
            value = self._lenient.decode(data)
        except RecursionError:
            return EventError("nesting_too_deep", "the frame's JSON nests too deeply")
        except msgspec.DecodeError as exc:
            # the typed decoder can refuse a value before it reaches malformed JSON after it
            # ("0\x00": "expected an object", then "trailing characters")
            return FrameError("invalid_json", f"the frame is not valid JSON: {exc}")
        if not isinstance(value, dict):
            return EventError("invalid_event", "a client event must be a JSON object")
        event_id = value.get("event_id")
        eid = event_id if isinstance(event_id, str) else None
        kind = value.get("type")
        if not isinstance(kind, str):
            return EventError(
                "invalid_event", "the event has no string 'type'", param="type", event_id=eid
            )
        if kind not in CLIENT_EVENT_TYPES:
            return EventError(
                "unknown_event", f"unknown event type {kind!r}", param="type", event_id=eid
            )
        match = _PATH.search(detail)
        param = match.group(1) or None if match else None
        return EventError("invalid_event", f"{kind}: {detail}", param=param, event_id=eid)


# --- server-side items and responses ------------------------------------------------------------

ItemStatus = Literal["completed", "incomplete", "in_progress"]


class MessageItem(msgspec.Struct, tag="message", tag_field="type"):
    id: str
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart]
    status: ItemStatus = "completed"
    object: Literal["realtime.item"] = "realtime.item"


class FunctionCallItem(msgspec.Struct, tag="function_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus = "completed"
    object: Literal["realtime.item"] = "realtime.item"


class FunctionCallOutputItem(msgspec.Struct, tag="function_call_output", tag_field="type"):
    id: str
    call_id: str
    output: str
    status: ItemStatus = "completed"
    object: Literal["realtime.item"] = "realtime.item"


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem

ResponseStatus = Literal["in_progress", "completed", "cancelled", "incomplete", "failed"]


class ErrorDetail(msgspec.Struct):
    type: str
    code: str | None = None
    message: str | None = None


class StatusDetails(msgspec.Struct, omit_defaults=True):
    type: ResponseStatus
    reason: str | None = None
    error: ErrorDetail | None = None


class InputTokenDetails(msgspec.Struct):
    text_tokens: int = 0
    audio_tokens: int = 0
    cached_tokens: int = 0


class OutputTokenDetails(msgspec.Struct):
    text_tokens: int = 0
    audio_tokens: int = 0


class Usage(msgspec.Struct):
    total_tokens: int
    input_tokens: int
    output_tokens: int
    input_token_details: InputTokenDetails
    output_token_details: OutputTokenDetails


class ResponseObject(msgspec.Struct):
    id: str
    status: ResponseStatus
    output: list[Item]
    conversation_id: str | None
    output_modalities: list[Modality]
    max_output_tokens: MaxTokens
    metadata: dict[str, str] | None = None
    status_details: StatusDetails | None = None
    usage: Usage | None = None
    object: Literal["realtime.response"] = "realtime.response"


class CascadeInfo(msgspec.Struct):
    """The ``cascade`` object of a session: its profile, tiers and effective overrides."""

    profile: str
    tiers: list[str]
    overrides: CascadeOverrides


class SessionObject(msgspec.Struct):
    id: str
    model: str
    instructions: str
    tools: list[FunctionTool]
    tool_choice: ToolChoice
    output_modalities: list[Modality]
    max_output_tokens: MaxTokens
    cascade: CascadeInfo
    audio: AudioParams | None = None  # the effective audio settings, every field filled in
    type: Literal["realtime"] = "realtime"
    object: Literal["realtime.session"] = "realtime.session"


class ErrorInfo(msgspec.Struct):
    type: str
    code: str | None
    message: str
    param: str | None = None
    event_id: str | None = None


# --- server events ----------------------------------------------------------------------------


class _ServerEvent(msgspec.Struct, tag_field="type", kw_only=True):
    event_id: str = ""  # stamped by the EventWriter


class Error(_ServerEvent, tag="error"):
    error: ErrorInfo


class SessionCreated(_ServerEvent, tag="session.created"):
    session: SessionObject


class SessionUpdated(_ServerEvent, tag="session.updated"):
    session: SessionObject


class ConversationItemAdded(_ServerEvent, tag="conversation.item.added"):
    item: Item
    previous_item_id: str | None = None


class ConversationItemDone(_ServerEvent, tag="conversation.item.done"):
    item: Item
    previous_item_id: str | None = None


class ConversationItemRetrieved(_ServerEvent, tag="conversation.item.retrieved"):
    item: Item


class ConversationItemTruncated(_ServerEvent, tag="conversation.item.truncated"):
    item_id: str
    content_index: int
    audio_end_ms: int


class ConversationItemDeleted(_ServerEvent, tag="conversation.item.deleted"):
    item_id: str


class ResponseCreated(_ServerEvent, tag="response.created"):
    response: ResponseObject


class ResponseDone(_ServerEvent, tag="response.done"):
    response: ResponseObject


class ResponseOutputItemAdded(_ServerEvent, tag="response.output_item.added"):
    response_id: str
    output_index: int
    item: Item


class ResponseOutputItemDone(_ServerEvent, tag="response.output_item.done"):
    response_id: str
    output_index: int
    item: Item


class ResponseContentPartAdded(_ServerEvent, tag="response.content_part.added"):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: OutputText | OutputAudio


class ResponseContentPartDone(_ServerEvent, tag="response.content_part.done"):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: OutputText | OutputAudio


class ResponseOutputTextDelta(_ServerEvent, tag="response.output_text.delta"):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputTextDone(_ServerEvent, tag="response.output_text.done"):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    text: str


class ResponseOutputAudioDelta(_ServerEvent, tag="response.output_audio.delta"):
    """Base64 PCM16 mono at 24 kHz, in order; sent faster than real time."""

    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputAudioDone(_ServerEvent, tag="response.output_audio.done"):
    response_id: str
    item_id: str
    output_index: int
    content_index: int


class ResponseOutputAudioTranscriptDelta(
    _ServerEvent, tag="response.output_audio_transcript.delta"
):
    """The text of the audio that follows (sent as that audio starts)."""

    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputAudioTranscriptDone(
    _ServerEvent, tag="response.output_audio_transcript.done"
):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    transcript: str


class InputAudioBufferCommitted(_ServerEvent, tag="input_audio_buffer.committed"):
    item_id: str
    previous_item_id: str | None = None


class InputAudioBufferCleared(_ServerEvent, tag="input_audio_buffer.cleared"):
    pass


class InputAudioBufferSpeechStarted(_ServerEvent, tag="input_audio_buffer.speech_started"):
    """``audio_start_ms``: audio time since the session's first sample, padding included."""

    audio_start_ms: int
    item_id: str


class InputAudioBufferSpeechStopped(_ServerEvent, tag="input_audio_buffer.speech_stopped"):
    """``audio_end_ms`` includes the silence that ended the speech."""

    audio_end_ms: int
    item_id: str


class TranscriptionUsage(msgspec.Struct):
    seconds: float
    type: Literal["duration"] = "duration"


class ConversationItemInputAudioTranscriptionCompleted(
    _ServerEvent, tag="conversation.item.input_audio_transcription.completed"
):
    item_id: str
    content_index: int
    transcript: str
    usage: TranscriptionUsage


class ConversationItemInputAudioTranscriptionFailed(
    _ServerEvent, tag="conversation.item.input_audio_transcription.failed"
):
    item_id: str
    content_index: int
    error: ErrorInfo


class ResponseFunctionCallArgumentsDelta(
    _ServerEvent, tag="response.function_call_arguments.delta"
):
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class ResponseFunctionCallArgumentsDone(_ServerEvent, tag="response.function_call_arguments.done"):
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


class CascadeDecision(_ServerEvent, tag="cascade.decision"):
    """A monitor/policy decision, as the core took it (``t_ms`` from the turn's start)."""

    response_id: str
    decision: DecisionRecord


class CascadeHandoff(_ServerEvent, tag="cascade.handoff"):
    """The stream moved to a stronger tier, continuing after ``released_chars`` characters."""

    response_id: str
    from_tier: int
    to_tier: int
    from_tier_name: str
    to_tier_name: str
    released_chars: int
    t_ms: float


class CascadeFiller(_ServerEvent, tag="cascade.filler"):
    """A phrase to cover a wait; not part of the assistant's answer or its history."""

    response_id: str
    text: str


class CascadeTrace(_ServerEvent, tag="cascade.trace"):
    """The turn's full trace, sent just before ``response.done``."""

    response_id: str
    trace: TurnTrace


ServerEvent = (
    Error
    | SessionCreated
    | SessionUpdated
    | ConversationItemAdded
    | ConversationItemDone
    | ConversationItemRetrieved
    | ConversationItemTruncated
    | ConversationItemDeleted
    | ResponseCreated
    | ResponseDone
    | ResponseOutputItemAdded
    | ResponseOutputItemDone
    | ResponseContentPartAdded
    | ResponseContentPartDone
    | ResponseOutputTextDelta
    | ResponseOutputTextDone
    | ResponseOutputAudioDelta
    | ResponseOutputAudioDone
    | ResponseOutputAudioTranscriptDelta
    | ResponseOutputAudioTranscriptDone
    | InputAudioBufferCommitted
    | InputAudioBufferCleared
    | InputAudioBufferSpeechStarted
    | InputAudioBufferSpeechStopped
    | ConversationItemInputAudioTranscriptionCompleted
    | ConversationItemInputAudioTranscriptionFailed
    | ResponseFunctionCallArgumentsDelta
    | ResponseFunctionCallArgumentsDone
    | CascadeDecision
    | CascadeHandoff
    | CascadeFiller
    | CascadeTrace
)


def error_event(exc: ProtocolError) -> Error:
    return Error(
        error=ErrorInfo(
            type=exc.error_type,
            code=exc.code,
            message=exc.message,
            param=exc.param,
            event_id=exc.event_id,
        )
    )


class EventWriter:
    """Encodes server events for one session, stamping each with the next ``event_id``."""

    def __init__(self, session_id: str) -> None:
        self._encoder = msgspec.json.Encoder()
        self._prefix = f"event_{session_id[-8:]}_"
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        return f"{self._prefix}{next(self._ids)}"

    def encode(self, event: ServerEvent) -> bytes:
        event.event_id = self.next_id()
        return self._encoder.encode(event)

    def text_delta_template(
        self, response_id: str, item_id: str, output_index: int, content_index: int
    ) -> TextDeltaTemplate:
        return TextDeltaTemplate(self, response_id, item_id, output_index, content_index)

    def encode_str(self, value: str) -> bytes:
        return self._encoder.encode(value)


class TextDeltaTemplate:
    """``response.output_text.delta`` pre-encoded up to its two varying fields.

    Deltas are the bulk of the traffic (one per released phrase); everything but the event id
    and the text is fixed for a content part, so it is encoded once.
    """

    def __init__(
        self,
        writer: EventWriter,
        response_id: str,
        item_id: str,
        output_index: int,
        content_index: int,
    ) -> None:
        enc = writer.encode_str
        self._writer = writer
        self._head = b"".join(
            (
                b'{"type":"response.output_text.delta","response_id":',
                enc(response_id),
                b',"item_id":',
                enc(item_id),
                b',"output_index":%d' % output_index,
                b',"content_index":%d,"event_id":' % content_index,
            )
        )

    def encode(self, delta: str) -> bytes:
        w = self._writer
        return b"".join(
            (self._head, w.encode_str(w.next_id()), b',"delta":', w.encode_str(delta), b"}")
        )
