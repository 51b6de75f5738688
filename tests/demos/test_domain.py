"""The booking store, its tools and the verifier."""

from __future__ import annotations

import msgspec
import pytest
from realtime_cascade.demos.booking.domain import (
    PolicyViolation,
    SlotUnavailable,
    Store,
    parse_date,
)
from realtime_cascade.demos.booking.tools import TOOLS, ToolArgumentError, decode_arguments, execute
from realtime_cascade.demos.booking.verify import check_call, make_verifier, verify

from realtime_cascade.core import Answer, ToolCallRecord


def run(store: Store, tool: str, /, **args: object) -> dict[str, object]:
    out = msgspec.json.decode(execute(store, tool, msgspec.json.encode(args).decode()))
    assert isinstance(out, dict)
    return out


def test_tools_are_openai_functions_with_closed_object_schemas() -> None:
    names = [t["function"]["name"] for t in TOOLS]  # type: ignore[index]
    assert names == [
        "search_availability", "create_booking", "change_booking", "cancel_booking",
        "lookup_booking",
    ]
    for tool in TOOLS:
        assert tool["type"] == "function"
        params = tool["function"]["parameters"]  # type: ignore[index]
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert "$ref" not in msgspec.json.encode(params).decode()


def test_schema_validation_names_the_field() -> None:
    with pytest.raises(ToolArgumentError, match="booking_id"):
        decode_arguments("cancel_booking", '{"booking_id": "1001"}')
    with pytest.raises(ToolArgumentError, match="unknown tool"):
        decode_arguments("teleport", "{}")


def test_search_shows_only_free_slots() -> None:
    store = Store()
    out = run(store, "search_availability", kind="restaurant", date="2025-03-14",
              restaurant="Sakura", party_size=3, time_from="18:30", time_to="20:00")
    times = [o["time"] for o in out["options"]]  # type: ignore[union-attr]
    assert times == ["18:30", "20:00"]  # 19:00 and 19:30 are full in the seed


def test_create_change_cancel_round_trip() -> None:
    store = Store()
    made = run(store, "create_booking", kind="restaurant", date="2025-03-12", name="Silva",
               restaurant="Sakura", time="19:00", party_size=2)
    assert made["ok"] and made["booking"]["booking_id"] == "R-5001"  # type: ignore[index]
    changed = run(store, "change_booking", booking_id="R-5001", time="20:00")
    assert changed["booking"]["time"] == "20:00"  # type: ignore[index]
    cancelled = run(store, "cancel_booking", booking_id="R-5001")
    assert cancelled["booking"]["status"] == "cancelled"  # type: ignore[index]
    again = run(store, "cancel_booking", booking_id="R-5001")
    assert again == {**again, "ok": False, "error": "policy"}


def test_fare_rules() -> None:
    store = Store()
    with pytest.raises(PolicyViolation, match="basic"):
        store.change_seat("F-2002", flight=None, date="2025-03-18", fare=None)
    booking, charged = store.change_seat("F-2001", flight="CA102", date="2025-03-15", fare=None)
    assert (booking.date, charged) == ("2025-03-15", 50)  # standard: $50 fee, same fare
    _, refund = store.cancel("F-2003")
    assert refund == 189  # flex: full refund
    _, refund = store.cancel("F-2002")
    assert refund == 0  # basic: none


def test_full_slot_and_dates_are_typed_errors() -> None:
    store = Store()
    with pytest.raises(SlotUnavailable):
        store.book_table("sakura", "2025-03-14", "19:00", 2, "X")
    with pytest.raises(Exception, match="not a calendar date"):
        parse_date("2025-04-31")
    out = run(store, "create_booking", kind="restaurant", date="2025-04-31", name="X",
              restaurant="Luigi's", time="19:00", party_size=2)
    assert out["ok"] is False and out["error"] == "invalid_date"


def _answer(tool: str, /, **args: object) -> Answer:
    call = ToolCallRecord("call_1", tool, msgspec.json.encode(args).decode())
    return Answer("request", "", (call,))


def test_verifier_catches_domain_mistakes() -> None:
    bad = {
        "bad date": _answer("search_availability", kind="restaurant", date="2025-04-31"),
        "full": _answer("create_booking", kind="restaurant", date="2025-03-14", name="P",
                        restaurant="Sakura", time="19:00", party_size=3),
        "basic": _answer("change_booking", booking_id="F-2002", date="2025-03-18",
                         flight="CA105"),
        "party": _answer("change_booking", booking_id="R-1003", party_size=5),
        "schema": _answer("create_booking", kind="boat", date="2025-03-14", name="P"),
    }
    for what, answer in bad.items():
        assert verify(answer) is not None, what
    ok = _answer("create_booking", kind="restaurant", date="2025-03-12", name="S",
                 restaurant="Sakura", time="19:00", party_size=2)
    assert verify(ok) is None
    assert verify(Answer("r", "just words", ())) is None


def test_session_verifier_sees_the_sessions_bookings() -> None:
    store = Store()
    for _ in range(3):  # Sakura has 3 tables a slot
        store.book_table("sakura", "2025-03-12", "18:00", 2, "X")
    answer = _answer("create_booking", kind="restaurant", date="2025-03-12", name="S",
                     restaurant="Sakura", time="18:00", party_size=2)
    assert verify(answer) is None  # the seed cannot know
    assert make_verifier(store)(answer) == check_call(store, "create_booking",
                                                      answer.tool_calls[0].arguments)
    assert "full" in (make_verifier(store)(answer) or "")
