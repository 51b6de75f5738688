"""The speech commit gate: the only way text reaches the listener.

Rules:
1. Released text is append-only: nothing released is ever retracted or repeated.
2. Text is released in phrase-sized pieces: up to a phrase boundary (``.``, ``!``, ``?``, ``,``,
   ``;``, ``:`` followed by whitespace) once ``lookahead_tokens`` more tokens have been scored.
3. A piece longer than ``max_phrase_chars``, or held longer than ``max_hold_ms``, is released
   at its last word boundary, never inside a word.
4. On handoff the pending tail is dropped; the next tier continues after the released text.
5. Eager mode (the last tier allowed: no monitor verdict can change anything) releases each
   token as it comes; holding it back would only add latency. A piece may then end inside a
   word: text deltas concatenate, and the speech track cuts its own phrases at word boundaries.

The gate itself never decides *whether* text may go out: the cascade freezes it while the
monitor is in doubt and calls :meth:`take` otherwise.
"""

from __future__ import annotations

from .params import GateParams

_BOUNDARY = frozenset(".!?,;:")


class SpeechGate:
    __slots__ = ("_params", "_pending", "_released", "_released_len", "_starts")

    def __init__(self, params: GateParams) -> None:
        self._params = params
        self._released: list[str] = []
        self._released_len = 0
        self._pending = ""
        # (offset in pending, arrival time) of each token still (partly) pending
        self._starts: list[tuple[int, float]] = []

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
        self._starts.append((len(self._pending), now))
        self._pending += text

    def drop_pending(self) -> str:
        dropped, self._pending = self._pending, ""
        self._starts.clear()
        return dropped

    def hold_deadline(self) -> float | None:
        """When the oldest pending token has waited ``max_hold_ms`` — None while waiting would
        release nothing (a lone, possibly unfinished word), so no timer spins on it."""
        if not self._starts or self._word_cut() == 0:
            return None
        return self._starts[0][1] + self._params.max_hold_ms / 1000.0

    def take(self, now: float, *, final: bool = False, eager: bool = False) -> str:
        """Cut the longest releasable piece off the pending text (``""`` if none).

        ``eager``: release everything now, token by token (for a tier nobody can overrule).
        """
        pending = self._pending
        if not pending:
            return ""
        if final:
            cut = len(pending)
        else:
            cut = len(pending) if eager else self._phrase_cut()
            if cut == 0:
                deadline = self.hold_deadline()
                too_long = len(pending) > self._params.max_phrase_chars
                if too_long or (deadline is not None and now >= deadline):
                    cut = self._word_cut()
        if cut == 0:
            return ""
        return self._emit(cut)

    # -- internals ---------------------------------------------------------------------------

    def _tokens_after(self, cut: int) -> int:
        return sum(1 for start, _ in self._starts if start >= cut)

    def _phrase_cut(self) -> int:
        p = self._pending
        params = self._params
        lead = len(p) - len(p.lstrip()) if self._released_len == 0 else 0
        best = 0
        for i in range(len(p) - 1, -1, -1):
            if p[i] not in _BOUNDARY:
                continue
            cut = i + 1
            at_end = cut == len(p)
            if not at_end and not p[cut].isspace():
                continue  # "7.30", "a,b": not a phrase boundary
            if at_end and params.lookahead_tokens > 0:
                continue
            if self._tokens_after(cut) < params.lookahead_tokens:
                continue
            if cut - lead < params.min_phrase_chars:
                break  # every earlier boundary is shorter still
            best = cut
            break
        return best

    def _word_cut(self) -> int:
        p = self._pending
        # the last whitespace that has a complete word before it; the word after it may still
        # be growing ("Thurs" + "day"), so it stays pending
        i = p.rstrip().rfind(" ")
        while i > 0 and p[i - 1].isspace():
            i -= 1
        if i <= 0 or not p[:i].strip():
            return 0
        return i

    def _emit(self, cut: int) -> str:
        piece = self._pending[:cut]
        rest = self._pending[cut:]
        if self._released_len == 0:
            piece = piece.lstrip()
        straddler: float | None = None
        for start, t in self._starts:
            if start >= cut:
                break
            straddler = t
        starts = [(s - cut, t) for s, t in self._starts if s >= cut]
        if rest and (not starts or starts[0][0] > 0) and straddler is not None:
            # the token cut in two keeps its arrival time for the hold deadline
            starts.insert(0, (0, straddler))
        self._pending = rest
        self._starts = starts
        if piece:
            self._released.append(piece)
            self._released_len += len(piece)
        return piece
