"""One response's spoken output: released text in, ``response.output_audio*`` events out.

The speech commit gate releases text phrase by phrase; :class:`SpeechTrack` turns each phrase
into audio as soon as it is released, in order, in its own task (synthesis runs off the event
loop), so audio starts with the first released phrase. It is also the response's *sequencer*:
anything that must follow the audio queued so far (closing the audio item, a tool call,
``response.done``) is queued behind it with :meth:`SpeechTrack.then`.

Rules:

1. Text is spoken in the order released. Pieces are joined into phrases before synthesis: a
   phrase ends at punctuation (``. , ; : ! ?`` then a space or the end), at ``MAX_CHARS`` (at
   a word boundary), or when the item closes; the response's first phrase may also end after
   ``FIRST_WORDS`` whole words, so a tier that releases token by token starts speaking at once.
2. A phrase's ``response.output_audio_transcript.delta`` goes out just before its first audio,
   so the transcript sent is always the text whose audio was sent (:attr:`ItemAudio.spoken`).
3. :meth:`SpeechTrack.cancel` (barge-in) drops every phrase not yet spoken and stops the one
   being synthesised; what was queued with ``then`` still runs, at once, in order.
4. Each item keeps a :class:`Timeline`: which characters were spoken at which audio time, from
   the synthesiser's word timings (or an even spread over the phrase when it gives none), so
   ``conversation.item.truncate(audio_end_ms)`` keeps exactly the words heard to their end.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import anyio
import numpy as np

from .. import wire
from .codec import Encoder
from .pcm import RATE, Samples, ms_of
from .tts import SpeechError, Synthesizer, Word

log = logging.getLogger(__name__)

FIRST_WORDS: Final = 3
MAX_CHARS: Final = 120
DELTA_MS: Final = 200  # audio per response.output_audio.delta
_BOUNDARY: Final = frozenset(".!?,;:")
_QUIET: Final = 300  # |sample| below this, at a phrase's end, is its trailing pause

Send = Callable[[bytes], None]


# --- phrases -------------------------------------------------------------------------------------


def phrase_cut(text: str, *, first: bool) -> int:
    """Where the longest speakable phrase of ``text`` ends (0: wait for more)."""
    best = 0
    for i, ch in enumerate(text):
        if ch in _BOUNDARY and (i + 1 == len(text) or text[i + 1].isspace()):
            best = i + 1
    if best and text[:best].strip():
        return best
    words_end = text.rstrip().rfind(" ") if not text[-1:].isspace() else len(text.rstrip())
    if words_end <= 0:
        return 0
    whole = text[:words_end]
    if first and len(whole.split()) >= FIRST_WORDS:
        return words_end
    if len(text) >= MAX_CHARS:
        return words_end
    return 0


# --- what was heard -----------------------------------------------------------------------------


class Timeline:
    """An audio item's transcript against its audio: ``heard(ms)`` → characters heard."""

    def __init__(self) -> None:
        self.duration_ms = 0.0  # audio sent so far
        self._words: list[tuple[int, float]] = []  # (transcript end offset, audio end ms)

    def add(
        self,
        text: str,
        offset: int,
        start_ms: float,
        samples: Samples,
        words: tuple[Word, ...],
    ) -> None:
        """A phrase: ``text`` at ``offset`` in the transcript, its audio from ``start_ms``."""
        duration = ms_of(len(samples))
        loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= _QUIET)
        speech_end = ms_of(int(loud[-1]) + 1) if len(loud) else 0.0
        if not words:
            words = _spread(text, speech_end)
        for i, w in enumerate(words):
            end_ms = words[i + 1].ms if i + 1 < len(words) else speech_end
            end = w.end
            while end < len(text) and not text[end].isspace():
                end += 1  # the punctuation after a word goes with it
            self._words.append((offset + end, start_ms + max(w.ms, min(end_ms, duration))))

    def heard(self, audio_end_ms: float) -> int:
        """Characters of the transcript whose words were played to their end."""
        chars = 0
        for end, end_ms in self._words:
            if end_ms > audio_end_ms:
                break
            chars = end
        return chars


