"""The booking agent: an ordinary :class:`realtime_cascade.Agent` — the worked example.

Its parts are the demo's domain: the instructions (:func:`system_prompt`, from the session's
store), five tools (each a function of the session's :class:`~.domain.Store` and the argument
struct of :mod:`.tools`, which is its schema), a verifier bound to the session's store (exact
"the slot is free" checks, :mod:`.verify`) and a fresh store per session (``state=Store``).
The tool loop, the cap on tool calls and the session budget are the runtime's
(:mod:`realtime_cascade.agents.loop`): the same in-process (:class:`AgentConversation`) and over
the wire (``realtime-cascade serve --config demos/booking/config.toml``, where the profile
binds :data:`agent`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from realtime_cascade import Agent, Answer, Context, Sentences, Tool
from realtime_cascade.agents.testing import TurnResult

from .domain import TODAY, Store, say_date
from .tools import (
    CancelBooking,
    ChangeBooking,
    CreateBooking,
    LookupBooking,
    SearchAvailability,
    run,
)
from .verify import BookingVerifier

__all__ = ["MUTATING", "Policy", "TurnResult", "agent", "make_agent", "system_prompt"]

MUTATING = frozenset({"create_booking", "change_booking", "cancel_booking"})
SENTENCES = Sentences(
    tool_cap=(
        "I've stopped there: doing all of that would take more than {cap} booking steps in one "
        "go. {done}Shall we take the rest one step at a time?"
    )
)


class Policy(msgspec.Struct, frozen=True):
    """Which tiers a run may use: the cascade (0..last), light-only, strong-only."""

    name: str = "cascade"
    first_tier: int = 0
    max_tier: int | None = None


def system_prompt(store: Store) -> str:
    """The agent's instructions: the rules a strong model is expected to apply."""
    cat = store.catalog
    places = "; ".join(
        f"{r.name} (parties up to {r.max_party}, {r.times[0]}–{r.times[-1]})"
        for r in cat.restaurants.values()
    )
    return (
        f"You book restaurants and flights. Today is {say_date(TODAY.isoformat())}, "
        f"{TODAY.year}. Restaurants: {places}. Fares: basic cannot be changed and is not "
        "refunded; standard changes cost $50 and refunds keep $50; flex changes and refunds "
        "are free. Check availability before booking, and say the reference of every booking."
    )


# The tools: one function each, taking the session's store and its argument struct (the struct's
# docstring is the tool's description, its fields the schema).


def search_availability(ctx: Context[Store], args: SearchAvailability) -> str:
    return run(ctx.state, "search_availability", args)


def create_booking(ctx: Context[Store], args: CreateBooking) -> str:
    return run(ctx.state, "create_booking", args)


def change_booking(ctx: Context[Store], args: ChangeBooking) -> str:
    return run(ctx.state, "change_booking", args)


def cancel_booking(ctx: Context[Store], args: CancelBooking) -> str:
    return run(ctx.state, "cancel_booking", args)


def lookup_booking(ctx: Context[Store], args: LookupBooking) -> str:
    return run(ctx.state, "lookup_booking", args)


def booking_rules(answer: Answer, ctx: Context[Store]) -> str | None:
    """The calls break no domain rule of this session's store (a full slot, a basic fare…)."""
    return BookingVerifier(ctx.state)(answer)


def instructions(ctx: Context[Store]) -> str:
    return system_prompt(ctx.state)


def make_agent(**changes: Any) -> Agent[Store]:
    """The booking agent (``changes``: fields of :class:`~realtime_cascade.Agent` to replace,
    e.g. ``max_tool_calls=1``)."""
    base: Agent[Store] = Agent(
        instructions=instructions,
        tools=[
            Tool(search_availability),
            Tool(create_booking),
            Tool(change_booking),
            Tool(cancel_booking),
            Tool(lookup_booking),
        ],
        verifiers=[booking_rules],
        state=Store,
        max_tool_calls=6,
        mutating=MUTATING,
        sentences=SENTENCES,
    )
    return base.with_(**changes) if changes else base


agent = make_agent()
