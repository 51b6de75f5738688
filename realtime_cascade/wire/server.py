"""Server events: structs encoded by an :class:`EventWriter`, which stamps each with a per-session
``event_id``."""

from __future__ import annotations

import itertools
from typing import Literal

import msgspec

from ..core.actions import DecisionRecord
from ..core.trace import TurnTrace
from .common import (
    AudioParams,
    CascadeOverrides,
    ContentPart,
    FunctionTool,
    MaxTokens,
    Modality,
    OutputAudio,
    OutputText,
    ProtocolError,
    ToolChoice,
)

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


class ResponseOutputAudioTranscriptDone(_ServerEvent, tag="response.output_audio_transcript.done"):
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


class CascadeTranscription(_ServerEvent, tag="cascade.transcription"):
    """How a user audio item's transcript was made; sent after its ``…transcription.completed``.

    ``speculative``: the recogniser started at a pause in the speech, before the turn ended,
    and the commit took its result. ``stt_ms``: the recogniser's time; ``saved_ms``: the part
    of it done before the commit (the turn did not wait for it; 0 when not speculative)."""

    item_id: str
    speculative: bool
    stt_ms: float
    saved_ms: float


class CascadeTrace(_ServerEvent, tag="cascade.trace"):
    """The turn's full trace, sent just before ``response.done``."""

    response_id: str
    trace: TurnTrace


class CascadeToolResult(_ServerEvent, tag="cascade.tool_result"):
    """A server-side tool (the profile's agent) ran: its ``function_call_output`` item follows
    in the same response. ``status``: ``ok``, ``error`` (bad arguments, the tool raised),
    ``timeout``, or ``not_run`` (the agent's ``max_tool_calls`` stopped it)."""

    response_id: str
    call_id: str
    name: str
    status: Literal["ok", "error", "timeout", "not_run"]
    duration_ms: float
    tier_name: str  # the tier that made the call
    step: int  # the cascade step of the response that made it (0: the first)


class CascadeAgentDecision(_ServerEvent, tag="cascade.agent_decision"):
    """The agent's tool loop stopped the response and said why (then a sentence of its own)."""

    response_id: str
    kind: Literal["tool_cap", "session_budget", "turn_failed"]
    reason: str
    t_ms: float


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
    | CascadeTranscription
    | CascadeToolResult
    | CascadeAgentDecision
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

    Deltas are the bulk of the traffic (one per released phrase); everything but the text and
    the event id is fixed for a content part, so it is encoded once, and a delta is the text
    spliced between fixed bytes. The bytes are exactly what :meth:`EventWriter.encode` gives
    for the same struct (same key order, same escaping: the text goes through the same
    encoder), and it takes the writer's next event id.
    """

    __slots__ = ("_head", "_id_head", "_ids", "_str")

    def __init__(
        self,
        writer: EventWriter,
        response_id: str,
        item_id: str,
        output_index: int,
        content_index: int,
    ) -> None:
        enc = writer.encode_str
        self._str = enc
        self._ids = writer._ids  # the writer's counter: ids stay one sequence
        self._head = b"".join(
            (
                b'{"type":"response.output_text.delta","response_id":',
                enc(response_id),
                b',"item_id":',
                enc(item_id),
                b',"output_index":%d' % output_index,
                b',"content_index":%d,"delta":' % content_index,
            )
        )
        # ``"event_…_`` as the encoder writes it (without its closing quote): the number that
        # follows is digits, which JSON never escapes.
        self._id_head = b',"event_id":' + enc(writer._prefix)[:-1]

    def encode(self, delta: str) -> bytes:
        return b"%b%b%b%d\"}" % (self._head, self._str(delta), self._id_head, next(self._ids))