def word_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of non-space characters in ``text``."""
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        j = i
        while j < len(text) and not text[j].isspace():
            j += 1
        if j > i:
            spans.append((i, j))
        i = j
    return spans


def _spread(text: str, duration_ms: float) -> tuple[Word, ...]:
    """Word timings for a phrase whose synthesiser gave none: in proportion to characters."""
    spans = word_spans(text)
    total = sum(e - s for s, e in spans) or 1
    words: list[Word] = []
    t = 0.0
    for s, e in spans:
        words.append(Word(s, e, t))
        t += duration_ms * (e - s) / total
    return tuple(words)


class Timelines:
    """The timelines of a session's recent audio items (the oldest are forgotten)."""

    def __init__(self, keep: int = 64) -> None:
        self._keep = keep
        self._items: OrderedDict[str, Timeline] = OrderedDict()

    def new(self, item_id: str) -> Timeline:
        timeline = self._items[item_id] = Timeline()
        while len(self._items) > self._keep:
            self._items.popitem(last=False)
        return timeline

    def get(self, item_id: str) -> Timeline | None:
        return self._items.get(item_id)


# --- the track -----------------------------------------------------------------------------------


@dataclass
class ItemAudio:
    """The audio content part of one assistant item, as the track writes it."""

    item_id: str
    output_index: int
    content_index: int
    timeline: Timeline
    spoken: str = ""  # transcript sent so far: the text whose audio was sent
    pending: str = ""  # released, not yet cut into a phrase


@dataclass
class _Phrase:
    item: ItemAudio
    text: str
    transcript: bool = True  # False: a filler, audio only


@dataclass
class _Then:
    fn: Callable[[], None]


