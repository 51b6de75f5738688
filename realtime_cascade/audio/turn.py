"""End of turn from the words, not only the silence (``semantic_vad``).

A pause after "Book a table for two at seven." ends the turn; the same pause after "Book a
table for two and" does not: the speaker is mid-sentence. With ``semantic_vad`` the VAD ends
speech after a *short* silence (by eagerness), the transcript is checked, and a transcript
that looks unfinished holds the response for a while: if the user speaks again in that time,
no response is made for the first part (both parts are in the conversation; the response to
the second sees them both).
"""

from __future__ import annotations

import re
from typing import Final, Literal

Eagerness = Literal["low", "medium", "high", "auto"]

# silence that ends speech, ms: shorter than server_vad's 500, since unfinished words wait
SILENCE_MS: Final[dict[str, int]] = {"low": 700, "medium": 400, "auto": 400, "high": 250}
# how long an unfinished-sounding turn waits for more speech before it is answered anyway, ms
HOLD_MS: Final[dict[str, int]] = {"low": 3000, "medium": 2000, "auto": 2000, "high": 1000}

# words a finished sentence does not end on
_TRAILING: Final = frozenset(
    [
        "and",
        "or",
        "but",
        "so",
        "because",
        "since",
        "although",
        "though",
        "if",
        "when",
        "while",
        "unless",
        "until",
        "then",
        "also",
        "plus",
        "the",
        "a",
        "an",
        "to",
        "of",
        "for",
        "with",
        "at",
        "in",
        "on",
        "from",
        "by",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "its",
        "this",
        "that",
        "these",
        "those",
        "some",
        "any",
        "um",
        "uh",
        "er",
        "erm",
        "hmm",
        "like",
        "i",
        "i'm",
        "we",
        "we're",
        "you",
        "you're",
        "is",
        "are",
        "was",
        "were",
        "am",
        "be",
        "been",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "might",
        "must",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "about",
        "into",
        "than",
        "as",
        "which",
        "who",
        "whose",
        "whom",
        "where",
        "what",
        "how",
        "why",
        "let",
        "let's",
        "please",
    ]
)
_WORD = re.compile(r"[a-z']+")


def unfinished(transcript: str) -> bool:
    """Whether ``transcript`` sounds cut off mid-sentence: it trails off ("…", "-"), or its
    last word is one a sentence does not end on (a conjunction, article, preposition, filler)
    and no full stop, question or exclamation mark closes it."""
    text = transcript.strip()
    if not text:
        return False
    if text.endswith(("...", "…", "-", "—", ",")):
        return True
    if text[-1] in ".?!":
        words = _WORD.findall(text.lower())
        # Whisper closes most transcripts with a full stop, even "and." : trust the words
        return bool(words) and words[-1] in _TRAILING and text[-1] == "."
    words = _WORD.findall(text.lower())
    return bool(words) and words[-1] in _TRAILING
