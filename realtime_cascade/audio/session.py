"""A session's audio input: the buffer, server VAD, commits, transcription, barge-in.

:class:`AudioSession` is the part of a session (:mod:`realtime_cascade.server.session`) that
handles ``input_audio_buffer.append`` / ``.commit`` / ``.clear``. It owns the input buffer (24 kHz
PCM16; other client rates are resampled on the way in) and a :class:`~.vad.Vad`, and talks to
its session only through the callbacks it is given (no import of the session module).

Rules:

1. With ``turn_detection`` (server VAD, the default), speech start → ``speech_started`` (with
   the id the user item will get) and, if ``interrupt_response`` and a response is running,
   that response is cancelled at once (``turn_detected``): generation and speech stop. Speech
   stop → ``speech_stopped``, then the speech (from ``audio_start_ms``, padding included, to
   ``audio_end_ms``) is committed.
2. A commit (by VAD, or the client's ``input_audio_buffer.commit``: everything buffered) →
   ``input_audio_buffer.committed``, a user item with an ``input_audio`` part (transcript
   null) added to the conversation, and transcription off the event loop.
3. Transcriptions finish in commit order: ``…input_audio_transcription.completed`` fills in the
   item's transcript (the text the cascade answers), or ``….failed`` says why not.
4. After a VAD commit with ``create_response``, a completed, non-empty transcript starts a
   response, unless one is running (possible with ``interrupt_response`` false): the item is
   then in the conversation for the next response to see.
5. A commit needs at least ``MIN_COMMIT_MS`` of audio (``input_audio_buffer_commit_empty``);
   the buffer holds at most ``MAX_BUFFER_S`` (VAD: speech that long is committed as it is).
6. Bounds, so one session cannot take the CPU from the others: audio arrives at most
   ``AUDIO_RATE_X`` times real time, after a burst of ``AUDIO_BURST_S`` (more is refused with
   ``rate_limit_exceeded``); at most ``MAX_PENDING_STT_S`` of audio waits for or is in
   transcription (a commit beyond it fails its transcription at once). Decoding, resampling
   and VAD run in a worker thread, off the event loop; transcription in worker processes.
7. When the session ends, its task group is cancelled: its transcriptions stop, queued ones
   leave the queue and a running one's worker process is killed (and replaced).
8. ``semantic_vad`` (:mod:`.turn`): speech ends after a shorter silence, and a transcript that
   sounds unfinished holds the response until the user speaks again (no response for that
   part) or the hold ends (the response goes ahead).
9. Speculative transcription (``Speech.speculate``, on by default): when the VAD sees a pause
   in the speech (its first non-speech frame, :attr:`.vad.Vad.pause_ms`), the speech so far is
   transcribed at once, while the silence that may end the turn is still being timed. If that
   pause becomes the stop (no speech since: what the commit adds is the silence the VAD heard),
   the commit takes the speculative transcript instead of starting the recogniser then, so
   recognition is mostly off the critical path. If speech resumes, the speculation is dropped:
   its result is discarded, and it is left to finish rather than killed (a decode of a short
   turn costs less than restarting a worker's model). At most one speculation per session is
   in flight (a pause during an abandoned one's decode waits for it to end), only for speech
   up to ``SPECULATE_MAX_S`` long, and its audio counts against ``MAX_PENDING_STT_S``. A
   ``cascade.transcription`` event after each transcript says whether it was speculative and
   how much of the recogniser's time the turn did not wait for (``saved_ms``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import anyio
import msgspec
import numpy as np
from anyio.abc import TaskGroup

from .. import wire
from . import turn
from .codec import Codec, Decoder
from .config import Speech
from .pcm import MAX_RATE, MIN_RATE, RATE, PcmError, Samples, ms_of
from .speech import Timelines
from .stt import TranscriptionError
from .tts import SpeechError
from .vad import SpeechStarted, SpeechStopped, Vad, VadEvent, VadParams, make_vad

log = logging.getLogger(__name__)

MIN_COMMIT_MS: Final = 100
MAX_BUFFER_S: Final = 120
_IDLE_KEEP_MS: Final = 2000  # VAD idle: audio kept before the current point (padding's source)
AUDIO_RATE_X: Final = 4.0  # audio seconds a session may send per second, sustained
AUDIO_BURST_S: Final = 60.0
MAX_PENDING_STT_S: Final = 60.0
MAX_PROMPT_CHARS: Final = 1000  # Whisper reads at most 223 prompt tokens (~900 characters)
_LANGUAGE: Final = re.compile(r"[a-z]{2,3}(-[a-zA-Z0-9]{2,8})?")  # ISO 639-1 ("en"), "en-US"
SPECULATE_MAX_S: Final = 30.0  # Whisper's window: longer speech is transcribed at its commit
_CODECS: Final[dict[str, Codec]] = {
    "audio/pcm": "pcm16",
    "audio/pcmu": "pcmu",
    "audio/pcma": "pcma",
}
_FORMATS: Final[dict[Codec, str]] = {v: k for k, v in _CODECS.items()}


class AudioError(wire.ProtocolError):
    """An audio event or setting the session refuses."""


@dataclass(eq=False)
class _Speculation:
    """A transcription started at a pause, before the stop was certain (rule 9)."""

    item_id: str  # the speech (the user item to be) it transcribes
    pause_ms: int  # the VAD pause it started at: valid while that pause lasts
    language: str | None
    prompt: str | None
    counted: int  # samples it holds against MAX_PENDING_STT_S (0 once a commit took them)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    text: str | None = None
    error: Exception | None = None


# --- settings ------------------------------------------------------------------------------------


class TurnDetection(msgspec.Struct, frozen=True):
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    idle_timeout_ms: int | None = None  # accepted, not acted on
    eagerness: turn.Eagerness = "auto"  # semantic_vad

    @property
    def vad(self) -> VadParams:
        return VadParams(self.threshold, self.prefix_padding_ms, self.silence_duration_ms)


class AudioSettings(msgspec.Struct, frozen=True):
    """The session's effective audio settings (``session.audio``)."""

    input_rate: int = RATE
    input_codec: Codec = "pcm16"
    output_codec: Codec = "pcm16"
    turn_detection: TurnDetection | None = TurnDetection()
    language: str | None = None
    prompt: str | None = None
    voice: str | None = None
    speed: float = 1.0

    def merged(
        self, p: wire.AudioParams | None, check_voice: Callable[[str], None] | None = None
    ) -> AudioSettings:
        """``p`` over these settings; :class:`AudioError` (and nothing changed) if invalid.
        ``check_voice`` raises :class:`SpeechError` for a voice the synthesiser lacks."""
        if p is None:
            return self
        changes: dict[str, object] = {}
        if p.input is not None:
            i = p.input
            if i.format is not None:
                changes["input_rate"] = _rate(i.format, "session.audio.input.format")
                changes["input_codec"] = _CODECS[i.format.type]
            if i.transcription is not None:
                changes["language"] = _language(i.transcription.language)
                changes["prompt"] = _prompt(i.transcription.prompt)
            if not isinstance(i.turn_detection, msgspec.UnsetType):
                changes["turn_detection"] = _turn_detection(self.turn_detection, i.turn_detection)
        if p.output is not None:
            o = p.output
            if o.format is not None:
                codec = _CODECS[o.format.type]
                if codec == "pcm16" and _rate(o.format, "session.audio.output.format") != RATE:
                    raise AudioError(
                        "unsupported_parameter",
                        f"output audio is PCM16 at {RATE} Hz, or audio/pcmu or audio/pcma",
                        param="session.audio.output.format.rate",
                    )
                changes["output_codec"] = codec
            if o.voice is not None:
                if check_voice is not None:
                    try:
                        check_voice(o.voice)
                    except SpeechError as exc:
                        raise AudioError(
                            "invalid_value", str(exc), param="session.audio.output.voice"
                        ) from None
                changes["voice"] = o.voice
            if o.speed is not None:
                if not 0.25 <= o.speed <= 1.5:
                    raise AudioError(
                        "invalid_value",
                        "speed must be in [0.25, 1.5]",
                        param="session.audio.output.speed",
                    )
                changes["speed"] = o.speed
        return msgspec.structs.replace(self, **changes)

    def params(self, stt_name: str) -> wire.AudioParams:
        """As the session object shows them."""
        td = self.turn_detection
        return wire.AudioParams(
            input=wire.AudioInputParams(
                format=_format(self.input_codec, self.input_rate),
                transcription=wire.TranscriptionParams(stt_name, self.language, self.prompt),
                turn_detection=None
                if td is None
                else wire.TurnDetectionParams(
                    type=td.type,
                    threshold=td.threshold,
                    prefix_padding_ms=td.prefix_padding_ms,
                    silence_duration_ms=td.silence_duration_ms,
                    idle_timeout_ms=td.idle_timeout_ms,
                    create_response=td.create_response,
                    interrupt_response=td.interrupt_response,
                    eagerness=td.eagerness if td.type == "semantic_vad" else None,
                ),
            ),
            output=wire.AudioOutputParams(
                format=_format(self.output_codec, RATE), voice=self.voice, speed=self.speed
            ),
        )


