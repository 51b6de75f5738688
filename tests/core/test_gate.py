from realtime_cascade.core import GateParams, SpeechGate


def feed(gate: SpeechGate, tokens: list[str], now: float = 0.0) -> list[str]:
    out = []
    for tok in tokens:
        gate.push(tok, now)
        piece = gate.take(now)
        if piece:
            out.append(piece)
    return out


def test_releases_phrase_after_one_token_of_lookahead() -> None:
    gate = SpeechGate(GateParams(min_phrase_chars=4, lookahead_tokens=1))
    out = feed(gate, [" Let", " me", " check", ".", " Your"])
    assert out == [" Let me check."]  # exact: the turn's leading space kept, boundary kept
    assert gate.pending == " Your"


def test_no_boundary_inside_numbers() -> None:
    gate = SpeechGate(GateParams(min_phrase_chars=1, lookahead_tokens=1))
    assert feed(gate, ["At", " 7", ".", "30", " please"]) == []
    assert gate.pending == "At 7.30 please"


def test_short_phrases_wait_for_more() -> None:
    gate = SpeechGate(GateParams(min_phrase_chars=10, lookahead_tokens=1))
    assert feed(gate, ["Hi", ",", " there", ",", " friend", "."]) == ["Hi, there,"]


def test_hold_deadline_releases_at_word_boundary_not_inside_a_word() -> None:
    gate = SpeechGate(GateParams(max_hold_ms=300, lookahead_tokens=1))
    gate.push("Your", 1.0)
    gate.push(" Thurs", 1.1)
    assert gate.hold_deadline() == 1.0 + 0.3
    assert gate.take(1.2) == ""
    assert gate.take(1.3) == "Your"
    assert gate.pending == " Thurs"
    # a lone word that may still grow: no deadline (a timer would only spin on it)
    assert gate.hold_deadline() is None
    gate.push("day", 1.4)
    gate.push(" morning", 1.5)
    # the remainder keeps the arrival time of its first token
    assert gate.hold_deadline() == 1.1 + 0.3
    assert gate.take(1.5) == " Thursday"


def test_max_phrase_chars_forces_a_word_cut() -> None:
    gate = SpeechGate(GateParams(max_phrase_chars=10, lookahead_tokens=1))
    out = feed(gate, ["one", " two", " three", " four"])
    assert out == ["one two", " three"]
    assert gate.pending == " four"


def test_eager_releases_every_token_at_once() -> None:
    gate = SpeechGate(GateParams())
    gate.push(" Your", 0.0)
    assert gate.take(0.0, eager=True) == " Your"
    gate.push(" Thurs", 0.0)
    assert gate.take(0.0, eager=True) == " Thurs"
    gate.push("day", 0.0)
    assert gate.take(0.0, eager=True) == "day"
    assert gate.released == " Your Thursday"
    assert gate.pending == ""


def test_drop_pending_keeps_released() -> None:
    gate = SpeechGate(GateParams(min_phrase_chars=1))
    feed(gate, ["Sure", ".", " I", " think"])
    assert gate.released == "Sure."
    assert gate.drop_pending() == " I think"
    assert gate.pending == ""
    assert gate.released == "Sure."
    assert gate.released_len == 5


def test_released_text_is_exactly_the_tokens_leading_space_included() -> None:
    # a client that joins text deltas must get the tokens' text, whatever the gate's cuts
    tokens = [" Sure", ",", " your", " flight", " is", " at", " 7", ".30", ".", " Thanks", "!"]
    for params in (GateParams(min_phrase_chars=1), GateParams(min_phrase_chars=8)):
        gate = SpeechGate(params)
        pieces = feed(gate, tokens)
        pieces.append(gate.take(1.0, final=True))
        assert "".join(pieces) == "".join(tokens) == gate.released
    # a lone space first, then words: not a phrase by itself, released with what follows
    gate = SpeechGate(GateParams(min_phrase_chars=4, lookahead_tokens=0))
    assert feed(gate, [" ", "Hi", "."]) == []  # " Hi." is three characters of phrase
    assert feed(gate, [" Yes", "."]) == [" Hi. Yes."]
