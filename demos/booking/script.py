"""The domain-backed sim script: what the light and strong booking tiers say, and how sure.

Each call writes one step of the agent loop: it reads the conversation (the user's words, the
tool results so far), plans the user's request to its end with the tool calls it still needs,
and says the next one — a tool call, or the reply once nothing is left to call.

The model of difficulty (see the README): a request has a :func:`~.nlu.difficulty`.

- The strong tier (skill ≥ difficulty) reads the whole request and knows the domain's rules
  (party sizes, fare rules, real dates, full slots); it is always sure.
- A tier whose skill is below the difficulty reads a *degraded* frame (first intent only, no
  constraints or conditions, one edit, dates counted from today). Where that makes it act
  differently from a tier that understood, it is **unsure** (low logprobs): the monitor's cue.
- A tier *just* beyond its depth (by :data:`DOUBT_MARGIN` or less) senses what it misses: the
  key detail of what it says it will do is in **doubt** (moderately low logprobs), right or
  wrong — the monitor hedges there, and the words or the call that follow settle it.
- No light tier checks the domain's rules. Breaking one is a confident mistake (high
  logprobs) that only the verifier catches — a booking on a full slot, a change to a basic
  fare, "April 31".

What a tier says in a step: the first step of a request opens with a short acknowledgement
(before a call) or an opening (before an answer); a request with parts also says what its first
call will do (:func:`narration`). Later tool steps call without words; the reply reports.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.sim import Reply, ScriptedCall, Segment, Sureness

from .domain import (
    FARE_RULES,
    Catalog,
    DomainError,
    FareClass,
    parse_date,
    say_date,
    seed_catalog,
)
from .nlu import BASE_DIFFICULTY, Frame, difficulty, parse

Result = Mapping[str, Any]
# A request this far beyond a tier's skill or less is "just beyond" it: the tier senses what it
# misses and is in doubt about its words, where one further beyond is not.
DOUBT_MARGIN = 0.2
_OPENINGS = ("Let me check.", "One moment.", "Sure, let me look.", "Alright, let me see.")
# Before a first tool call: confident, and true whatever the tools answer (no promise of a result)
_ACKS = (
    "Let me check that.",
    "One moment, I'll find out.",
    "Sure, let me look that up.",
    "Okay, I'm on it.",
)


@dataclass(frozen=True)
class Call:
    name: str
    args: Mapping[str, object]


@dataclass(frozen=True)
class Say:
    text: str


Action = Call | Say


class _Pending(Exception):
    """Raised by the planner at the first tool call whose result is not in the conversation."""

    def __init__(self, call: Call) -> None:
        super().__init__(call.name)
        self.call = call


class _Tools:
    """The planner's view of tools: a result already in this turn, or the call still to make."""

    def __init__(self, results: Sequence[Result]) -> None:
        self._results = results

    def __call__(self, name: str, /, **args: object) -> Result:
        args = {k: v for k, v in args.items() if v is not None}
        for r in self._results:
            if r.get("tool") == name and r.get("args") == args:
                return r
        raise _Pending(Call(name, args))


@dataclass(frozen=True)
class Context:
    """What the conversation before this request established."""

    slots: Frame  # earlier requests' slots merged, latest first
    bookings: Mapping[str, Result]  # the latest known view of each booking, by id
    last_booking: Result | None  # the latest result that carried a booking
    last_search: Result | None


def _results(messages: Sequence[Message]) -> list[Result]:
    out: list[Result] = []
    for m in messages:
        if m.role == "tool" and m.content:
            try:
                r = msgspec.json.decode(m.content)
            except msgspec.DecodeError:
                continue
            if isinstance(r, dict):
                out.append(r)
    return out


def _merge(old: Frame, new: Frame) -> Frame:
    return replace(
        old,
        kind=new.kind or old.kind,
        restaurants=new.restaurants or old.restaurants,
        origin=new.origin or old.origin,
        destination=new.destination or old.destination,
        date=new.date or old.date,
        time=new.time or old.time,
        party=new.party or old.party,
        name=new.name or old.name,
    )