def _language(language: str | None) -> str | None:
    if language is None or _LANGUAGE.fullmatch(language):
        return language
    raise AudioError(
        "invalid_value",
        "language must be an ISO 639-1 code such as 'en' (optionally with a region: 'en-US')",
        param="session.audio.input.transcription.language",
    )


def _prompt(prompt: str | None) -> str | None:
    """The recogniser's prompt (vocabulary and style hints): bounded, plain text; '' is none."""
    if not prompt:
        return None
    where = "session.audio.input.transcription.prompt"
    if len(prompt) > MAX_PROMPT_CHARS:
        raise AudioError(
            "invalid_value", f"prompt is at most {MAX_PROMPT_CHARS} characters", param=where
        )
    if any(not (c.isprintable() or c in "\n\t") for c in prompt):
        raise AudioError("invalid_value", "prompt must be plain text", param=where)
    return prompt


def _format(codec: Codec, rate: int) -> wire.AudioFormat:
    return wire.AudioFormat(_FORMATS[codec], rate if codec == "pcm16" else 8000)  # type: ignore[arg-type]


def _rate(f: wire.AudioFormat, param: str) -> int:
    if f.type != "audio/pcm":  # G.711: 8 kHz, always
        if f.rate not in (None, 8000):
            raise AudioError(
                "invalid_value", f"{f.type} is 8000 Hz", param=f"{param}.rate"
            )
        return 8000
    rate = RATE if f.rate is None else f.rate
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            "invalid_value", f"rate must be in [{MIN_RATE}, {MAX_RATE}]", param=f"{param}.rate"
        )
    return rate


