"""How the simulated tiers read a booking request: a frame of slots, constraints and intents.

This is the sim's "understanding", not a general parser: it covers the phrasings of the scenario
suite and ones like them (a booking reference, a restaurant or route, a date, a time, a party,
a name, and constraints such as "the latest flight that lands before noon").

It also says how *hard* a request is (:func:`difficulty`), the number the sim compares with a
tier's ``skill``: constraints to satisfy together, several intents, a condition, date
arithmetic and several edits at once each add to it. See the demo README for the model.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from .domain import TODAY, Catalog, FareClass

Intent = Literal["search", "book", "change", "cancel", "lookup", "question"]
Question = Literal["reference", "time", "land", "cost", "refund", "date", "status"]

_MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_NUMBERS = {
    w: i
    for i, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    )
}
_NUM = r"(\d+|one|two|three|four|five|six|seven|eight|nine|ten)"
_TIME = r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b|\bnoon\b|\b(\d{1,2}):(\d{2})\b"
_CITIES = {"san francisco": "SFO", "seattle": "SEA", "los angeles": "LAX"}
_WINDOWS = {"morning": ("05:00", "12:00"), "afternoon": ("12:00", "17:00"),
            "evening": ("17:00", "22:00")}

_INTENTS: tuple[tuple[Intent, str], ...] = (
    ("cancel", r"\bcancel\b"),
    ("change", r"\b(move|change|push|make (it|that)|add one more|upgrade)\b"),
    ("book", r"\b(book|reserve)\b"),
    (
        "search",
        r"\b(do you have|is there a table|any tables|what flights|find me|i'd like a table)\b",
    ),
    ("lookup", r"\b(look up|check booking|what's on booking|still on|still confirmed)\b"),
)
_QUESTIONS: tuple[tuple[Question, str], ...] = (
    ("reference", r"\b(reference|confirmation number)\b"),
    ("land", r"\b(land|arrive)\b"),
    ("time", r"\bwhat time\b"),
    ("refund", r"\brefund\b"),
    ("cost", r"\b(how much|cost|fare difference|price)\b"),
    ("date", r"\bwhat day\b"),
    ("status", r"\bconfirmed\b"),
)


@dataclass(frozen=True)
class Frame:
    """What one user message asks for; unset slots come from the conversation (context)."""

    intents: tuple[Intent, ...] = ()
    question: Question | None = None
    booking_ids: tuple[str, ...] = ()
    kind: Literal["restaurant", "flight"] | None = None
    restaurants: tuple[str, ...] = ()  # restaurant ids, in the order mentioned
    origin: str | None = None
    destination: str | None = None
    flight: str | None = None
    date: str | None = None  # ISO, possibly not a real date ("2025-04-31"): the user said it
    time: str | None = None
    window: tuple[str, str] | None = None
    party: int | None = None
    party_delta: int = 0
    name: str | None = None
    fare: FareClass | None = None
    # constraints on which option to pick
    latest: bool = False
    earliest: bool = False
    cheapest: bool = False
    lands_before: str | None = None
    departs_after: str | None = None
    refundable: bool = False
    keep_fare: bool = False
    # a condition: "if that's full, the closest time after it" / "unless full, try X"
    fallback_later: bool = False
    fallback_restaurant: str | None = None
    shift_days: int | None = None  # "back by two days", "a week later"
    edits: tuple[str, ...] = field(default=())  # fields a change edits, in order

    @property
    def constraints(self) -> int:
        return sum(
            (
                self.latest,
                self.earliest,
                self.cheapest,
                self.lands_before is not None,
                self.departs_after is not None,
                self.refundable,
                self.keep_fare,
                self.window is not None and "change" in self.intents,
            )
        )

    def degraded(self) -> Frame:
        """What a tier beyond its depth takes from the request: the first intent, the plain
        slots, no constraints or conditions, one edit, and "N days later" counted from today."""
        keep_party = not self.edits or self.edits[0] == "party"
        return replace(
            self,
            intents=self.intents[:1],
            booking_ids=self.booking_ids[:1],
            latest=False,
            earliest=False,
            cheapest=False,
            lands_before=None,
            departs_after=None,
            refundable=False,
            keep_fare=False,
            window=None,
            fallback_later=False,
            fallback_restaurant=None,
            party=self.party if keep_party else None,
            party_delta=self.party_delta if keep_party else 0,
            edits=self.edits[:1],
            date=(TODAY + dt.timedelta(days=self.shift_days)).isoformat()
            if self.shift_days is not None
            else self.date,
            shift_days=None,
        )


BASE_DIFFICULTY = 0.15  # a plain request: one intent, no constraints, conditions or arithmetic


def difficulty(frame: Frame) -> float:
    """How hard the request is, in [0, 1] (compared with a tier's ``skill``)."""
    d = BASE_DIFFICULTY + 0.2 * frame.constraints
    d += 0.4 if len(frame.intents) > 1 or len(frame.booking_ids) > 1 else 0.0
    d += 0.4 if frame.fallback_later or frame.fallback_restaurant else 0.0
    d += 0.3 if frame.shift_days is not None else 0.0
    d += 0.2 * max(0, len(frame.edits) - 1)
    return min(1.0, d)


def _hhmm(m: re.Match[str]) -> str:
    if m.group(0) == "noon":
        return "12:00"
    if m.group(1) is not None:
        h, mm = int(m.group(1)) % 12, int(m.group(2) or 0)
        if m.group(3) == "pm":
            h += 12
        return f"{h:02d}:{mm:02d}"
    h, mm = int(m.group(4)), int(m.group(5))
    return f"{h + 12 if h < 12 else h:02d}:{mm:02d}"  # "7:30" at dinner: the evening


def _number(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBERS[word]


def _date(low: str) -> str | None:
    m = re.search(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2})(?:st|nd|rd|th)?\b", low)
    if m:
        return f"{TODAY.year}-{_MONTHS.index(m.group(1)) + 1:02d}-{int(m.group(2)):02d}"
    if "tomorrow" in low:
        return (TODAY + dt.timedelta(days=1)).isoformat()
    if re.search(r"\btoday\b", low):
        return TODAY.isoformat()
    return None


def parse(text: str, catalog: Catalog) -> Frame:
    low = text.lower()
    ids = tuple(re.findall(r"\b[RF]-\d{4}\b", text))
    found: list[tuple[int, Intent]] = []
    for intent, pattern in _INTENTS:
        found += [(m.start(), intent) for m in re.finditer(pattern, low)]
    intents = tuple(dict.fromkeys(i for _, i in sorted(found)))
    if "book" in intents and "search" in intents:
        intents = tuple(i for i in intents if i != "search")  # "find … and book it" is a booking
    if len(ids) > 1 and intents.count("cancel") == 1 and "also cancel" in low:
        intents = ("cancel",)  # one intent over several bookings
    question = next((q for q, p in _QUESTIONS if re.search(p, low)), None)
    if not intents and question is not None:
        intents = ("question",)
    if not intents and ids:
        intents = ("lookup",)

    restaurants = tuple(
        r.id
        for pos, r in sorted(
            (low.find(k), r)
            for r in catalog.restaurants.values()
            for k in {r.name.lower(), r.name.lower().removeprefix("the ")}
            if k in low
        )
        if pos >= 0
    )
    restaurants = tuple(dict.fromkeys(restaurants))
    places = sorted(
        [(m.start(), code) for code in catalog.airports for m in re.finditer(rf"\b{code}\b", text)]
        + [(low.find(city), code) for city, code in _CITIES.items() if city in low]
    )
    origin = places[0][1] if places else None
    destination = places[1][1] if len(places) > 1 else None
    flight = next(iter(re.findall(r"\bCA\d{3}\b", text)), None)

    lands_before = departs_after = None
    rest = low
    m = re.search(r"\b(lands|gets in|arrives)\s+before\s+(" + _TIME + ")", rest)
    if m:
        lands_before = _hhmm(re.match(_TIME, m.group(2)))  # type: ignore[arg-type]
        rest = rest.replace(m.group(0), " ")
    m = re.search(r"\b(leaves|departs)\s+after\s+(" + _TIME + ")", rest)
    if m:
        departs_after = _hhmm(re.match(_TIME, m.group(2)))  # type: ignore[arg-type]
        rest = rest.replace(m.group(0), " ")
    tm = re.search(_TIME, rest)
    time = _hhmm(tm) if tm else None
    window = next((w for k, w in _WINDOWS.items() if k in low), None)
    if window and ("leaves after noon" in low):
        window = None

    party = None
    pm = re.search(r"\b(?:for|party of)\s+" + _NUM + r"\b(?!\s*(?:am|pm|:|\d))", low)
    pm = pm or re.search(r"\b" + _NUM + r"\s+people\b", low)
    if pm:
        party = _number(pm.group(1))
    delta = 1 if "one more person" in low else 0

    nm = re.search(r"\bunder (?:the name )?([A-Z][a-zA-Z]+)", text) or re.search(
        r"\bfor ([A-Z][a-z]+)\b", text
    )
    name = nm.group(1) if nm and nm.group(1) not in {"The", "Sakura", "Luigi"} else None
    fare_m = re.search(r"\b(basic|standard|flex)\b", low)
    fare: FareClass | None = fare_m.group(1) if fare_m else None  # type: ignore[assignment]

    shift = None
    sm = re.search(r"\bback by " + _NUM + r" days?\b", low)
    if sm:
        shift = _number(sm.group(1))
    elif "a week later" in low:
        shift = 7
    edits: tuple[str, ...] = ()
    edit_list: list[tuple[int, str]] = []
    if "change" in intents:
        date_m = re.search(r"\b(" + "|".join(_MONTHS) + r")\s+\d", low)
        if date_m or shift is not None:
            edit_list.append((date_m.start() if date_m else (sm.start() if sm else 0), "date"))
        if tm:
            edit_list.append((tm.start(), "time"))
        if pm or delta:
            edit_list.append((pm.start() if pm else low.find("one more"), "party"))
        edits = tuple(e for _, e in sorted(edit_list))

    kind: Literal["restaurant", "flight"] | None = None
    if restaurants or "table" in low or any(i.startswith("R-") for i in ids):
        kind = "restaurant"
    if flight or places or "flight" in low or any(i.startswith("F-") for i in ids):
        kind = "flight"
    return Frame(
        intents=intents,
        question=question,
        booking_ids=ids,
        kind=kind,
        restaurants=restaurants,
        origin=origin,
        destination=destination,
        flight=flight,
        date=_date(low),
        time=time,
        window=window,
        party=party,
        party_delta=delta,
        name=name,
        fare=fare,
        latest="latest" in low,
        earliest="earliest" in low,
        cheapest="cheapest" in low,
        lands_before=lands_before,
        departs_after=departs_after,
        refundable="refundable" in low,
        keep_fare="same fare" in low,
        fallback_later="closest time after" in low,
        fallback_restaurant=restaurants[1] if "unless" in low and len(restaurants) > 1 else None,
        shift_days=shift,
        edits=edits,
    )
