"""What the bench's sessions say: the booking suite when it is there, else a generic mix.

A :class:`Mix` is a list of conversations plus what a client needs to play them: a fresh world
per conversation, the instructions and tools to send, a tool executor, and the ground truth
check of each user turn.

- ``booking`` (the booking demo): the multi-turn booking conversations with their ground
  truth (the store's bookings after the turn, facts the reply must contain), the tools executed
  client-side against each conversation's own store, and the booking profile's config.
- ``generic`` (fallback): single-turn requests for the embedded default profile, easy and hard
  by the generic script's difficulty. Success is escalation-correctness against the sim's
  difficulty: an answer is right when the tier that gave it was skilled enough, which the
  generic script shows in its words (a tier beyond its skill says it is "not sure").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class UserTurn:
    text: str
    hard: bool
    expect: Any  # what ``Mix.check`` compares against


@dataclass(frozen=True)
class Conversation:
    id: str
    turns: tuple[UserTurn, ...]


@dataclass(frozen=True)
class Mix:
    name: str
    config_path: Path | None  # None: the embedded default config
    profile: str
    conversations: tuple[Conversation, ...]
    tools: tuple[dict[str, object], ...]  # chat-completions shape
    new_state: Callable[[], Any]
    instructions: Callable[[Any], str]
    execute: Callable[[Any, str, str], str]
    check: Callable[[Any, str, Any], list[str]]  # state, heard, expect -> problems
    cancel_text: str  # what a barge-in turn asks

    def realtime_tools(self) -> list[dict[str, object]]:
        """The tools in the Realtime (flat) shape, for ``session.update``."""
        out: list[dict[str, object]] = []
        for tool in self.tools:
            fn = tool["function"]
            assert isinstance(fn, dict)
            flat: dict[str, object] = {"type": "function", "name": fn["name"]}
            if "description" in fn:
                flat["description"] = fn["description"]
            flat["parameters"] = fn.get("parameters", {"type": "object"})
            out.append(flat)
        return out

    def truncated(self, max_turns: int | None) -> Mix:
        if max_turns is None:
            return self
        convs = tuple(Conversation(c.id, c.turns[:max_turns]) for c in self.conversations)
        return Mix(
            self.name,
            self.config_path,
            self.profile,
            convs,
            self.tools,
            self.new_state,
            self.instructions,
            self.execute,
            self.check,
            self.cancel_text,
        )


def booking_mix() -> Mix:
    from realtime_cascade.demos.booking.agent import system_prompt
    from realtime_cascade.demos.booking.domain import Store
    from realtime_cascade.demos.booking.scenarios import SUITE, check
    from realtime_cascade.demos.booking.tools import TOOLS, execute

    convs = tuple(
        Conversation(c.id, tuple(UserTurn(t.text, t.hard, t.expect) for t in c.turns))
        for c in SUITE
    )
    return Mix(
        name="booking",
        config_path=ROOT / "demos" / "booking" / "config.toml",
        profile="booking",
        conversations=convs,
        tools=tuple(TOOLS),
        new_state=Store,
        instructions=system_prompt,
        execute=execute,
        check=check,
        cancel_text="Can you tell me everything about booking R-1003 and F-2001, please?",
    )


GENERIC_REQUESTS: Sequence[str] = (
    "Book a table for two at 7pm tonight.",
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, and apply my "
    "voucher unless the fare goes up.",
    "What time does the pharmacy open tomorrow?",
    "Cancel my dentist appointment, but only if I can get one next week, and keep the same "
    "doctor unless she is away.",
    "Set an alarm for 6:30.",
    "Find the cheapest hotel near the station, then book two nights, except if it has no "
    "breakfast, and apply my loyalty points.",
    "Remind me to call mum at five.",
    "Reschedule the team meeting to the latest slot on Friday while keeping the room, and tell "
    "everyone unless it clashes.",
)


def generic_mix() -> Mix:
    from realtime_cascade.providers.sim import difficulty

    def check(_state: object, heard: str, expect: object) -> list[str]:
        return ["the answer came from a tier beyond its skill"] if "not sure" in heard else []

    convs = tuple(
        Conversation(f"generic-{i}", (UserTurn(text, difficulty(text) > 0.5, None),))
        for i, text in enumerate(GENERIC_REQUESTS)
    )
    return Mix(
        name="generic",
        config_path=None,
        profile="default",
        conversations=convs,
        tools=(),
        new_state=lambda: None,
        instructions=lambda _state: "",
        execute=lambda _state, name, _args: '{"ok": false, "error": "no tools"}',
        check=check,
        cancel_text="Tell me about my day, all of it, slowly.",
    )


def load_mix(name: str = "auto") -> Mix:
    """``booking``, ``generic``, or ``auto`` (booking when the booking demo imports)."""
    if name == "generic":
        return generic_mix()
    try:
        return booking_mix()
    except ImportError:
        if name == "booking":
            raise
        return generic_mix()