def _turn_detection(
    current: TurnDetection | None, p: wire.TurnDetectionParams | None
) -> TurnDetection | None:
    if p is None:
        return None
    base = current or TurnDetection()
    where = "session.audio.input.turn_detection"
    changes: dict[str, object] = {}
    if p.threshold is not None:
        if not 0.0 <= p.threshold <= 1.0:
            raise AudioError(
                "invalid_value", "threshold must be in [0, 1]", param=f"{where}.threshold"
            )
        changes["threshold"] = p.threshold
    for name in ("prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
        value = getattr(p, name)
        if value is not None:
            if not 0 <= value <= 10_000:
                raise AudioError(
                    "invalid_value", f"{name} must be in [0, 10000]", param=f"{where}.{name}"
                )
            changes[name] = value
    if p.type is not None:
        changes["type"] = p.type
    if p.eagerness is not None:
        changes["eagerness"] = p.eagerness
    if p.type == "semantic_vad" and p.silence_duration_ms is None:
        changes["silence_duration_ms"] = turn.SILENCE_MS[p.eagerness or "auto"]
    if p.create_response is not None:
        changes["create_response"] = p.create_response
    if p.interrupt_response is not None:
        changes["interrupt_response"] = p.interrupt_response
    return msgspec.structs.replace(base, **changes)


# --- the input side ------------------------------------------------------------------------------


class ConversationLike(Protocol):
    @property
    def last_id(self) -> str | None: ...

    def add(self, item: wire.Item, previous_item_id: str | None = None) -> str | None: ...


class AudioSession:
    """The audio input of one session (see the module docstring)."""

    def __init__(
        self,
        speech: Speech,
        *,
        emit: Callable[[wire.ServerEvent], None],
        conversation: ConversationLike,
        responding: Callable[[], bool],
        cancel_response: Callable[[str], Awaitable[None]],
        create_response: Callable[[], Awaitable[None]],
        task_group: TaskGroup,
        ids: Callable[[str], str],
    ) -> None:
        self.speech = speech
        self.settings = AudioSettings()
        self.timelines = Timelines()
        self._emit = emit
        self._conversation = conversation
        self._responding = responding
        self._cancel = cancel_response
        self._create = create_response
        self._tg = task_group
        self._ids = ids
        # made by the first append, in its thread: loading Silero's model takes ~10-60 ms
        self._vad: Vad | None = None
        self._decoder = Decoder()
        self._chunks: list[Samples] = []
        self._buffered = 0  # samples in _chunks
        self._base = 0  # session sample index of the buffer's first sample
        self._received = 0  # samples received this session (the audio clock)
        self._speech_item: str | None = None  # the id the user item will get
        self._speech_start = 0  # session sample index where the current speech starts
        self._order = anyio.Lock()  # transcriptions finish in commit order
        self._warmed = False
        self._pending_stt = 0  # samples waiting for or in transcription
        self._speeches = 0  # speech starts so far (a held turn checks whether one came)
        self._audio_tokens = AUDIO_BURST_S  # the audio rate budget, in audio seconds
        self._audio_at = time.monotonic()
        self._spec: _Speculation | None = None  # the current pause's speculation (rule 9)
        self._spec_running: _Speculation | None = None  # the one in flight, current or dropped

    # -- settings

    def configure(self, settings: AudioSettings) -> None:
        old, self.settings = self.settings, settings
        if (settings.input_rate, settings.input_codec) != (old.input_rate, old.input_codec):
            self._decoder = Decoder(settings.input_codec, settings.input_rate)
        td = settings.turn_detection
        vad = self._vad
        if td is not None and vad is not None:
            vad.configure(td.vad)
        if old.turn_detection is not None and td is None and vad is not None and vad.speaking:
            vad.reset()
            self._speech_item = None
        if td is None:
            self._drop_speculation()

    # -- events

    def _charge(self, n_bytes: int) -> None:
        """Rule 6: spend ``n_bytes`` of input from the audio rate budget, or refuse them."""
        d = self._decoder
        seconds = n_bytes / ((2 if d.codec == "pcm16" else 1) * d.rate)
        now = time.monotonic()
        self._audio_tokens = min(
            AUDIO_BURST_S, self._audio_tokens + (now - self._audio_at) * AUDIO_RATE_X
        )
        self._audio_at = now
        if seconds > self._audio_tokens:
            raise AudioError(
                "rate_limit_exceeded",
                f"audio is arriving faster than {AUDIO_RATE_X:g}x real time: "
                "this append was dropped",
            )
        self._audio_tokens -= seconds

    def _decode(self, raw: bytes, vad: bool) -> tuple[Samples, list[VadEvent]]:
        """In a worker thread: bytes → 24 kHz samples → VAD events."""
        samples = self._decoder.samples(raw)
        if self._vad is None:
            td = self.settings.turn_detection
            self._vad = make_vad(self.speech.vad, td.vad if td else None)
        return samples, (self._vad.feed(samples) if vad else [])

    async def append(self, audio: str) -> None:
        try:
            raw = self._decoder.raw(audio)
            if self._decoder.codec == "pcm16" and len(raw) % 2:
                raise PcmError("PCM16 audio must have an even number of bytes")
        except PcmError as exc:
            raise AudioError("invalid_audio", str(exc), param="audio") from None
        self._charge(len(raw))
        if not self._warmed:
            self._warmed = True
            self._tg.start_soon(self._warm)
        td = self.settings.turn_detection
        # decoding, resampling and the VAD's network are CPU work: off the event loop (the
        # session handles its events one at a time, so appends stay in order)
        samples, events = await anyio.to_thread.run_sync(self._decode, raw, td is not None)
        full = self._buffered + len(samples) > MAX_BUFFER_S * RATE
        if full and self.settings.turn_detection is None:
            raise AudioError(
                "input_audio_buffer_full",
                f"the input audio buffer holds at most {MAX_BUFFER_S} s: commit or clear it",
            )
        self._chunks.append(samples)
        self._buffered += len(samples)
        self._received += len(samples)
        if td is None:
            return
        for event in events:
            match event:
                case SpeechStarted():
                    await self._started(event, td)
                case SpeechStopped():
                    self._stopped(event)
        vad = self._vad
        assert vad is not None  # made by _decode
        if vad.speaking and self._received - self._speech_start > MAX_BUFFER_S * RATE:
            vad.reset()
            self._stopped(SpeechStopped(self._ms(self._received), self._ms(self._received)))
        elif not vad.speaking:
            self._trim(self._received - _IDLE_KEEP_MS * RATE // 1000)
        if self.speech.speculate:
            self._speculate(vad.pause_ms)

    def commit(self) -> None:
        """The client's commit: everything buffered becomes a user item."""
        tail = self._decoder.flush()
        if len(tail):
            self._chunks.append(tail)
            self._buffered += len(tail)
            self._received += len(tail)
        if ms_of(self._buffered) < MIN_COMMIT_MS:
            raise AudioError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, "
                f"got {ms_of(self._buffered):.0f} ms",
            )
        item_id = self._speech_item or self._ids("item")
        self._speech_item = None
        self._drop_speculation()
        if self._vad is not None:
            self._vad.reset(self._ms(self._received))
        self._commit(item_id, self._base, self._received, respond=False)

    def clear(self) -> None:
        self._chunks, self._buffered, self._base = [], 0, self._received
        self._speech_item = None
        self._drop_speculation()
        if self._vad is not None:
            self._vad.reset(self._ms(self._received))
        self._emit(wire.InputAudioBufferCleared())

    def heard(self, item_id: str, audio_end_ms: int) -> int | None:
        """Characters of an audio item's transcript heard by ``audio_end_ms`` (None: no audio)."""
        timeline = self.timelines.get(item_id)
        if timeline is None:
            return None
        if audio_end_ms < 0 or audio_end_ms > timeline.duration_ms + 1:
            raise AudioError(
                "invalid_value",
                f"audio_end_ms must be in [0, {timeline.duration_ms:.0f}] (the audio sent)",
                param="audio_end_ms",
            )
        return timeline.heard(audio_end_ms)

    @property
    def task_group(self) -> TaskGroup:
        """The session's task group (spoken responses queue their synthesis in it)."""
        return self._tg

    # -- internals

    def _ms(self, sample: int) -> int:
        return sample * 1000 // RATE

    async def _warm(self) -> None:
        """Load the recogniser and the synthesiser now, so the first turn does not wait."""
        for engine in (self.speech.stt, self.speech.tts):
            try:
                await engine.warm()
            except Exception:  # the first job will report it
                log.debug("%s warm-up failed", engine.name, exc_info=True)

    async def _started(self, event: SpeechStarted, td: TurnDetection) -> None:
        self._speeches += 1
        self._speech_item = self._ids("item")
        self._speech_start = max(self._base, event.audio_start_ms * RATE // 1000)
        self._emit(
            wire.InputAudioBufferSpeechStarted(
                audio_start_ms=event.audio_start_ms, item_id=self._speech_item
            )
        )
        if td.interrupt_response and self._responding():
            await self._cancel("turn_detected")

    def _stopped(self, event: SpeechStopped) -> None:
        item_id = self._speech_item or self._ids("item")
        self._speech_item = None
        self._emit(
            wire.InputAudioBufferSpeechStopped(audio_end_ms=event.audio_end_ms, item_id=item_id)
        )
        end = min(self._received, event.audio_end_ms * RATE // 1000)
        td = self.settings.turn_detection
        respond = td is not None and td.create_response
        spec, self._spec = self._spec, None
        s = self.settings
        if spec is not None and not (
            spec.item_id == item_id
            and spec.pause_ms == event.speech_end_ms  # no speech since it started
            and (spec.language, spec.prompt) == (s.language, s.prompt)
        ):
            log.debug("speculative transcription for %s dropped at its stop", spec.item_id)
            spec = None
        self._commit(item_id, self._speech_start, end, respond=respond, spec=spec)

    # -- speculative transcription (rule 9)

    def _speculate(self, pause_ms: int | None) -> None:
        """After an append: start a speculation at a new pause, drop one whose pause ended."""
        spec = self._spec
        item_id = self._speech_item
        if spec is not None and (spec.pause_ms != pause_ms or spec.item_id != item_id):
            self._drop_speculation()  # the user went on: that transcript would miss it
            spec = None
        if pause_ms is None or item_id is None or spec is not None:
            return
        if self._spec_running is not None:
            return  # bounded: a dropped one still decoding; the next append tries again
        start, end = self._speech_start, self._received
        n = end - start
        too_long = n > SPECULATE_MAX_S * RATE or self._pending_stt + n > MAX_PENDING_STT_S * RATE
        if ms_of(n) < MIN_COMMIT_MS or too_long:
            return
        samples = self._peek(start, end)
        s = self.settings
        self._spec = self._spec_running = spec = _Speculation(
            item_id, pause_ms, s.language, s.prompt, counted=n
        )
        self._pending_stt += n
        self._tg.start_soon(self._run_speculation, spec, samples)

    def _drop_speculation(self) -> None:
        if self._spec is not None:
            log.debug("speculative transcription for %s dropped", self._spec.item_id)
            self._spec = None

    async def _run_speculation(self, spec: _Speculation, samples: Samples) -> None:
        try:
            spec.text = await self.speech.stt.transcribe(
                samples, language=spec.language, prompt=spec.prompt
            )
        except Exception as exc:  # the commit that takes it reports it (see _transcribed)
            spec.error = exc
        finally:
            spec.finished = time.monotonic()
            self._pending_stt -= spec.counted
            spec.counted = 0
            if self._spec_running is spec:
                self._spec_running = None
            spec.done.set()

    def _peek(self, start: int, end: int) -> Samples:
        """A copy of samples [start, end) of the session's audio; the buffer is unchanged."""
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        lo, hi = max(0, start - self._base), max(0, end - self._base)
        taken: Samples = audio[lo:hi].copy()
        return taken

    def _take(self, start: int, end: int) -> Samples:
        """Samples [start, end) of the session's audio; the buffer keeps what follows ``end``."""
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        lo, hi = max(0, start - self._base), max(0, end - self._base)
        taken = audio[lo:hi]
        rest = audio[hi:]
        self._chunks = [rest] if len(rest) else []
        self._buffered = len(rest)
        self._base = max(self._base, end)
        return taken

    def _trim(self, keep_from: int) -> None:
        if keep_from <= self._base or self._buffered < 2 * _IDLE_KEEP_MS * RATE // 1000:
            return
        audio = np.concatenate(self._chunks)
        cut = keep_from - self._base
        self._chunks = [audio[cut:]]
        self._buffered = len(audio) - cut
        self._base = keep_from

    def _commit(
        self,
        item_id: str,
        start: int,
        end: int,
        *,
        respond: bool,
        spec: _Speculation | None = None,
    ) -> None:
        samples = self._take(start, end)
        committed = time.monotonic()
        if spec is not None:  # the commit's own count replaces the speculation's
            self._pending_stt -= spec.counted
            spec.counted = 0
        if self._pending_stt + len(samples) > MAX_PENDING_STT_S * RATE:
            # rule 6: the item is still added (the audio was committed), untranscribed
            respond = False
            over = True
        else:
            over = False
            self._pending_stt += len(samples)
        previous = self._conversation.last_id
        self._emit(wire.InputAudioBufferCommitted(item_id=item_id, previous_item_id=previous))
        part = wire.InputAudio()
        item = wire.MessageItem(item_id, "user", [part])
        after = self._conversation.add(item)
        self._emit(wire.ConversationItemAdded(item=item, previous_item_id=after))
        self._emit(wire.ConversationItemDone(item=item, previous_item_id=after))
        if over:
            self._failed(
                item_id,
                "rate_limit_exceeded",
                f"more than {MAX_PENDING_STT_S:g} s of this session's audio is waiting for "
                "transcription: this item was not transcribed",
            )
            return
        self._tg.start_soon(self._transcribe, item_id, part, samples, respond, spec, committed)

    async def _transcribe(
        self,
        item_id: str,
        part: wire.InputAudio,
        samples: Samples,
        respond: bool,
        spec: _Speculation | None,
        committed: float,
    ) -> None:
        try:
            await self._transcribe_in_order(item_id, part, samples, respond, spec, committed)
        finally:
            self._pending_stt -= len(samples)

    async def _recognise(
        self, item_id: str, samples: Samples, spec: _Speculation | None, committed: float
    ) -> tuple[str, wire.CascadeTranscription]:
        """The transcript (the speculation's if it has one), and how it was made."""
        if spec is not None:
            await spec.done.wait()
            if spec.error is not None:
                raise spec.error
            if spec.text is not None and spec.finished is not None:
                took = spec.finished - spec.started
                waited = max(0.0, spec.finished - committed)
                return spec.text, wire.CascadeTranscription(
                    item_id=item_id,
                    speculative=True,
                    stt_ms=round(took * 1000, 1),
                    saved_ms=round((took - waited) * 1000, 1),
                )
        s = self.settings
        t = time.monotonic()
        text = await self.speech.stt.transcribe(samples, language=s.language, prompt=s.prompt)
        took = time.monotonic() - t
        return text, wire.CascadeTranscription(
            item_id=item_id, speculative=False, stt_ms=round(took * 1000, 1), saved_ms=0.0
        )

    async def _transcribe_in_order(
        self,
        item_id: str,
        part: wire.InputAudio,
        samples: Samples,
        respond: bool,
        spec: _Speculation | None,
        committed: float,
    ) -> None:
        s = self.settings
        speeches = self._speeches
        async with self._order:
            try:
                text, how = await self._recognise(item_id, samples, spec, committed)
            except TranscriptionError as exc:
                self._failed(item_id, exc.code, exc.message)
                return
            except Exception as exc:  # a bug in a recogniser must cost one item, not the session
                log.exception("transcription of %s failed", item_id)
                why = f"internal error: {type(exc).__name__}"
                self._failed(item_id, "transcription_failed", why)
                return
            part.transcript = text
            self._emit(
                wire.ConversationItemInputAudioTranscriptionCompleted(
                    item_id=item_id,
                    content_index=0,
                    transcript=text,
                    usage=wire.TranscriptionUsage(seconds=round(ms_of(len(samples)) / 1000, 3)),
                )
            )
            self._emit(how)
            if not (respond and text and not self._responding()):
                return
        td = s.turn_detection
        if td is not None and td.type == "semantic_vad" and turn.unfinished(text):
            await anyio.sleep(turn.HOLD_MS[td.eagerness] / 1000)  # rule 8
            if self._speeches != speeches or self._responding():
                return  # the user went on: the response to what follows answers both
        try:
            await self._create()
        except wire.ProtocolError as exc:  # e.g. a key's policy refused it
            self._emit(wire.error_event(exc))

    def _failed(self, item_id: str, code: str, message: str) -> None:
        self._emit(
            wire.ConversationItemInputAudioTranscriptionFailed(
                item_id=item_id,
                content_index=0,
                error=wire.ErrorInfo(type="transcription_error", code=code, message=message),
            )
        )