def context(messages: Sequence[Message], results: Sequence[Result], catalog: Catalog) -> Context:
    slots = Frame()
    for m in messages:
        if m.role == "user" and m.content:
            slots = _merge(slots, parse(m.content, catalog))
    bookings: dict[str, Result] = {}
    last_booking = last_search = None
    for r in results:
        if not r.get("ok"):
            continue
        b = r.get("booking")
        if isinstance(b, dict):
            bookings[str(b["booking_id"])] = b
            last_booking = r
        elif r.get("tool") == "search_availability":
            last_search = r
    return Context(slots, bookings, last_booking, last_search)


# --- sentences ----------------------------------------------------------------------------


def _money(v: object) -> str:
    return f"${v}"


def describe_booking(b: Result) -> str:
    if b["kind"] == "restaurant":
        return (
            f"{b['booking_id']} is {b['restaurant']} on {say_date(b['date'])} at {b['time']} "
            f"for {b['party_size']}, under {b['name']}, {b['status']}."
        )
    return (
        f"{b['booking_id']} is flight {b['flight']} from {b['origin']} to {b['destination']} on "
        f"{say_date(b['date'])}, departing {b['depart']} and landing {b['arrive']}, "
        f"{b['fare_class']} fare, {b['status']}."
    )


def _failed(what: str, r: Result) -> str:
    return f"I couldn't {what}: {r.get('message', 'the booking system said no')}."


def describe_search(r: Result, frame_time: str | None) -> str:
    if not r.get("ok"):
        return _failed("search", r)
    options = r.get("options") or []
    notes = " ".join(f"{n}." for n in r.get("notes") or [])
    args = r.get("args") or {}
    if not options:
        return f"I'm sorry, nothing is free then. {notes}".strip()
    when = say_date(str(args.get("date")))
    if args.get("kind") == "flight":
        parts = [
            f"{o['flight']} departing {o['depart']} and landing {o['arrive']} from "
            f"{_money(min(o['fares'].values()))}"
            for o in options
            if o["fares"]
        ]
        return f"On {when} there is " + "; ".join(parts) + "."
    party = args.get("party_size", 2)
    by_place: dict[str, list[str]] = {}
    for o in options:
        by_place.setdefault(str(o["restaurant"]), []).append(str(o["time"]))
    sentences = []
    for place, times in by_place.items():
        if frame_time in times and args.get("time"):
            sentences.append(f"Yes, {place} has a table for {party} on {when} at {frame_time}.")
        else:
            shown = ", ".join(times[:6])
            sentences.append(f"{place} has tables for {party} on {when} at {shown}.")
    return " ".join(sentences)


def _done(what: str, r: Result) -> str:
    if not r.get("ok"):
        return _failed(what, r)
    b = r["booking"]
    if r.get("tool") == "cancel_booking":
        if b["kind"] == "flight":
            refund = r.get("refund", 0)
            why = " Basic fares are not refundable." if b["fare_class"] == "basic" else ""
            return f"I've cancelled {b['booking_id']}.{why} The refund is {_money(refund)}."
        return f"I've cancelled {b['booking_id']}."
    if b["kind"] == "restaurant":
        verb = "booked" if r.get("tool") == "create_booking" else "changed it:"
        return (
            f"I've {verb} {b['restaurant']} for {b['party_size']} on {say_date(b['date'])} at "
            f"{b['time']} under {b['name']}; the reference is {b['booking_id']}."
        )
    verb = "booked" if r.get("tool") == "create_booking" else "moved you to"
    return (
        f"I've {verb} flight {b['flight']} from {b['origin']} to {b['destination']} on "
        f"{say_date(b['date'])}, departing {b['depart']} and landing {b['arrive']}, "
        f"{b['fare_class']} fare; you pay {_money(r.get('charged', 0))}. "
        f"The reference is {b['booking_id']}."
    )


