"""The agent's tools: argument types, their JSON Schemas, and the executor.

The msgspec structs are the single source of truth: decoding arguments with them *is* schema
validation (with an error that names the field), and the OpenAI-format tool definitions in
:data:`TOOLS` are generated from them, so the two cannot drift apart.

The executor never raises for a domain problem: a model must *see* that a slot is full, so
errors come back as a tool result (``{"ok": false, "error": code, "message": …}``). Every result
echoes the tool name and arguments, so a reader of the conversation (the sim script, a person)
can tell which call it answers without the call id.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .domain import (
    FARE_RULES,
    Booking,
    DomainError,
    FareClass,
    FlightBooking,
    RestaurantBooking,
    Store,
    parse_date,
    seats_left,
    tables_left,
)

Date = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")]
Time = Annotated[str, msgspec.Meta(pattern=r"^\d{2}:\d{2}$", description="HH:MM, 24-hour")]
Airport = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="IATA code")]
BookingId = Annotated[str, msgspec.Meta(pattern=r"^[RF]-\d{4}$", description="e.g. R-1001")]
Party = Annotated[int, msgspec.Meta(ge=1, le=20)]
Kind = Literal["restaurant", "flight"]


class _Args(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class SearchAvailability(_Args, frozen=True):
    """Find free restaurant tables or flights on a date."""

    kind: Kind
    date: Date
    restaurant: str | None = None
    party_size: Party | None = None
    origin: Airport | None = None
    destination: Airport | None = None
    time: Time | None = None
    time_from: Time | None = None
    time_to: Time | None = None


class CreateBooking(_Args, frozen=True):
    """Book a table (restaurant, time, party_size) or a flight (flight, fare_class)."""

    kind: Kind
    date: Date
    name: str
    restaurant: str | None = None
    time: Time | None = None
    party_size: Party | None = None
    flight: str | None = None
    fare_class: FareClass | None = None


class ChangeBooking(_Args, frozen=True):
    """Change a booking: a table's date, time or party size; a flight, date or fare class."""

    booking_id: BookingId
    date: Date | None = None
    time: Time | None = None
    party_size: Party | None = None
    flight: str | None = None
    fare_class: FareClass | None = None


class CancelBooking(_Args, frozen=True):
    """Cancel a booking; flights are refunded according to their fare rules."""

    booking_id: BookingId


class LookupBooking(_Args, frozen=True):
    """Read a booking's details."""

    booking_id: BookingId


ARGUMENTS: dict[str, type[_Args]] = {
    "search_availability": SearchAvailability,
    "create_booking": CreateBooking,
    "change_booking": ChangeBooking,
    "cancel_booking": CancelBooking,
    "lookup_booking": LookupBooking,
}


class ToolArgumentError(Exception):
    """Arguments that do not fit the tool's schema (or a tool that does not exist)."""


