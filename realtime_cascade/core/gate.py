"""The speech commit gate: the only way text reaches the listener.

Rules:
1. Released text is append-only: nothing released is ever retracted or repeated. It is exact:
   the pieces joined are the text pushed, the first piece's leading whitespace included (a
   leading space counts toward no phrase's ``min_phrase_chars``).
2. Text is released in phrase-sized pieces: up to a phrase mark once ``lookahead_tokens`` more
   tokens have been scored. A phrase mark is ``.``, ``!``, ``?``, ``,``, ``;`` or ``:``
   followed by whitespace (so "7.30" and "a,b" are not), or a mark that ends a phrase by
   itself: the CJK and fullwidth stops and commas (``。！？，、；：…``), those of other scripts
   written without spaces after them, and a line end.
3. A piece longer than ``max_phrase_chars``, or held longer than ``max_hold_ms``, is released
   at its last word boundary, never inside a word. A word boundary is the start of any Unicode
   whitespace run with a word after it, or the edge of a character of a script written without
   spaces (Chinese, Japanese: East Asian wide and fullwidth characters), never before a
   combining mark, a joiner or a variation selector. ``max_phrase_chars`` always holds: text
   with no boundary at all is cut at that length (still never before a combining mark). Only a
   single word shorter than that is held until more text comes.
4. On handoff the pending tail is dropped; the next tier continues after the released text.
5. Eager mode (the last tier allowed: no monitor verdict can change anything) releases each
   token as it comes; holding it back would only add latency. A piece may then end inside a
   word: text deltas concatenate, and the speech track cuts its own phrases at word boundaries.
6. Work per token is flat in the length of the turn: each pushed character is looked at once
   (phrase marks and word boundaries are noted as text arrives, at absolute offsets), and a
   cut is found by bisection over those notes, never by scanning the pending text again.

The gate itself never decides *whether* text may go out: the cascade freezes it while the
monitor is in doubt and calls :meth:`take` otherwise.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right

from .params import GateParams

# A phrase mark only when whitespace follows it ("7.30", "a,b" are not boundaries).
_SPACED_STOPS = frozenset(".!?,;:")
# A phrase mark by itself: scripts that put no space after their stops, and line ends.
_STOPS = frozenset("。．！？，、；：…‥｡､\n\u2028\u2029।॥؟،۔")
_JOINERS = frozenset("\u200c\u200d\u2060")  # ZWNJ, ZWJ, word joiner: never cut next to them
_COMPACT_AT = 256  # consumed notes are dropped from the lists' heads in batches this large


def _clings(ch: str) -> bool:
    """Does ``ch`` belong to the character before it (so no cut may come between them)?"""
    if ch < "\u0300":
        return False  # ASCII and Latin-1: the hot path, nothing here clings
    if ch in _JOINERS or "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef":
        return True  # joiners, variation selectors
    if "\U0001f3fb" <= ch <= "\U0001f3ff":
        return True  # emoji skin-tone modifiers
    return unicodedata.category(ch) in ("Mn", "Mc", "Me")


def _spaceless(ch: str) -> bool:
    """A character of a script written without spaces between words (CJK, kana, fullwidth)."""
    return ch >= "\u1100" and unicodedata.east_asian_width(ch) in ("W", "F")


class _Marks:
    """Sorted absolute offsets, appended at the end, consumed from the head (amortised O(1))."""

    __slots__ = ("head", "items")

    def __init__(self) -> None:
        self.items: list[int] = []
        self.head = 0

    def add(self, offset: int) -> None:
        items = self.items
        if not items or items[-1] < offset:
            items.append(offset)

    def last_at_most(self, limit: int) -> int | None:
        i = bisect_right(self.items, limit, self.head) - 1
        return self.items[i] if i >= self.head else None

    def consume_to(self, offset: int) -> None:
        """Forget every mark at or before ``offset``."""
        items = self.items
        head = bisect_right(items, offset, self.head)
        if head >= _COMPACT_AT and head * 2 >= len(items):
            del items[:head]
            head = 0
        self.head = head

    def clear(self) -> None:
        self.items.clear()
        self.head = 0


class SpeechGate:
    __slots__ = (
        "_base",
        "_first_text",
        "_params",
        "_pending",
        "_phrases",
        "_prev",
        "_released",
        "_released_len",
        "_run",
        "_start_head",
        "_starts",
        "_words",
        "scanned",
    )

    def __init__(self, params: GateParams) -> None:
        self._params = params
        self._released: list[str] = []
        self._released_len = 0
        self._pending = ""
        self._base = 0  # absolute offset (in all text pushed this turn) of pending[0]
        # (absolute offset, arrival time) of each token still (partly) pending, from _start_head
        self._starts: list[tuple[int, float]] = []
        self._start_head = 0
        self._phrases = _Marks()  # absolute offsets a phrase may end at
        self._words = _Marks()  # absolute offsets of word boundaries with a word after them
        self._prev = ""  # the last character pushed
        self._run = -1  # absolute start of the whitespace run pending ends with, or -1
        self._first_text: int | None = None  # absolute offset of the turn's first non-space
        self.scanned = 0  # characters looked at by the scan, ever (rule 6; tests count it)

    @property
    def released(self) -> str:
        if len(self._released) > 1:
            self._released[:] = ["".join(self._released)]
        return self._released[0] if self._released else ""

    @property
    def released_len(self) -> int:
        return self._released_len

    @property
    def pending(self) -> str:
        return self._pending

    def push(self, text: str, now: float) -> None:
        if not text:
            return
        at = self._base + len(self._pending)
        self._starts.append((at, now))
        self._pending += text
        self._scan(text, at)

    def drop_pending(self) -> str:
        dropped, self._pending = self._pending, ""
        self._base += len(dropped)
        self._starts.clear()
        self._start_head = 0
        self._phrases.clear()
        self._words.clear()
        self._prev = ""
        self._run = -1
        self._first_text = None  # only read while nothing is released: the next tier's lead
        return dropped

    def hold_deadline(self) -> float | None:
        """When the oldest pending token has waited ``max_hold_ms`` — None while waiting would
        release nothing (a lone, possibly unfinished word), so no timer spins on it."""
        if self._start_head >= len(self._starts) or self._word_cut() == 0:
            return None
        return self._starts[self._start_head][1] + self._params.max_hold_ms / 1000.0

    def take(self, now: float, *, final: bool = False, eager: bool = False) -> str:
        """Cut the longest releasable piece off the pending text (``""`` if none).

        ``eager``: release everything now, token by token (for a tier nobody can overrule).
        """
        pending = self._pending
        if not pending:
            return ""
        if final or eager:
            cut = len(pending)
        else:
            cut = self._phrase_cut()
            if cut == 0:
                too_long = len(pending) > self._params.max_phrase_chars
                deadline = None if too_long else self.hold_deadline()
                if too_long or (deadline is not None and now >= deadline):
                    cut = self._word_cut()
                    if cut == 0 and too_long:
                        cut = self._hard_cut()
        if cut == 0:
            return ""
        return self._emit(cut)

    # -- internals ---------------------------------------------------------------------------

    def _scan(self, text: str, at: int) -> None:
        """Note the phrase marks and word boundaries in ``text`` (pushed at offset ``at``)."""
        self.scanned += len(text)
        phrases, words = self._phrases, self._words
        prev, run = self._prev, self._run
        for ch in text:
            if ch.isspace():
                if prev in _SPACED_STOPS:
                    phrases.add(at)
                if run < 0 and prev and not prev.isspace():
                    run = at
            else:
                if self._first_text is None:
                    self._first_text = at
                if run >= 0:
                    words.add(run)  # a word follows the run: its start is a boundary
                    run = -1
                elif (
                    prev
                    and (_spaceless(ch) or _spaceless(prev))
                    and not _clings(ch)
                    and prev not in _JOINERS
                ):
                    words.add(at)
            if ch in _STOPS:
                phrases.add(at + 1)
            prev = ch
            at += 1
        self._prev, self._run = prev, run

    def _phrase_cut(self) -> int:
        params = self._params
        base, end = self._base, self._base + len(self._pending)
        look = params.lookahead_tokens
        if look > 0:
            if len(self._starts) - self._start_head < look:
                return 0
            # a cut needs ``look`` tokens starting at or after it
            best = self._phrases.last_at_most(self._starts[-look][0])
        else:
            best = self._phrases.last_at_most(end)
            if self._prev in _SPACED_STOPS:
                best = end  # no lookahead: a stop at the very end is taken as it stands
        if best is None or best <= base:
            return 0
        if self._released_len == 0:
            first = self._first_text
            lead = len(self._pending) if first is None else max(0, first - base)
        else:
            lead = 0
        if best - base - lead < params.min_phrase_chars:
            return 0  # every earlier mark makes a shorter phrase still
        return best - base

    def _word_cut(self) -> int:
        # the last boundary with a complete word before it; the word after it may still be
        # growing ("Thurs" + "day"), so it stays pending
        best = self._words.last_at_most(self._base + len(self._pending) - 1)
        if best is None or best <= self._base:
            return 0
        return best - self._base

    def _hard_cut(self) -> int:
        """No boundary at all in more than ``max_phrase_chars``: cut at that length anyway, but
        never between a character and what clings to it."""
        p = self._pending
        cut = max(1, self._params.max_phrase_chars)
        while cut > 1 and (_clings(p[cut]) or p[cut - 1] in _JOINERS):
            cut -= 1
        return cut

    def _emit(self, cut: int) -> str:
        piece = self._pending[:cut]
        rest = self._pending[cut:]
        at = self._base + cut
        starts, head = self._starts, self._start_head
        straddler: float | None = None
        while head < len(starts) and starts[head][0] < at:
            straddler = starts[head][1]
            head += 1
        if rest and straddler is not None and (head == len(starts) or starts[head][0] > at):
            # the token cut in two keeps its arrival time for the hold deadline
            head -= 1
            starts[head] = (at, straddler)
        if head >= _COMPACT_AT and head * 2 >= len(starts):
            del starts[:head]
            head = 0
        self._start_head = head
        self._phrases.consume_to(at)
        self._words.consume_to(at)
        self._pending = rest
        self._base = at
        # exact: the first piece keeps its leading space too, so joined releases are the
        # tokens as they came (what a client joining text deltas must see)
        self._released.append(piece)
        self._released_len += len(piece)
        return piece