def answer_question(frame: Frame, ctx: Context) -> str:
    r = ctx.last_booking
    if r is None:
        return "I don't have a booking in front of me yet; what's the reference?"
    b = r["booking"]
    flight = b["kind"] == "flight"
    match frame.question:
        case "reference":
            return f"Your reference is {b['booking_id']}."
        case "time":
            return f"It's at {b['depart'] if flight else b['time']} on {say_date(b['date'])}."
        case "land":
            return f"It lands at {b['arrive']}." if flight else "That's a table, not a flight."
        case "cost":
            paid = r.get("charged", b.get("price"))
            return f"That came to {_money(paid)}." if paid is not None else "There's no charge."
        case "refund":
            return f"The refund is {_money(r.get('refund', 0))}."
        case "date":
            return f"It's on {say_date(b['date'])}."
        case _:
            return f"Yes, {b['booking_id']} is {b['status']}."


# --- what a tier says while it works ------------------------------------------------------


def _day(iso: object) -> str:
    """How a date in a call is said, even one that does not exist ("April 31")."""
    try:
        return say_date(str(iso))
    except ValueError:
        y, m, d = (int(x) for x in str(iso).split("-"))
        return f"{dt.date(y, m, 1):%B} {d}"


def _window(a: Mapping[str, object]) -> str:
    start, end, at = a.get("time_from"), a.get("time_to"), a.get("time")
    if at:
        return f" at {at}"
    if start and end:
        return f" between {start} and {end}"
    if start:
        return f" after {start}"
    if end:
        return f" before {end}"
    return ""


def _changes(a: Mapping[str, object]) -> list[str]:
    parts = [f"to flight {a['flight']}"] if a.get("flight") else []
    if a.get("date"):
        parts.append(f"{'on' if parts else 'to'} {_day(a['date'])}")
    if a.get("time"):
        parts.append(f"{'at' if parts else 'to'} {a['time']}")
    if a.get("party_size"):
        parts.append(f"for {a['party_size']} people")
    if a.get("fare_class"):
        parts.append(f"in {a['fare_class']}")
    return parts


def narration(call: Call) -> tuple[str, str, str]:
    """What a tier says of the call it is about to make: a plain lead, the key detail the
    request decides (what a tier just beyond its depth is in doubt about) and the rest, which
    is never shorter than a word and a full stop. Bookings and changes are only tried ("I'll
    see if I can"): the verifier or the booking system may still refuse them."""
    a = call.args
    match call.name:
        case "lookup_booking":
            return "I'll pull up booking", f" {a.get('booking_id')}", " first."
        case "cancel_booking":
            return "I'll go ahead and cancel", f" {a.get('booking_id')}", " for you."
        case "search_availability" if a.get("kind") == "flight":
            route = f" from {a['origin']} to {a['destination']}" if a.get("origin") else ""
            lead = f"I'll go through the flights{route}"
            return lead, f" on {_day(a.get('date'))}", f"{_window(a)} first."
        case "search_availability":
            party = a.get("party_size", 2)
            place = a.get("restaurant")
            lead = f"I'll see what {place} has for {party}" if place else f"I'll look for {party}"
            return lead, f" on {_day(a.get('date'))}", f"{_window(a)} first."
        case "create_booking" if a.get("kind") == "flight":
            lead = "I'll see if I can get you on"
            return lead, f" flight {a.get('flight')}", f" in {a.get('fare_class')}."
        case "create_booking":
            lead = f"I'll see if I can book {a.get('restaurant')}"
            return lead, f" at {a.get('time')}", f" for {a.get('party_size')}."
        case _:
            first, *more = _changes(a) or ["as you asked"]
            rest = "".join(f" {p}" for p in more) if more else " for you"
            return f"I'll see if I can move {a.get('booking_id')}", f" {first}", rest + "."


