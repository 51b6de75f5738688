import math
import random

import pytest

from realtime_cascade.core import ComplexityParams, MonitorParams, complexity_of, request_features
from realtime_cascade.core.signals import ConfidenceMonitor, entropy_of, incompleteness


def test_entropy_of_uniform_and_peaked() -> None:
    assert entropy_of([math.log(0.25)] * 4) == pytest.approx(math.log(4))
    assert entropy_of([0.0, -20.0]) == pytest.approx(0.0, abs=1e-6)
    assert entropy_of([]) == 0.0


def test_quantile_is_robust_to_length_where_the_mean_is_not() -> None:
    params = MonitorParams(window=12, quantile=0.2, min_tokens=1)
    long_good = ConfidenceMonitor(params, 0.0)
    for _ in range(50):
        long_good.observe(-0.02, ())
    one_bad_run = ConfidenceMonitor(params, 0.0)
    for lp in [-0.02] * 9 + [-3.0] * 3:
        one_bad_run.observe(lp, ())
    assert long_good.confidence().p_correct > 0.9
    # 3 bad tokens in a window of 12: the 20% quantile sees them
    assert one_bad_run.confidence().quantile_p == pytest.approx(math.exp(-3.0))
    assert one_bad_run.confidence().p_correct < 0.2


def test_window_forgets_old_tokens() -> None:
    params = MonitorParams(window=4, quantile=0.2, min_tokens=1)
    m = ConfidenceMonitor(params, 0.0)
    for lp in [-5.0, -5.0, -0.01, -0.01, -0.01, -0.01]:
        m.observe(lp, ())
    c = m.confidence()
    assert c.quantile_p == pytest.approx(math.exp(-0.01))
    assert c.min_p == pytest.approx(math.exp(-5.0))  # the minimum is over the whole stream
    assert m.tokens == 6


def test_complexity_grows_with_clauses() -> None:
    p = ComplexityParams()
    easy = complexity_of(request_features("Book a table for two at 7pm tonight."), p)
    hard = complexity_of(
        request_features(
            "Move my Thursday flight to the earliest Friday option, keep my aisle seat, "
            "and apply my voucher unless the fare goes up."
        ),
        p,
    )
    assert 0.0 < easy < 0.3 < 0.5 < hard < p.skip_above


@pytest.mark.parametrize(
    ("finish", "text", "args", "expected"),
    [
        ("stop", "Hello.", [], None),
        ("length", "Hello", [], "cut off"),
        ("stop", "  ", [], "no text"),
        ("tool_calls", "", ['{"a": 1}'], None),
        ("tool_calls", "", ['{"a": '], "malformed"),
        ("content_filter", "x", [], "content filter"),
    ],
)
def test_incompleteness(finish: str, text: str, args: list[str], expected: str | None) -> None:
    got = incompleteness(finish, text, args)
    if expected is None:
        assert got is None
    else:
        assert got is not None and expected in got


def test_the_per_token_p_correct_is_the_confidence_one() -> None:
    # the cascade judges every token with p_correct() and records confidence(): they must agree
    rng = random.Random(5)
    params = MonitorParams(window=12, quantile=0.2, min_tokens=1)
    m = ConfidenceMonitor(params, 0.3)
    assert m.p_correct() is None and m.confidence().p_correct is None
    for _ in range(200):
        lp = None if rng.random() < 0.1 else -rng.expovariate(2.0)
        tops = [-rng.expovariate(1.0) for _ in range(rng.randint(0, 5))]
        m.observe(lp, tops)
        assert m.p_correct() == m.confidence().p_correct


def test_entropy_of_matches_the_textbook_sum() -> None:
    rng = random.Random(3)
    for _ in range(200):
        tops = [-rng.expovariate(0.5) for _ in range(rng.randint(1, 6))]
        weights = [math.exp(t) for t in tops]
        z = sum(weights)
        textbook = -sum(w / z * math.log(w / z) for w in weights)
        assert entropy_of(tops) == pytest.approx(textbook, rel=1e-9, abs=1e-12)