@dataclass
class SpeechTrack:
    """The spoken output of one response (see the module docstring)."""

    synth: Synthesizer
    writer: wire.EventWriter
    send: Send
    response_id: str
    voice: str | None = None
    speed: float = 1.0
    on_error: Callable[[str], None] | None = None
    encoder: Encoder = field(default_factory=Encoder)  # the session's output format
    first_audio_at: float | None = None  # anyio.current_time() of the first audio delta
    _queue: deque[_Phrase | _Then] = field(default_factory=deque)
    _busy: bool = False
    _cancelled: bool = False
    _closed: bool = False
    _spoke: bool = False  # a phrase of this response was queued (rule 1's first phrase)
    _wake: anyio.Event = field(default_factory=anyio.Event)
    _idle: anyio.Event = field(default_factory=anyio.Event)
    _scope: anyio.CancelScope | None = None
    _errors: int = 0

    def __post_init__(self) -> None:
        self._idle.set()

    # -- feeding (sync; called from the response builder)

    @property
    def pending(self) -> bool:
        """Audio still to come: queued phrases, one being synthesised, or unspoken text."""
        return bool(self._queue) or self._busy

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def say(self, item: ItemAudio, text: str) -> None:
        if self._cancelled:
            return
        item.pending += text
        cut = phrase_cut(item.pending, first=not self._spoke)
        if cut:
            self._phrase(item, item.pending[:cut])
            item.pending = item.pending[cut:]

    def filler(self, item: ItemAudio, text: str) -> None:
        if not self._cancelled:
            self._push(_Phrase(item, text, transcript=False))

    def flush(self, item: ItemAudio) -> None:
        if item.pending and not self._cancelled:
            self._phrase(item, item.pending)
        item.pending = ""

    def then(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once everything queued so far is spoken (now, if nothing is)."""
        if self._cancelled or not self.pending:
            fn()
        else:
            self._push(_Then(fn))

    def cancel(self) -> None:
        """Stop speaking now: drop the phrases not spoken, run the queued ``then`` at once."""
        if self._cancelled:
            return
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()
        queued = list(self._queue)
        self._queue.clear()
        for entry in queued:
            if isinstance(entry, _Then):
                entry.fn()
        self._idle.set()
        self._wake.set()

    def close(self) -> None:
        """Nothing more will be queued: the worker ends once the queue is empty."""
        self._closed = True
        self._wake.set()

    def _phrase(self, item: ItemAudio, text: str) -> None:
        self._spoke = True
        self._push(_Phrase(item, text))

    def _push(self, entry: _Phrase | _Then) -> None:
        self._queue.append(entry)
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._wake.set()

    # -- the worker

    async def drained(self) -> None:
        """Wait until everything queued has been spoken (or dropped by a cancel)."""
        while self.pending and not self._cancelled:
            await self._idle.wait()

    async def run(self) -> None:
        """The worker task: speaks queued phrases, runs queued callbacks, in order."""
        while not self._cancelled:
            if not self._queue:
                self._idle.set()
                if self._closed:
                    return
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            entry = self._queue.popleft()
            if isinstance(entry, _Then):
                entry.fn()
                continue
            self._busy = True
            try:
                with anyio.CancelScope() as self._scope:
                    await self._speak(entry)
            finally:
                self._scope = None
                self._busy = False
        self._idle.set()

    async def _speak(self, phrase: _Phrase) -> None:
        item, text = phrase.item, phrase.text
        if not text.strip():
            if phrase.transcript:
                item.spoken += text
            return
        offset = len(item.spoken)
        start_ms = item.timeline.duration_ms  # fillers included: their audio has no text
        parts: list[Samples] = []
        words: tuple[Word, ...] = ()
        try:
            async for chunk in self.synth.synthesize(text, voice=self.voice, speed=self.speed):
                if self._cancelled:
                    return
                if not parts and phrase.transcript:
                    item.spoken += text
                    self._emit(
                        wire.ResponseOutputAudioTranscriptDelta(
                            response_id=self.response_id,
                            item_id=item.item_id,
                            output_index=item.output_index,
                            content_index=item.content_index,
                            delta=text,
                        )
                    )
                parts.append(chunk.samples)
                words = words or chunk.words
                self._audio(item, chunk.samples)
        except Exception as exc:  # a synthesiser's bug must cost a phrase, not the session
            if not isinstance(exc, SpeechError):
                log.exception("response %s: the synthesiser failed", self.response_id)
                exc = SpeechError(f"internal error: {type(exc).__name__}")
            self._errors += 1
            log.warning("response %s: speech failed: %s", self.response_id, exc)
            if self._errors == 1 and self.on_error is not None:
                self.on_error(str(exc))
        finally:
            tail = self.encoder.flush() if parts else ""
            if tail and not self._cancelled:
                self._emit(
                    wire.ResponseOutputAudioDelta(
                        response_id=self.response_id,
                        item_id=item.item_id,
                        output_index=item.output_index,
                        content_index=item.content_index,
                        delta=tail,
                    )
                )
            if phrase.transcript and parts:
                item.timeline.add(text, offset, start_ms, np.concatenate(parts), words)

    def _audio(self, item: ItemAudio, samples: Samples) -> None:
        step = RATE * DELTA_MS // 1000
        for i in range(0, len(samples), step):
            if self.first_audio_at is None:
                self.first_audio_at = anyio.current_time()
            piece = samples[i : i + step]
            item.timeline.duration_ms += ms_of(len(piece))
            self._emit(
                wire.ResponseOutputAudioDelta(
                    response_id=self.response_id,
                    item_id=item.item_id,
                    output_index=item.output_index,
                    content_index=item.content_index,
                    delta=self.encoder.encode(piece),
                )
            )

    def _emit(self, event: wire.ServerEvent) -> None:
        self.send(self.writer.encode(event))
