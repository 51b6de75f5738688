"""The scenario suite: multi-turn booking conversations with ground truth for every user turn.

Each conversation starts from the seeded world (a fresh :class:`~.domain.Store`).
A turn succeeds when, after it, the store holds the expected bookings (a subset of fields per
booking id) and what the user heard contains every expected fact. ``hard`` marks turns that
need more than the light tier has: several constraints, intents or edits at once, a condition,
date arithmetic, or a domain rule (a full slot, a basic fare, a party too large, a bad date).
"""

from __future__ import annotations

from dataclasses import fields

import msgspec

from .domain import Store

Fields = dict[str, object]


class Expect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    says: tuple[str, ...] = ()  # facts the reply must contain (case-insensitive)
    bookings: dict[str, Fields] = {}  # booking id -> fields it must have
    new_bookings: int | None = None  # bookings created in the conversation so far


class UserTurn(msgspec.Struct, frozen=True):
    text: str
    expect: Expect
    hard: bool = False


class Conversation(msgspec.Struct, frozen=True):
    id: str
    turns: tuple[UserTurn, ...]


def _t(text: str, *, hard: bool = False, says: tuple[str, ...] = (), new: int | None = None,
       **bookings: Fields) -> UserTurn:
    ids = {k.replace("_", "-"): v for k, v in bookings.items()}
    return UserTurn(text, Expect(says, ids, new), hard)


def _r(restaurant: str, date: str, time: str, party: int, **extra: object) -> Fields:
    return {"restaurant": restaurant, "date": date, "time": time, "party_size": party, **extra}


def _f(flight: str, date: str, fare: str, **extra: object) -> Fields:
    return {"flight": flight, "date": date, "fare_class": fare, **extra}


CANCELLED: Fields = {"status": "cancelled"}

