"""Monitor signals: what the core measures on the request and on every streamed token.

- Confidence: Chow-Quantile over a sliding window of per-token log-probabilities (a low
  quantile is robust to length, unlike a sum or mean), the minimum so far, and the mean
  entropy of the top-k alternatives, mapped through a logistic calibration to P(correct).
  A token without a (valid) logprob is *no evidence*: it is counted but never scored, and a
  monitor that has seen no logprob at all has no confidence (``p_correct is None``), so the
  cascade falls back on its other signals instead of reading silence as certainty.
- Complexity of the request: cheap lexical features, mapped through a logistic to [0, 1].
- Completeness at the end of a stream: truncation, empty output, malformed tool arguments.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Sequence

import msgspec

from .params import Calibration, ComplexityParams, MonitorParams

_FLOOR = -30.0  # e^-30: as unsure as any token gets; keeps one wild value from ruling the min
_ROUNDING = 1e-4  # servers round: a logprob a hair above zero is probability 1


def clean_logprob(logprob: float | None) -> float | None:
    """A log-probability the monitor may use, or None where it is unknown.

    A log-probability is at most 0. Anything above (beyond rounding), NaN or +inf comes from a
    broken upstream: it must never read as confidence, so it reads as unknown. -inf
    (probability 0) is valid and is floored like any very unsure token.
    """
    if logprob is None:
        return None
    if logprob <= 0.0:
        return logprob if logprob >= _FLOOR else _FLOOR
    if logprob <= _ROUNDING:
        return 0.0
    return None  # positive, +inf or NaN (every comparison with NaN is false)


def clean_top_logprobs(top_logprobs: Sequence[float]) -> Sequence[float]:
    """``top_logprobs`` without the invalid ones (see :func:`clean_logprob`)."""
    for lp in top_logprobs:
        if not _FLOOR <= lp <= 0.0:
            break
    else:
        return top_logprobs  # the common case: nothing to fix, nothing allocated
    return tuple(c for c in map(clean_logprob, top_logprobs) if c is not None)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def entropy_of(top_logprobs: Sequence[float]) -> float:
    """Entropy (nats) of the top-k alternatives, renormalised over the k shown."""
    if not top_logprobs:
        return 0.0
    # One pass, nothing allocated (this runs per streamed token): with w = exp(lp - max) and
    # Z = sum(w), p = w / Z and log p = (lp - max) - log Z, so H = log Z - sum(w (lp - max)) / Z.
    m = max(top_logprobs)
    total = weighted = 0.0
    for lp in top_logprobs:
        d = lp - m
        w = math.exp(d)
        total += w
        weighted += w * d
    return max(0.0, math.log(total) - weighted / total)


class Confidence(msgspec.Struct, frozen=True):
    """The monitor's view. ``p_correct``, ``quantile_p`` and ``min_p`` are None while no token
    with a logprob has been seen: confidence is unknown, not high."""

    p_correct: float | None
    quantile_p: float | None
    min_p: float | None
    entropy: float
    tokens: int  # tokens seen
    known: int = 0  # of which had a valid logprob


class ConfidenceMonitor:
    """Per-attempt token statistics. O(window) per token; the window is small (≈12)."""

    __slots__ = (
        "_cal",
        "_complexity",
        "_entropies",
        "_logprobs",
        "_min_lp",
        "_params",
        "known",
        "tokens",
    )

    def __init__(self, params: MonitorParams, complexity: float) -> None:
        self._params = params
        self._cal: Calibration = params.calibration
        self._complexity = complexity
        self._logprobs: deque[float] = deque(maxlen=params.window)
        self._entropies: deque[float] = deque(maxlen=params.window)
        self._min_lp = 0.0
        self.tokens = 0
        self.known = 0

    def observe(self, logprob: float | None, top_logprobs: Sequence[float]) -> None:
        self.tokens += 1
        lp = clean_logprob(logprob)
        if lp is None:
            # No evidence either way: not "confident" (0.0 would be), just not scored. The
            # cascade's other signals (completeness, verifiers, latency) still apply.
            return
        self.known += 1
        self._logprobs.append(lp)
        self._entropies.append(entropy_of(clean_top_logprobs(top_logprobs)))
        if lp < self._min_lp:
            self._min_lp = lp

    @property
    def ready(self) -> bool:
        """Enough tokens *with logprobs* for a verdict."""
        return self.known >= self._params.min_tokens

    def p_correct(self) -> float | None:
        """Just ``confidence().p_correct``: the cascade reads it after every token, and builds
        the whole :class:`Confidence` only when it records a decision."""
        if not self._logprobs:
            return None
        return _sigmoid(self._z(self._quantile_lp(), self._mean_entropy()))

    def _mean_entropy(self) -> float:
        return sum(self._entropies) / len(self._entropies)

    def _quantile_lp(self) -> float:
        ordered = sorted(self._logprobs)
        return ordered[min(len(ordered) - 1, int(self._params.quantile * len(ordered)))]

    def _z(self, q_lp: float, mean_h: float) -> float:
        cal = self._cal
        return (
            cal.bias
            + cal.w_quantile * q_lp
            + cal.w_min * self._min_lp
            + cal.w_entropy * mean_h
            + cal.w_complexity * self._complexity
        )

    def confidence(self) -> Confidence:
        if not self._logprobs:
            return Confidence(None, None, None, 0.0, self.tokens, 0)
        q_lp = self._quantile_lp()
        mean_h = self._mean_entropy()
        return Confidence(
            p_correct=_sigmoid(self._z(q_lp, mean_h)),
            quantile_p=math.exp(q_lp),
            min_p=math.exp(self._min_lp),
            entropy=mean_h,
            tokens=self.tokens,
            known=self.known,
        )


# --- request complexity -------------------------------------------------------------------

_CLAUSE = re.compile(
    r"\b(and|but|unless|if|then|keep|except|also|while|instead|otherwise|only|before|after)\b|[,;]",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+|\b(one|two|three|four|five|six|seven|eight|nine|ten)\b", re.IGNORECASE)


class RequestFeatures(msgspec.Struct, frozen=True):
    words: int
    clauses: int
    numbers: int
    questions: int

    def vector(self) -> tuple[float, ...]:
        """Features for the online router, each bounded to about [0, 1.5]: raw counts are
        unbounded on long prompts (a pasted passage has dozens of clauses), and SGD with a
        fixed step oscillates on unbounded inputs."""
        return (
            1.0,
            math.log1p(self.words) / 5.0,
            math.log1p(self.clauses) / 3.0,
            math.log1p(self.numbers) / 3.0,
            min(self.questions, 3) / 3.0,
        )


def request_features(text: str) -> RequestFeatures:
    return RequestFeatures(
        words=len(text.split()),
        clauses=len(_CLAUSE.findall(text)),
        numbers=len(_NUMBER.findall(text)),
        questions=text.count("?"),
    )


def complexity_of(features: RequestFeatures, params: ComplexityParams) -> float:
    z = (
        params.bias
        + params.w_words * features.words
        + params.w_clauses * features.clauses
        + params.w_numbers * features.numbers
        + params.w_questions * features.questions
    )
    return _sigmoid(z)


# --- completeness -------------------------------------------------------------------------


def incompleteness(
    finish_reason: str | None, text: str, tool_arguments: Sequence[str]
) -> str | None:
    """Why a finished stream is not a complete answer, or None when it is."""
    if finish_reason == "length":
        return "the answer was cut off at the token limit"
    if finish_reason == "content_filter":
        return "the answer was stopped by a content filter"
    if not text.strip() and not tool_arguments:
        return "the tier produced no text and no tool call"
    for args in tool_arguments:
        try:
            msgspec.json.decode(args or "{}")
        except msgspec.DecodeError:
            return f"malformed tool arguments: {args[:60]!r}"
    return None