# --- the planner --------------------------------------------------------------------------


class _Planner:
    """Plans one request to its end. ``rules``: check the domain's rules before acting."""

    def __init__(self, frame: Frame, ctx: Context, tools: _Tools, catalog: Catalog, rules: bool):
        self.f = frame
        self.ctx = ctx
        self.tool = tools
        self.cat = catalog
        self.rules = rules

    def run(self) -> str:
        texts: list[str] = []
        for intent in self.f.intents or ("question",):
            text = getattr(self, f"_{intent}")()
            texts.append(text)
            if text.startswith(("I couldn't", "I'm sorry", "Sorry")) or "cannot" in text:
                break  # don't go on with the rest of a request after a refusal
        return " ".join(texts)

    # slot helpers ---------------------------------------------------------------------------

    def _slot(self, name: str) -> Any:
        return getattr(self.f, name) or getattr(self.ctx.slots, name)

    def _target(self) -> str | None:
        if self.f.booking_ids:
            return self.f.booking_ids[0]
        if self.ctx.last_booking is not None:
            return str(self.ctx.last_booking["booking"]["booking_id"])
        return None

    def _booking(self, bid: str) -> Result | None:
        known = self.ctx.bookings.get(bid)
        if known is not None:
            return known
        r = self.tool("lookup_booking", booking_id=bid)
        return r["booking"] if r.get("ok") else None

    def _bad_date(self, date: str | None) -> str | None:
        if not self.rules or date is None:
            return None
        try:
            parse_date(date)
        except DomainError:
            y, m, d = (int(x) for x in date.split("-"))
            month = dt.date(y, m, 1)
            days = ((month + dt.timedelta(days=32)).replace(day=1) - month).days
            if d > days:
                return (
                    f"{month:%B} has only {days} days, so {month:%B} {d} isn't a date. "
                    f"Would {month:%B} {days} work instead?"
                )
            return f"I can only book from {say_date('2025-03-10')} to {say_date('2025-04-30')}."
        return None

    def _too_many(self, restaurant: str, party: int) -> str | None:
        r = self.cat.restaurants[restaurant]
        if self.rules and party > r.max_party:
            return (
                f"I'm sorry, {r.name} seats parties of at most {r.max_party}, so I can't make "
                f"it {party}. Would you like me to look at Luigi's instead?"
            )
        return None

    # intents ----------------------------------------------------------------------------

    def _question(self) -> str:
        return answer_question(self.f, self.ctx)

    def _lookup(self) -> str:
        bid = self._target()
        if bid is None:
            return "Which booking reference should I look up?"
        r = self.tool("lookup_booking", booking_id=bid)
        return describe_booking(r["booking"]) if r.get("ok") else _failed("find it", r)

    def _cancel(self) -> str:
        ids = self.f.booking_ids if self.f.intents == ("cancel",) else self.f.booking_ids[:1]
        targets = list(ids) or [t for t in [self._target()] if t]
        out = []
        total = 0
        for bid in targets:
            r = self.tool("cancel_booking", booking_id=bid)
            out.append(_done("cancel it", r))
            total += int(r.get("refund", 0)) if r.get("ok") else 0
        if len(targets) > 1:
            out.append(f"In total you get {_money(total)} back.")
        return " ".join(out) or "Which booking should I cancel?"

    def _search(self) -> str:
        date = self._slot("date")
        if (bad := self._bad_date(date)) is not None:
            return bad
        if self._slot("kind") == "flight":
            window = self.f.window or (None, None)
            r = self.tool(
                "search_availability",
                kind="flight",
                date=date,
                origin=self._slot("origin"),
                destination=self._slot("destination"),
                time_from=window[0],
                time_to=window[1],
            )
            return describe_search(r, None)
        places = self._slot("restaurants")
        party = self._slot("party") or 2
        if places and (too := self._too_many(places[0], party)) is not None:
            return too
        time = self.f.time
        span = self.f.window if time is None else None
        r = self.tool(
            "search_availability",
            kind="restaurant",
            date=date,
            restaurant=self.cat.restaurants[places[0]].name if places else None,
            party_size=party,
            time=time,
            time_from=span[0] if span else None,
            time_to=span[1] if span else None,
        )
        return describe_search(r, time)

    def _book(self) -> str:
        name = self._slot("name")
        if name is None:
            return "What name should I put the booking under?"
        date = self._slot("date")
        if (bad := self._bad_date(date)) is not None:
            return bad
        if self._slot("kind") == "flight":
            return self._book_flight(name, date)
        places = self._slot("restaurants")
        if not places:
            return "Which restaurant would you like?"
        place, party, time = places[0], self._slot("party") or 2, self._slot("time")
        if (too := self._too_many(place, party)) is not None:
            return too
        r = self.cat.restaurants[place]
        if not self._known_free(r.name, date, time, party):
            s = self.tool(
                "search_availability",
                kind="restaurant",
                date=date,
                restaurant=r.name,
                party_size=party,
                time=None if self.f.fallback_later else time,
                time_from=time if self.f.fallback_later else None,
            )
            free = [str(o["time"]) for o in s.get("options") or []]
            chosen = time if time in free else None
            if chosen is None and self.f.fallback_later and free:
                chosen = min(free)
            if chosen is None and self.f.fallback_restaurant is not None:
                alt = self.cat.restaurants[self.f.fallback_restaurant]
                s2 = self.tool(
                    "search_availability",
                    kind="restaurant",
                    date=date,
                    restaurant=alt.name,
                    party_size=party,
                    time=time,
                )
                if time in [str(o["time"]) for o in s2.get("options") or []]:
                    r, chosen = alt, time
            if chosen is None:
                if self.rules:
                    return (
                        f"I'm sorry, {r.name} is full on {say_date(date)} at {time}. "
                        + describe_search(s, None)
                    )
                chosen = time  # a tier that does not check the slot books what was asked
            time = chosen
        c = self.tool(
            "create_booking",
            kind="restaurant",
            date=date,
            name=name,
            restaurant=r.name,
            time=time,
            party_size=party,
        )
        return _done("book it", c)

    def _known_free(self, place: str, date: str, time: str | None, party: int) -> bool:
        s = self.ctx.last_search
        if s is None or (s.get("args") or {}).get("party_size") != party:
            return False
        return any(
            (o.get("restaurant"), o.get("date"), o.get("time")) == (place, date, time)
            for o in s.get("options") or []
        )

    def _fare(self, current: str | None = None) -> FareClass | None:
        if self.f.fare is not None:
            return self.f.fare
        if self.f.refundable:
            return "flex"
        if self.f.keep_fare and current is not None:
            return current  # type: ignore[return-value]
        return None

    def _pick(
        self, options: Sequence[Result], fare: str | None, prefer: str | None
    ) -> Result | None:
        f = self.f
        cands = [o for o in options if fare is None or fare in o["fares"]]
        if f.departs_after:
            cands = [o for o in cands if o["depart"] >= f.departs_after]
        if f.lands_before:
            cands = [o for o in cands if o["arrive"] < f.lands_before]
        if f.window and ("change" in f.intents or "book" in f.intents):
            cands = [o for o in cands if f.window[0] <= o["depart"] <= f.window[1]]
        if not cands:
            return None
        if f.cheapest:
            return min(cands, key=lambda o: o["fares"][fare] if fare else min(o["fares"].values()))
        if f.latest:
            return max(cands, key=lambda o: o["depart"])
        if f.earliest:
            return min(cands, key=lambda o: o["depart"])
        same = [o for o in cands if o["flight"] == prefer]
        return same[0] if same else cands[0]

    def _flight_options(
        self, date: str, origin: str | None, destination: str | None
    ) -> Sequence[Result]:
        s = self.ctx.last_search
        args = (s or {}).get("args") or {}
        if s is not None and (args.get("date"), args.get("origin"), args.get("destination")) == (
            date,
            origin,
            destination,
        ):
            return list(s.get("options") or [])
        r = self.tool(
            "search_availability", kind="flight", date=date, origin=origin, destination=destination
        )
        return list(r.get("options") or [])

    def _book_flight(self, name: str, date: str) -> str:
        fare = self._fare() or "basic"
        flight = self.f.flight
        if flight is None:
            s = self.ctx.last_search
            origin = self._slot("origin") or ((s or {}).get("args") or {}).get("origin")
            dest = self._slot("destination") or ((s or {}).get("args") or {}).get("destination")
            pick = self._pick(self._flight_options(date, origin, dest), fare, None)
            if pick is None:
                return "I'm sorry, no flight that day matches all of that."
            flight = str(pick["flight"])
        c = self.tool(
            "create_booking", kind="flight", date=date, name=name, flight=flight, fare_class=fare
        )
        return _done("book it", c)

    def _change(self) -> str:
        bid = self._target()
        if bid is None:
            return "Which booking should I change?"
        b = self._booking(bid)
        if b is None:
            return f"I couldn't find {bid}."
        if b["kind"] == "flight":
            return self._change_flight(bid, b)
        return self._change_table(bid, b)

    def _new_date(self, b: Result) -> str | None:
        if self.f.shift_days is not None:
            day = dt.date.fromisoformat(str(b["date"])) + dt.timedelta(days=self.f.shift_days)
            return day.isoformat()
        return self.f.date

    def _change_table(self, bid: str, b: Result) -> str:
        place = self.cat.restaurant_named(str(b["restaurant"]))
        assert place is not None
        date = self._new_date(b)
        if (bad := self._bad_date(date)) is not None:
            return bad
        party = self.f.party or (int(b["party_size"]) + self.f.party_delta)
        if (too := self._too_many(place.id, party)) is not None:
            return too
        time = self.f.time
        when, at = date or str(b["date"]), time or str(b["time"])
        s = self.tool(
            "search_availability",
            kind="restaurant",
            date=when,
            restaurant=place.name,
            party_size=party,
            time=at,
        )
        if self.rules and at not in [str(o["time"]) for o in s.get("options") or []]:
            return f"I'm sorry, {place.name} is full on {say_date(when)} at {at}."
        c = self.tool(
            "change_booking",
            booking_id=bid,
            date=date if date != b["date"] else None,
            time=time if time != b["time"] else None,
            party_size=party if party != b["party_size"] else None,
        )
        return _done("change it", c)

    def _change_flight(self, bid: str, b: Result) -> str:
        f = self.f
        current = str(b["fare_class"])
        date = self._new_date(b)
        moving = date is not None or f.flight is not None or f.latest or f.earliest
        if not moving and f.fare is not None:
            c = self.tool("change_booking", booking_id=bid, fare_class=f.fare)
            return _done("change it", c)
        if self.rules and not FARE_RULES[current].changeable:  # type: ignore[index]
            return (
                f"{bid} is a basic fare, and basic fares cannot be changed. I can cancel it, "
                "without a refund, and book you a new flight instead."
            )
        date = date or str(b["date"])
        if (bad := self._bad_date(date)) is not None:
            return bad
        window = f.window or ((f.departs_after, None) if f.departs_after else (None, None))
        r = self.tool(
            "search_availability",
            kind="flight",
            date=date,
            origin=b["origin"],
            destination=b["destination"],
            time_from=window[0],
            time_to=window[1],
        )
        fare = self._fare(current)
        pick = self._pick(list(r.get("options") or []), fare or current, str(b["flight"]))
        if pick is None:
            return "I'm sorry, no flight that day matches all of that."
        c = self.tool(
            "change_booking", booking_id=bid, flight=pick["flight"], date=date, fare_class=fare
        )
        return _done("change it", c)


