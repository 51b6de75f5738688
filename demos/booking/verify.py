"""The booking verifier: a correctness signal for the monitor at every tier finish.

A tool call passes when its arguments decode against the tool's schema and the domain allows
it: the date exists and is bookable, the restaurant / flight / seating time exists, the party
fits, the slot is free, the fare rule holds (basic fares cannot be changed, a change keeps the
route). A failure escalates the turn to the next tier with cause ``correctness`` *before* the
call reaches the executor — that is the point: a light tier that confidently books a full slot
is caught by the domain, not by its logprobs.

Two ways to bind it:

- ``realtime_cascade.demos.booking.verify:verify`` (module level, for ``verifiers = [...]``
  in a config) checks
  against the seeded world only: it knows the seed's bookings and full slots, and lets through
  what it cannot know (a booking made earlier in the session) for the executor to judge.
- :func:`make_verifier` binds a live :class:`~.domain.Store`, for an agent that
  owns the session's state (the in-process demo): then "the slot is free" is exact.
"""

from __future__ import annotations

from realtime_cascade.core import Answer, Verifier

from .domain import (
    DomainError,
    FlightBooking,
    InvalidDate,
    PolicyViolation,
    RestaurantBooking,
    SeedView,
    SlotUnavailable,
    StateView,
    UnknownEntity,
    check_flight_change,
    parse_date,
    seats_left,
    seed_catalog,
    tables_left,
)
from .tools import (
    ChangeBooking,
    CreateBooking,
    SearchAvailability,
    ToolArgumentError,
    decode_arguments,
)


def _table(view: StateView, restaurant: str, date: str, time: str, party: int) -> None:
    r = view.catalog.restaurant_named(restaurant)
    if r is None:
        raise UnknownEntity(f"there is no restaurant {restaurant!r}")
    if time not in r.times:
        raise UnknownEntity(f"{r.name} has no {time} seating")
    if party > r.max_party:
        raise PolicyViolation(f"{r.name} seats parties of at most {r.max_party}")
    if tables_left(view, r.id, date, time) == 0:
        raise SlotUnavailable(f"{r.name} is full on {date} at {time}")


def _check_search(view: StateView, a: SearchAvailability) -> None:
    parse_date(a.date)
    known = a.restaurant is None or view.catalog.restaurant_named(a.restaurant) is not None
    if a.kind == "restaurant" and not known:
        raise UnknownEntity(f"there is no restaurant {a.restaurant!r}")


def _check_create(view: StateView, a: CreateBooking) -> None:
    parse_date(a.date)
    if a.kind == "restaurant":
        if a.restaurant is None or a.time is None or a.party_size is None:
            raise UnknownEntity("a table booking needs restaurant, time and party_size")
        _table(view, a.restaurant, a.date, a.time, a.party_size)
        return
    if a.flight is None or a.fare_class is None:
        raise UnknownEntity("a flight booking needs flight and fare_class")
    if a.flight not in view.catalog.flights:
        raise UnknownEntity(f"there is no flight {a.flight}")
    if seats_left(view, a.flight, a.date, a.fare_class) == 0:
        raise SlotUnavailable(f"{a.flight} on {a.date} has no {a.fare_class} seats left")


def _check_change(view: StateView, a: ChangeBooking) -> None:
    if a.date is not None:
        parse_date(a.date)
    booking = view.booking(a.booking_id)
    if booking is None:
        return  # unknown here (made in a session this view cannot see): the executor judges
    if booking.status != "confirmed":
        raise PolicyViolation(f"{a.booking_id} is already cancelled")
    match booking:
        case RestaurantBooking():
            date, time = a.date or booking.date, a.time or booking.time
            party = a.party_size if a.party_size is not None else booking.party_size
            same = (date, time) == (booking.date, booking.time)
            r = view.catalog.restaurants[booking.restaurant]
            if party > r.max_party:
                raise PolicyViolation(f"{r.name} seats parties of at most {r.max_party}")
            if not same:
                _table(view, booking.restaurant, date, time, party)
        case FlightBooking():
            if a.flight is not None and a.flight not in view.catalog.flights:
                raise UnknownEntity(f"there is no flight {a.flight}")
            check_flight_change(view.catalog, booking, a.flight, a.date, a.fare_class)


def check_call(view: StateView, name: str, arguments: str) -> str | None:
    """What is wrong with one tool call, or None."""
    try:
        args = decode_arguments(name, arguments)
        match args:
            case SearchAvailability():
                _check_search(view, args)
            case CreateBooking():
                _check_create(view, args)
            case ChangeBooking():
                _check_change(view, args)
            case _:
                pass  # cancel and lookup only need a well-formed id; the executor checks it
    except ToolArgumentError as exc:
        return f"invalid tool arguments: {exc}"
    except InvalidDate as exc:
        return f"{name}: bad date: {exc.message}"
    except DomainError as exc:
        return f"{name}: {exc.message}"
    return None


class BookingVerifier:
    """A :data:`~realtime_cascade.core.Verifier` over a state view."""

    def __init__(self, view: StateView) -> None:
        self._view = view

    def __call__(self, answer: Answer) -> str | None:
        for call in answer.tool_calls:
            problem = check_call(self._view, call.name, call.arguments)
            if problem is not None:
                return problem
        return None


def make_verifier(view: StateView) -> Verifier:
    return BookingVerifier(view)


# The config-level verifier: the seed is immutable, so sharing it across sessions is safe.
verify: Verifier = BookingVerifier(SeedView(seed_catalog()))
