"""Client events: ONE closed tagged union, decoded by ONE long-lived :class:`ClientDecoder`."""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

import msgspec

from .common import (
    AudioParams,
    CascadeOverrides,
    ContentPart,
    EventError,
    FrameError,
    FunctionTool,
    MaxTokens,
    Modality,
    ProtocolError,
    ToolChoice,
)

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
