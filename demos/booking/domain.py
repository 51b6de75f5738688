"""The booking world: an immutable seeded catalog and a mutable store per conversation.

The catalog is the seed every conversation starts from (restaurants, a daily flight schedule,
fare rules, bookings that already exist, slots that are already full). A :class:`Store` is one
conversation's copy of the world's *changes* (new, changed and cancelled bookings) on top of the
catalog, so conversations run concurrently without sharing state.

Errors are typed (``DomainError`` subclasses with a stable ``code``) because the tool executor
hands them to the model as results and the verifier reports them as reasons::

    DomainError
    ├── InvalidDate        not a calendar date, or outside the bookable window
    ├── UnknownEntity      no such restaurant, flight, time slot or fare class
    ├── UnknownBooking     no booking with that reference
    ├── SlotUnavailable    the slot or fare is full
    └── PolicyViolation    a rule forbids it (party too large, basic fare change, …)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, Protocol

FareClass = Literal["basic", "standard", "flex"]
FARE_CLASSES: tuple[FareClass, ...] = ("basic", "standard", "flex")
Status = Literal["confirmed", "cancelled"]

# The demo's fixed "today": relative dates ("tomorrow") resolve against it, so runs repeat.
TODAY = dt.date(2025, 3, 10)
LAST_BOOKABLE = dt.date(2025, 4, 30)


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidDate(DomainError):
    code = "invalid_date"


class UnknownEntity(DomainError):
    code = "unknown_entity"


class UnknownBooking(DomainError):
    code = "unknown_booking"


class SlotUnavailable(DomainError):
    code = "unavailable"


class PolicyViolation(DomainError):
    code = "policy"


@dataclass(frozen=True)
class FareRule:
    changeable: bool
    change_fee: int  # USD, charged when the flight or date changes
    refundable: bool
    cancel_fee: int  # USD kept on cancellation of a refundable fare


FARE_RULES: Mapping[FareClass, FareRule] = MappingProxyType(
    {
        "basic": FareRule(changeable=False, change_fee=0, refundable=False, cancel_fee=0),
        "standard": FareRule(changeable=True, change_fee=50, refundable=True, cancel_fee=50),
        "flex": FareRule(changeable=True, change_fee=0, refundable=True, cancel_fee=0),
    }
)


@dataclass(frozen=True)
class Restaurant:
    id: str
    name: str
    max_party: int
    times: tuple[str, ...]  # "HH:MM" slots offered every day
    tables: int  # tables per slot


@dataclass(frozen=True)
class Flight:
    number: str
    origin: str
    destination: str
    depart: str
    arrive: str
    fares: Mapping[FareClass, int]  # USD


@dataclass(frozen=True)
class RestaurantBooking:
    id: str
    restaurant: str  # restaurant id
    date: str
    time: str
    party_size: int
    name: str
    status: Status = "confirmed"
    kind: Literal["restaurant"] = "restaurant"


@dataclass(frozen=True)
class FlightBooking:
    id: str
    flight: str
    date: str
    fare_class: FareClass
    name: str
    price: int
    status: Status = "confirmed"
    kind: Literal["flight"] = "flight"


Booking = RestaurantBooking | FlightBooking


def _half_hours(first: str, last: str) -> tuple[str, ...]:
    h, m = map(int, first.split(":"))
    out = []
    while f"{h:02d}:{m:02d}" <= last:
        out.append(f"{h:02d}:{m:02d}")
        h, m = (h, 30) if m == 0 else (h + 1, 0)
    return tuple(out)


def _flight(number: str, route: str, times: str, fares: tuple[int, int, int]) -> Flight:
    origin, destination = route.split("-")
    depart, arrive = times.split("-")
    prices = MappingProxyType(dict(zip(FARE_CLASSES, fares, strict=True)))
    return Flight(number, origin, destination, depart, arrive, prices)


@dataclass(frozen=True)
class Catalog:
    restaurants: Mapping[str, Restaurant]
    flights: Mapping[str, Flight]
    seed_bookings: Mapping[str, Booking]
    full_slots: frozenset[tuple[str, str, str]]  # (restaurant, date, time) with no table left
    sold_out: frozenset[tuple[str, str, FareClass]]  # (flight, date, fare class)
    seats_per_fare: int = 9
    airports: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType(
            {"SFO": "San Francisco", "SEA": "Seattle", "LAX": "Los Angeles"}
        )
    )

    def restaurant_named(self, text: str) -> Restaurant | None:
        key = text.strip().lower()
        for r in self.restaurants.values():
            if key in (r.id, r.name.lower()):
                return r
        return None


def seed_catalog() -> Catalog:
    """The world every conversation starts from (fixed, so the suite's ground truth holds)."""
    restaurants = {
        "sakura": Restaurant("sakura", "Sakura", 6, _half_hours("17:30", "21:30"), 3),
        "luigis": Restaurant("luigis", "Luigi's", 8, _half_hours("18:00", "22:00"), 4),
        "green-table": Restaurant(
            "green-table", "The Green Table", 4, _half_hours("18:00", "21:00"), 2
        ),
    }
    flights = [
        _flight("CA100", "SFO-SEA", "06:10-08:20", (89, 149, 249)),
        _flight("CA102", "SFO-SEA", "09:40-11:50", (99, 159, 259)),
        _flight("CA104", "SFO-SEA", "12:30-14:40", (79, 139, 239)),
        _flight("CA106", "SFO-SEA", "17:45-19:55", (109, 169, 269)),
        _flight("CA101", "SEA-SFO", "07:00-09:10", (89, 149, 249)),
        _flight("CA103", "SEA-SFO", "11:15-13:25", (99, 159, 259)),
        _flight("CA105", "SEA-SFO", "15:30-17:40", (79, 139, 239)),
        _flight("CA107", "SEA-SFO", "19:20-21:30", (109, 169, 269)),
        _flight("CA200", "SFO-LAX", "08:00-09:25", (69, 119, 199)),
        _flight("CA202", "SFO-LAX", "13:00-14:25", (59, 109, 189)),
        _flight("CA204", "SFO-LAX", "16:10-17:35", (79, 129, 209)),
        _flight("CA206", "SFO-LAX", "18:40-20:05", (65, 115, 195)),
        _flight("CA201", "LAX-SFO", "07:30-08:55", (69, 119, 199)),
        _flight("CA203", "LAX-SFO", "12:00-13:25", (59, 109, 189)),
        _flight("CA205", "LAX-SFO", "17:00-18:25", (79, 129, 209)),
        _flight("CA207", "LAX-SFO", "20:30-21:55", (65, 115, 195)),
    ]
    seed: list[Booking] = [
        RestaurantBooking("R-1001", "sakura", "2025-03-12", "19:00", 2, "Chen"),
        RestaurantBooking("R-1002", "luigis", "2025-03-14", "20:00", 4, "Okafor"),
        RestaurantBooking("R-1003", "green-table", "2025-03-15", "19:30", 3, "Novak"),
        FlightBooking("F-2001", "CA102", "2025-03-14", "standard", "Chen", 159),
        FlightBooking("F-2002", "CA105", "2025-03-17", "basic", "Chen", 79),
        FlightBooking("F-2003", "CA202", "2025-03-20", "flex", "Okafor", 189),
        FlightBooking("F-2004", "CA204", "2025-03-25", "standard", "Okafor", 129),
    ]
    return Catalog(
        restaurants=MappingProxyType(restaurants),
        flights=MappingProxyType({f.number: f for f in flights}),
        seed_bookings=MappingProxyType({b.id: b for b in seed}),
        full_slots=frozenset(
            {
                ("sakura", "2025-03-14", "19:00"),
                ("sakura", "2025-03-14", "19:30"),
                ("luigis", "2025-03-15", "20:00"),
                ("luigis", "2025-03-11", "19:00"),
            }
        ),
        sold_out=frozenset({("CA100", "2025-03-15", "standard")}),
    )


def parse_date(text: str) -> dt.date:
    """A bookable date from ``YYYY-MM-DD``; :class:`InvalidDate` says why not."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidDate(f"{text} is not a calendar date") from None
    if not TODAY <= day <= LAST_BOOKABLE:
        raise InvalidDate(
            f"{text} is outside the bookable window ({TODAY.isoformat()} to "
            f"{LAST_BOOKABLE.isoformat()})"
        )
    return day


def say_date(iso: str) -> str:
    """``2025-03-14`` → ``March 14`` (how the agent says dates)."""
    day = dt.date.fromisoformat(iso)
    return f"{day:%B} {day.day}"


class StateView(Protocol):
    """What the verifier and the search need to read: the catalog plus bookings so far."""

    @property
    def catalog(self) -> Catalog: ...

    def booking(self, booking_id: str) -> Booking | None: ...

    def bookings(self) -> Iterator[Booking]: ...


def tables_left(view: StateView, restaurant: str, date: str, time: str) -> int:
    cat = view.catalog
    r = cat.restaurants[restaurant]
    if (restaurant, date, time) in cat.full_slots:
        return 0
    taken = sum(
        1
        for b in view.bookings()
        if isinstance(b, RestaurantBooking)
        and b.status == "confirmed"
        and (b.restaurant, b.date, b.time) == (restaurant, date, time)
        and b.id not in cat.seed_bookings  # seed bookings are part of the seed capacity
    )
    return max(0, r.tables - taken)


def seats_left(view: StateView, flight: str, date: str, fare: FareClass) -> int:
    cat = view.catalog
    if (flight, date, fare) in cat.sold_out:
        return 0
    taken = sum(
        1
        for b in view.bookings()
        if isinstance(b, FlightBooking)
        and b.status == "confirmed"
        and (b.flight, b.date, b.fare_class) == (flight, date, fare)
        and b.id not in cat.seed_bookings
    )
    return max(0, cat.seats_per_fare - taken)


class SeedView:
    """The catalog's own state (no changes): what a verifier without a session can check."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def booking(self, booking_id: str) -> Booking | None:
        return self._catalog.seed_bookings.get(booking_id)

    def bookings(self) -> Iterator[Booking]:
        return iter(self._catalog.seed_bookings.values())


class Store:
    """One conversation's bookings: the seed plus its own changes. Not shared between tasks."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog if catalog is not None else seed_catalog()
        self._bookings: dict[str, Booking] = dict(self._catalog.seed_bookings)
        self._next = {"R": 5001, "F": 6001}

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def booking(self, booking_id: str) -> Booking | None:
        return self._bookings.get(booking_id)

    def bookings(self) -> Iterator[Booking]:
        return iter(list(self._bookings.values()))

    def get(self, booking_id: str) -> Booking:
        b = self._bookings.get(booking_id)
        if b is None:
            raise UnknownBooking(f"there is no booking {booking_id}")
        return b

    # -- restaurants -------------------------------------------------------------------------

    def check_table(
        self, restaurant: str, date: str, time: str, party: int, *, ignore: str | None = None
    ) -> Restaurant:
        r = self._catalog.restaurants.get(restaurant)
        if r is None:
            raise UnknownEntity(f"there is no restaurant {restaurant!r}")
        parse_date(date)
        if time not in r.times:
            raise UnknownEntity(
                f"{r.name} has no {time} seating (from {r.times[0]} to {r.times[-1]})"
            )
        if party > r.max_party:
            raise PolicyViolation(f"{r.name} seats parties of at most {r.max_party}")
        current = self._bookings.get(ignore) if ignore else None
        same_slot = (
            isinstance(current, RestaurantBooking)
            and (current.restaurant, current.date, current.time) == (restaurant, date, time)
        )
        if not same_slot and tables_left(self, restaurant, date, time) == 0:
            raise SlotUnavailable(f"{r.name} is full on {say_date(date)} at {time}")
        return r

    def book_table(
        self, restaurant: str, date: str, time: str, party: int, name: str
    ) -> RestaurantBooking:
        self.check_table(restaurant, date, time, party)
        booking = RestaurantBooking(self._new_id("R"), restaurant, date, time, party, name)
        self._bookings[booking.id] = booking
        return booking

    # -- flights -----------------------------------------------------------------------------

    def check_seat(self, flight: str, date: str, fare: FareClass) -> Flight:
        f = self._catalog.flights.get(flight)
        if f is None:
            raise UnknownEntity(f"there is no flight {flight}")
        parse_date(date)
        if seats_left(self, flight, date, fare) == 0:
            raise SlotUnavailable(f"{flight} on {say_date(date)} has no {fare} seats left")
        return f

    def book_seat(self, flight: str, date: str, fare: FareClass, name: str) -> FlightBooking:
        f = self.check_seat(flight, date, fare)
        booking = FlightBooking(self._new_id("F"), flight, date, fare, name, f.fares[fare])
        self._bookings[booking.id] = booking
        return booking

    # -- changes -----------------------------------------------------------------------------

    def change_table(
        self,
        booking_id: str,
        *,
        date: str | None,
        time: str | None,
        party: int | None,
    ) -> RestaurantBooking:
        b = self._confirmed(booking_id)
        if not isinstance(b, RestaurantBooking):
            raise PolicyViolation(f"{booking_id} is a flight booking, not a table")
        new = replace(
            b,
            date=date or b.date,
            time=time or b.time,
            party_size=party if party is not None else b.party_size,
        )
        self.check_table(new.restaurant, new.date, new.time, new.party_size, ignore=b.id)
        self._bookings[b.id] = new
        return new

    def change_seat(
        self,
        booking_id: str,
        *,
        flight: str | None,
        date: str | None,
        fare: FareClass | None,
    ) -> tuple[FlightBooking, int]:
        """Change a flight booking; returns it and what the traveller pays now (USD)."""
        b = self._confirmed(booking_id)
        if not isinstance(b, FlightBooking):
            raise PolicyViolation(f"{booking_id} is a table booking, not a flight")
        check_flight_change(self._catalog, b, flight, date, fare)
        new_flight, new_date = flight or b.flight, date or b.date
        new_fare: FareClass = fare or b.fare_class
        f = self.check_seat(new_flight, new_date, new_fare)
        moved = (new_flight, new_date) != (b.flight, b.date)
        fee = FARE_RULES[b.fare_class].change_fee if moved else 0
        price = f.fares[new_fare]
        new = replace(b, flight=new_flight, date=new_date, fare_class=new_fare, price=price)
        self._bookings[b.id] = new
        return new, fee + max(0, price - b.price)

    def cancel(self, booking_id: str) -> tuple[Booking, int]:
        """Cancel; returns the booking and the refund (USD)."""
        b = self._confirmed(booking_id)
        refund = 0
        if isinstance(b, FlightBooking):
            rule = FARE_RULES[b.fare_class]
            refund = max(0, b.price - rule.cancel_fee) if rule.refundable else 0
        cancelled: Booking = replace(b, status="cancelled")
        self._bookings[b.id] = cancelled
        return cancelled, refund

    def _confirmed(self, booking_id: str) -> Booking:
        b = self.get(booking_id)
        if b.status != "confirmed":
            raise PolicyViolation(f"{booking_id} is already cancelled")
        return b

    def _new_id(self, prefix: str) -> str:
        n = self._next[prefix]
        self._next[prefix] = n + 1
        return f"{prefix}-{n}"


def check_flight_change(
    catalog: Catalog,
    booking: FlightBooking,
    flight: str | None,
    date: str | None,
    fare: FareClass | None,
) -> None:
    """The fare rules for a change (shared by the store and the verifier)."""
    moved = (flight is not None and flight != booking.flight) or (
        date is not None and date != booking.date
    )
    if moved and not FARE_RULES[booking.fare_class].changeable:
        raise PolicyViolation(
            f"{booking.id} is a basic fare: basic fares cannot be changed, only cancelled "
            "without a refund"
        )
    old = catalog.flights[booking.flight]
    new = catalog.flights.get(flight or booking.flight)
    if new is not None and (new.origin, new.destination) != (old.origin, old.destination):
        raise PolicyViolation(
            f"a change must keep the route {old.origin}–{old.destination}; book a new flight"
        )
    if fare is not None and FARE_CLASSES.index(fare) < FARE_CLASSES.index(booking.fare_class):
        raise PolicyViolation(f"a {booking.fare_class} fare cannot be downgraded to {fare}")