# --- the script ---------------------------------------------------------------------------


def next_action(
    messages: Sequence[Message], frame: Frame, catalog: Catalog, *, rules: bool
) -> Action:
    """The next step of the current user request: a tool call, or the reply."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    earlier = _results(messages[: last_user + 1])
    now = _results(messages[last_user + 1 :])
    ctx = context(messages[:last_user], earlier, catalog)
    if now:
        # a booking looked up in this turn is known (no second lookup); one known before it
        # keeps its state from the start of the turn, which is what the request refers to
        first_seen: dict[str, Result] = {}
        for r in now:
            b = r.get("booking") if r.get("ok") else None
            if isinstance(b, dict):
                first_seen.setdefault(str(b["booking_id"]), b)
        ctx = replace(ctx, bookings={**first_seen, **ctx.bookings})
    try:
        return Say(_Planner(frame, ctx, _Tools(now), catalog, rules).run())
    except _Pending as pending:
        return pending.call


def _did_work(messages: Sequence[Message]) -> bool:
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    return any(
        r.get("ok") and r.get("tool") in ("create_booking", "change_booking", "cancel_booking")
        for r in _results(messages[last_user + 1 :])
    )


def _pick(options: Sequence[str], text: str) -> str:
    """One of ``options``, the same for every tier that reads ``text``."""
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=2).digest(), "big")
    return options[h % len(options)]


def _opening(text: str) -> str:
    return _pick(_OPENINGS, text)


def _ack(text: str) -> str:
    return _pick(_ACKS, text)


class BookingScript:
    """The :class:`~realtime_cascade.providers.sim.Script` of the booking tiers."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog if catalog is not None else seed_catalog()

    def reply(self, request: TierRequest, skill: float, rng: random.Random) -> Reply:
        messages = request.messages
        user = next((m for m in reversed(messages) if m.role == "user"), None)
        text = (user.content or "") if user else ""
        frame = parse(text, self._catalog)
        strong = next_action(messages, frame, self._catalog, rules=True)
        # Reporting what the tools did is within every tier's depth: once the request's tool
        # work is done and succeeded, a tier reads the results like any other.
        beyond = difficulty(frame) > skill and not (
            isinstance(strong, Say) and _did_work(messages)
        )
        mine = strong
        if skill < 1.0:  # below the top tier, the domain's rules go unchecked
            mine = next_action(
                messages, frame.degraded() if beyond else frame, self._catalog, rules=False
            )
        margin = difficulty(frame) - skill
        sure: Sureness = "unsure" if beyond and mine != strong else "sure"
        first_step = messages and messages[-1].role == "user"
        opening = (Segment(_opening(text)),) if first_step else ()
        if isinstance(mine, Call):
            if not request.tools:
                return Reply((*opening, Segment(" I can't reach the booking system right now.")))
            args = msgspec.json.encode(dict(mine.args)).decode()
            words: tuple[Segment, ...] = ()
            if first_step:
                # acknowledge before the first call, so the listener hears something long
                # before the tool round trip ends; the trailing space is the token after the
                # phrase that lets the speech gate release it while only call tokens follow
                words = (Segment(_ack(text) + " "),)
                if difficulty(frame) > BASE_DIFFICULTY:
                    # a request with parts: say what comes first. Where the call is wrong, so
                    # are the words about it, and the monitor must stop them before the phrase
                    # is out: the rest (three tokens at least, with the trailing space) is as
                    # unsure as the call.
                    lead, key, rest = narration(mine)
                    key_sure: Sureness = "doubt" if 0 < margin <= DOUBT_MARGIN else sure
                    words += (Segment(lead), Segment(key, key_sure), Segment(rest + " ", sure))
            return Reply(words, (ScriptedCall(mine.name, args, sure),))
        body = (" " if opening else "") + mine.text
        return Reply((*opening, Segment(body, sure)))


SCRIPT = BookingScript()