SUITE: tuple[Conversation, ...] = (
    Conversation("silva-sakura", (
        _t("Do you have a table for two at Sakura on March 12 at 7pm?", says=("19:00",), new=0),
        _t("Great, book it under the name Silva.", says=("R-5001",),
           R_5001=_r("sakura", "2025-03-12", "19:00", 2, name="Silva")),
        _t("Actually, make that 8pm.", says=("20:00",),
           R_5001=_r("sakura", "2025-03-12", "20:00", 2)),
        _t("What's the booking reference again?", says=("R-5001",)),
    )),
    Conversation("chen-move", (
        _t("What's on booking F-2001?", says=("CA102", "March 14")),
        _t("Move it to the latest flight on March 15 that lands before noon, and keep the same "
           "fare class.", hard=True, says=("CA102", "March 15"),
           F_2001=_f("CA102", "2025-03-15", "standard")),
        _t("How much did that cost me?", says=("$50",)),
    )),
    Conversation("chen-basic", (
        _t("Can I move my flight F-2002 to March 18?", hard=True, says=("basic",),
           F_2002=_f("CA105", "2025-03-17", "basic", status="confirmed")),
        _t("Okay, then cancel it.", says=("$0",), F_2002=CANCELLED),
        _t("Find me a flight from Seattle to San Francisco on March 18 in the afternoon.",
           says=("CA105",)),
        _t("Book it in basic for Chen.", says=("F-6001",),
           F_6001=_f("CA105", "2025-03-18", "basic", name="Chen")),
    )),
    Conversation("okafor-swap", (
        _t("Cancel my dinner R-1002 and book The Green Table for four on March 14 at 8pm "
           "instead, under Okafor.", hard=True, says=("R-1002", "R-5001"),
           R_1002=CANCELLED, R_5001=_r("green-table", "2025-03-14", "20:00", 4, name="Okafor")),
        _t("What time is that for again?", says=("20:00",)),
        _t("Please add one more person.", hard=True, says=("at most 4",),
           R_5001=_r("green-table", "2025-03-14", "20:00", 4)),
    )),
    Conversation("patel-full", (
        _t("Book Sakura for three on March 14 at 7pm under Patel, and if that's full, the "
           "closest time after it.", hard=True, says=("20:00", "R-5001"),
           R_5001=_r("sakura", "2025-03-14", "20:00", 3, name="Patel")),
        _t("Can you add one more person?", says=("for 4",),
           R_5001=_r("sakura", "2025-03-14", "20:00", 4)),
        _t("What's my reference?", says=("R-5001",)),
    )),
    Conversation("rossi-date", (
        _t("I'd like a table for two at Luigi's on April 31 at 7pm.", hard=True,
           says=("30 days",), new=0),
        _t("Oh, then book April 30 instead, under Rossi.", says=("R-5001",),
           R_5001=_r("luigis", "2025-04-30", "19:00", 2, name="Rossi")),
        _t("Can we make it 7:30 instead?", says=("19:30",),
           R_5001=_r("luigis", "2025-04-30", "19:30", 2)),
    )),
    Conversation("okafor-lax", (
        _t("What flights go from SFO to LAX on March 20?", says=("CA200", "CA206")),
        _t("Book the cheapest one that leaves after 3pm with a fully refundable fare for "
           "Okafor.", hard=True, says=("CA206", "$195"),
           F_6001=_f("CA206", "2025-03-20", "flex", name="Okafor")),
        _t("When does it land?", says=("20:05",)),
    )),
    Conversation("novak-table", (
        _t("Look up booking R-1003 please.", says=("19:30",)),
        _t("Change it to 8pm.", says=("20:00",),
           R_1003=_r("green-table", "2025-03-15", "20:00", 3)),
        _t("And make it five people.", hard=True, says=("at most 4",),
           R_1003=_r("green-table", "2025-03-15", "20:00", 3)),
        _t("Okay, make it four people then.", says=("for 4",),
           R_1003=_r("green-table", "2025-03-15", "20:00", 4)),
    )),
    Conversation("okafor-push", (
        _t("Please push my flight F-2003 back by two days and keep it in the evening.",
           hard=True, says=("CA206", "March 22"), F_2003=_f("CA206", "2025-03-22", "flex")),
        _t("What's the fare difference?", says=("$6",)),
    )),
    Conversation("haddad-tomorrow", (
        _t("Any tables at Luigi's for six tomorrow evening?", says=("19:30",), new=0),
        _t("Book 7:30 for Haddad.", says=("R-5001",),
           R_5001=_r("luigis", "2025-03-11", "19:30", 6, name="Haddad")),
        _t("Cancel it, we'll go somewhere else.", says=("cancelled",), R_5001=CANCELLED),
    )),
    Conversation("chen-double", (
        _t("For booking R-1001, move it to March 13 at 8:30pm and make it four people.",
           hard=True, says=("20:30", "for 4"), R_1001=_r("sakura", "2025-03-13", "20:30", 4)),
        _t("Thanks. Is F-2001 still on March 14?", says=("March 14",)),
    )),
    Conversation("silva-flight", (
        _t("Book flight CA104 from SFO to SEA on March 21 in standard for Silva.",
           says=("F-6001",), F_6001=_f("CA104", "2025-03-21", "standard", name="Silva")),
        _t("How much was it?", says=("$139",)),
        _t("Cancel it and tell me the refund.", says=("$89",), F_6001=CANCELLED),
    )),
    Conversation("kim-unless", (
        _t("Book Luigi's for two on March 15 at 8pm under Kim, unless it's full, in which case "
           "try Sakura at the same time.", hard=True, says=("Sakura", "R-5001"), new=1,
           R_5001=_r("sakura", "2025-03-15", "20:00", 2, name="Kim")),
        _t("Is that confirmed?", says=("confirmed",)),
    )),
    Conversation("okafor-upgrade", (
        _t("Check booking F-2004 for me.", says=("CA204",)),
        _t("Upgrade it to flex.", says=("$80",), F_2004=_f("CA204", "2025-03-25", "flex")),
        _t("Move it to the earliest flight on March 26 that leaves after noon.", hard=True,
           says=("CA202",), F_2004=_f("CA202", "2025-03-26", "flex")),
    )),
    Conversation("lee-green", (
        _t("Is there a table for four at The Green Table on March 20 at 6pm?", says=("18:00",)),
        _t("Book it for Lee.", says=("R-5001",),
           R_5001=_r("green-table", "2025-03-20", "18:00", 4, name="Lee")),
        _t("Move it a week later and make it 7pm.", hard=True, says=("March 27", "19:00"),
           R_5001=_r("green-table", "2025-03-27", "19:00", 4)),
        _t("What day is it on now?", says=("March 27",)),
    )),
    Conversation("novak-flight", (
        _t("Book the latest flight from Seattle to San Francisco on March 19 that gets in "
           "before 2pm, in flex, for Novak.", hard=True, says=("CA103",),
           F_6001=_f("CA103", "2025-03-19", "flex", name="Novak")),
        _t("What's the confirmation number?", says=("F-6001",)),
    )),
    Conversation("two-cancels", (
        _t("Cancel R-1001 and also cancel F-2003, and tell me what I get back.", hard=True,
           says=("$189",), R_1001=CANCELLED, F_2003=CANCELLED),
        _t("Is R-1003 still confirmed?", says=("confirmed",)),
    )),
)


def check(store: Store, heard: str, expect: Expect) -> list[str]:
    """What the turn got wrong (empty: success)."""
    problems = []
    low = heard.lower()
    for fact in expect.says:
        if fact.lower() not in low:
            problems.append(f"reply lacks {fact!r}")
    for bid, want in expect.bookings.items():
        b = store.booking(bid)
        if b is None:
            problems.append(f"no booking {bid}")
            continue
        have = {f.name: getattr(b, f.name) for f in fields(b)}
        wrong = {k: have.get(k) for k, v in want.items() if have.get(k) != v}
        if wrong:
            problems.append(f"{bid} has {wrong}, want {({k: want[k] for k in wrong})}")
    if expect.new_bookings is not None:
        seed = store.catalog.seed_bookings
        made = sum(1 for b in store.bookings() if b.id not in seed)
        if made != expect.new_bookings:
            problems.append(f"{made} new bookings, want {expect.new_bookings}")
    return problems