def decode_arguments(name: str, arguments: str) -> _Args:
    kind = ARGUMENTS.get(name)
    if kind is None:
        raise ToolArgumentError(f"unknown tool {name!r}")
    try:
        return msgspec.json.decode(arguments or "{}", type=kind)
    except msgspec.ValidationError as exc:
        raise ToolArgumentError(f"{name}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ToolArgumentError(f"{name}: arguments are not JSON: {exc}") from None


def _inline(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _inline(defs[ref.rsplit("/", 1)[-1]], defs)
    return schema


def _tool(name: str, kind: type[_Args]) -> dict[str, object]:
    (schema,), components = msgspec.json.schema_components([kind], ref_template="#/$defs/{name}")
    body = dict(_inline(schema, components))
    body.pop("title", None)
    description = body.pop("description", "")
    body["additionalProperties"] = False
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": body},
    }


def tool_definitions() -> tuple[dict[str, object], ...]:
    """The tools in the OpenAI ``tools`` format (what a turn request carries)."""
    return tuple(_tool(name, kind) for name, kind in ARGUMENTS.items())


# --- the executor -------------------------------------------------------------------------


def booking_view(store: Store, b: Booking) -> dict[str, object]:
    """A booking as the model sees it (names, not ids; the fare rule spelled out)."""
    cat = store.catalog
    if isinstance(b, RestaurantBooking):
        return {
            "booking_id": b.id,
            "kind": "restaurant",
            "status": b.status,
            "restaurant": cat.restaurants[b.restaurant].name,
            "date": b.date,
            "time": b.time,
            "party_size": b.party_size,
            "name": b.name,
        }
    f = cat.flights[b.flight]
    rule = FARE_RULES[b.fare_class]
    return {
        "booking_id": b.id,
        "kind": "flight",
        "status": b.status,
        "flight": b.flight,
        "origin": f.origin,
        "destination": f.destination,
        "date": b.date,
        "depart": f.depart,
        "arrive": f.arrive,
        "fare_class": b.fare_class,
        "price": b.price,
        "changeable": rule.changeable,
        "change_fee": rule.change_fee,
        "refundable": rule.refundable,
        "name": b.name,
    }


def _search(store: Store, a: SearchAvailability) -> dict[str, object]:
    parse_date(a.date)
    lo = a.time or a.time_from or "00:00"
    hi = a.time or a.time_to or "23:59"
    cat = store.catalog
    if a.kind == "restaurant":
        if a.restaurant is None:
            restaurants = list(cat.restaurants.values())
        else:
            r = cat.restaurant_named(a.restaurant)
            if r is None:
                raise DomainError(f"there is no restaurant {a.restaurant!r}")
            restaurants = [r]
        party = a.party_size or 2
        options: list[dict[str, object]] = []
        notes = []
        for r in restaurants:
            if party > r.max_party:
                notes.append(f"{r.name} seats parties of at most {r.max_party}")
                continue
            for t in r.times:
                if lo <= t <= hi and tables_left(store, r.id, a.date, t) > 0:
                    options.append({"restaurant": r.name, "date": a.date, "time": t})
        out: dict[str, object] = {"options": options}
        if notes:
            out["notes"] = notes
        return out
    flights = []
    for f in cat.flights.values():
        if a.origin and f.origin != a.origin:
            continue
        if a.destination and f.destination != a.destination:
            continue
        if not lo <= f.depart <= hi:
            continue
        fares = {
            fare: price
            for fare, price in f.fares.items()
            if seats_left(store, f.number, a.date, fare) > 0
        }
        flights.append(
            {
                "flight": f.number,
                "origin": f.origin,
                "destination": f.destination,
                "date": a.date,
                "depart": f.depart,
                "arrive": f.arrive,
                "fares": fares,
            }
        )
    return {"options": flights}


def _create(store: Store, a: CreateBooking) -> dict[str, object]:
    if a.kind == "restaurant":
        if a.restaurant is None or a.time is None or a.party_size is None:
            raise DomainError("a table booking needs restaurant, time and party_size")
        r = store.catalog.restaurant_named(a.restaurant)
        if r is None:
            raise DomainError(f"there is no restaurant {a.restaurant!r}")
        b: Booking = store.book_table(r.id, a.date, a.time, a.party_size, a.name)
        return {"booking": booking_view(store, b)}
    if a.flight is None or a.fare_class is None:
        raise DomainError("a flight booking needs flight and fare_class")
    b = store.book_seat(a.flight, a.date, a.fare_class, a.name)
    return {"booking": booking_view(store, b), "charged": b.price}


def _change(store: Store, a: ChangeBooking) -> dict[str, object]:
    b = store.get(a.booking_id)
    if isinstance(b, FlightBooking):
        new, charged = store.change_seat(
            a.booking_id, flight=a.flight, date=a.date, fare=a.fare_class
        )
        return {"booking": booking_view(store, new), "charged": charged}
    table = store.change_table(a.booking_id, date=a.date, time=a.time, party=a.party_size)
    return {"booking": booking_view(store, table)}


def _run(store: Store, args: _Args) -> dict[str, object]:
    match args:
        case SearchAvailability():
            return _search(store, args)
        case CreateBooking():
            return _create(store, args)
        case ChangeBooking():
            return _change(store, args)
        case CancelBooking(booking_id=bid):
            cancelled, refund = store.cancel(bid)
            return {"booking": booking_view(store, cancelled), "refund": refund}
        case LookupBooking(booking_id=bid):
            return {"booking": booking_view(store, store.get(bid))}
    raise ToolArgumentError(f"no handler for {type(args).__name__}")


def execute(store: Store, name: str, arguments: str) -> str:
    """Run one tool call against ``store``; the result is JSON for a ``tool`` message."""
    try:
        args = decode_arguments(name, arguments)
    except ToolArgumentError as exc:
        failed = {"tool": name, "ok": False, "error": "invalid_arguments", "message": str(exc)}
        return msgspec.json.encode(failed).decode()
    return run(store, name, args)


def run(store: Store, name: str, args: _Args) -> str:
    """Run one decoded call against ``store`` (what the agent's tools do)."""
    result: dict[str, object] = {"tool": name, "args": msgspec.to_builtins(args)}
    try:
        result.update(ok=True, **_run(store, args))
    except ToolArgumentError as exc:
        result.update(ok=False, error="invalid_arguments", message=str(exc))
    except DomainError as exc:
        result.update(ok=False, error=exc.code, message=exc.message)
    return msgspec.json.encode(result).decode()


TOOLS = tool_definitions()
