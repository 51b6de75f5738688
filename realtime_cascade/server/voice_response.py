"""A response spoken aloud: the :class:`~.response.ResponseBuilder` in audio mode.

Per assistant message, in the Realtime order::

    response.output_item.added, conversation.item.added,
    response.content_part.added                 part {type: "output_audio", transcript: ""}
    (response.output_audio_transcript.delta, response.output_audio.delta+)+   phrase by phrase
    response.output_audio.done, response.output_audio_transcript.done{transcript},
    response.content_part.done, response.output_item.done, conversation.item.done

Released text goes to the :class:`~.speech.SpeechTrack`; closing the item, a tool call after
it and ``response.done`` wait behind the audio queued before them. The item's ``transcript``
holds the released text while the response runs (what ``conversation.item.retrieve`` and the
next turn see) and, once the item closes, the text whose audio was sent: a barge-in drops the
released text that was never spoken. ``conversation.item.truncate(audio_end_ms)`` then cuts it
to the words the listener heard (the item's :class:`~.speech.Timeline`).

A filler (``cascade.filler``) is spoken too, as audio with no transcript: it covers a wait and
is not part of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyio.abc import TaskGroup

from .. import wire
from ..audio.codec import Encoder
from ..audio.session import AudioSession
from ..audio.speech import ItemAudio, SpeechTrack, Timelines
from ..core import Action, Filler, TurnTrace
from .conversation import Conversation, IdFactory
from .response import ResponseBuilder, Send


@dataclass
class _OpenAudio:
    item: wire.MessageItem
    part: wire.OutputAudio
    audio: ItemAudio


class VoiceResponseBuilder(ResponseBuilder):
    def __init__(
        self,
        response: wire.ResponseObject,
        writer: wire.EventWriter,
        send: Send,
        conversation: Conversation | None,
        tier_names: list[str],
        ids: IdFactory,
        *,
        track: SpeechTrack,
        timelines: Timelines,
        task_group: TaskGroup,
    ) -> None:
        super().__init__(response, writer, send, conversation, tier_names, ids)
        self.track = track
        self._timelines = timelines
        self._tg = task_group
        self._audio: _OpenAudio | None = None
        if track.on_error is None:
            track.on_error = self._speech_failed

    def created(self) -> None:
        super().created()
        self._tg.start_soon(self.track.run)

    def feed(self, action: Action) -> None:
        super().feed(action)
        if isinstance(action, Filler):
            audio = self._open_audio().audio
            self.track.flush(audio)  # what was released before the wait is said before it
            self.track.filler(audio, action.text)

    async def drained(self) -> None:
        await self.track.drained()

    def stop_output(self, reason: str) -> None:
        if self.track.pending and self.status in (None, "completed"):
            self.status, self.reason = "cancelled", reason
        self.track.cancel()

    def finish(self, trace: TurnTrace | None, error: str | None = None) -> None:
        self._close_text("completed" if self.status == "completed" else "incomplete")
        self.track.cancel()  # anything still queued runs now, so response.done comes last
        self.track.close()
        super().finish(trace, error)

    # -- the audio item

    def _open_audio(self) -> _OpenAudio:
        if self._audio is not None:
            return self._audio
        part = wire.OutputAudio("")
        item, index = self._open_message(part, wire.OutputAudio(""))
        audio = ItemAudio(item.id, index, 0, self._timelines.new(item.id))
        self._audio = _OpenAudio(item, part, audio)
        return self._audio

    def _release(self, text: str) -> None:
        open_ = self._open_audio()
        open_.part.transcript += text
        self.released += text
        self.track.say(open_.audio, text)

    def _close_text(self, status: wire.ItemStatus) -> None:
        open_ = self._audio
        if open_ is None:
            return
        self._audio = None
        self.track.flush(open_.audio)
        self.track.then(lambda: self._close_audio(open_, status))

    def _close_audio(self, open_: _OpenAudio, status: wire.ItemStatus) -> None:
        a, rid = open_.audio, self.response.id
        spoken = a.spoken
        if spoken != open_.part.transcript:
            status = "incomplete"  # cut short: keep what was said
        open_.part.transcript = spoken
        where = (rid, a.item_id, a.output_index, a.content_index)
        self._emit(wire.ResponseOutputAudioDone(*where))
        self._emit(wire.ResponseOutputAudioTranscriptDone(*where, spoken))
        self._emit(wire.ResponseContentPartDone(*where, wire.OutputAudio(spoken)))
        open_.item.status = status
        self._done_item(open_.item, a.output_index)

    def _tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._close_text("completed")
        self.track.then(lambda: ResponseBuilder._tool_call(self, call_id, name, arguments))

    def tool_output(self, call_id: str, output: str) -> None:
        self._close_text("completed")
        self.track.then(lambda: ResponseBuilder.tool_output(self, call_id, output))

    def _speech_failed(self, message: str) -> None:
        error = wire.ProtocolError("speech_failed", f"text-to-speech failed: {message}")
        error.error_type = "server_error"
        self._emit(wire.error_event(error))


def voice_builder(
    audio: AudioSession,
    response: wire.ResponseObject,
    writer: wire.EventWriter,
    send: Send,
    conversation: Conversation | None,
    tier_names: list[str],
    ids: IdFactory,
) -> ResponseBuilder:
    """The builder of a spoken response (``output_modalities: ["audio"]``), speaking with the
    session's voice settings and keeping its word timelines (for truncation)."""
    s = audio.settings
    track = SpeechTrack(
        audio.speech.tts,
        writer,
        send,
        response.id,
        voice=s.voice,
        speed=s.speed,
        encoder=Encoder(s.output_codec),
    )
    return VoiceResponseBuilder(
        response,
        writer,
        send,
        conversation,
        tier_names,
        ids,
        track=track,
        timelines=audio.timelines,
        task_group=audio.task_group,
    )
