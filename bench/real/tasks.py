"""The real-model task set: turns with ground truth, the prompts they run under, grading.

``tasks.jsonl`` holds one turn per line, written for this project:

- ``fact``: a short factual question (system prompt ``qa``); right when the answer matches
  one of ``expect.any`` (regular expressions, case-insensitive unless ``expect.case``);
- ``info``: a question about the restaurant that its system prompt answers (``luigi``);
- ``tool``: a booking request under the ``luigi`` prompt with the booking tools; right when the
  turn's first tool call is ``expect.tool`` with every argument of ``expect.args`` (strings
  compared trimmed and case-insensitively, numbers as numbers);
- ``chat``: small talk with the tools offered; right when no tool is called and the text
  matches ``expect.any``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import msgspec

from realtime_cascade.core.trace import TurnTrace
from realtime_cascade.providers.base import Message

TASKS = Path(__file__).with_name("tasks.jsonl")

SYSTEMS = {
    "qa": "Answer the question correctly in one short sentence.",
    "luigi": (
        "You are the phone assistant of Luigi's Trattoria and you can take table "
        "reservations. Today is Friday 2026-03-06. The restaurant is at Via Roma 12, Milan. "
        "Open Tuesday to Sunday, lunch 12:00-15:00 and dinner 19:00-23:00; closed on Mondays. "
        "A table seats at most 8 guests; larger groups call the manager on 02 555 0123. The "
        "set lunch menu costs 18 euros. Vegetarian dishes are available. No parking; the "
        "nearest car park is in Piazza Duomo. Dogs are allowed on the terrace only. "
        "Answer in one or two short sentences."
    ),
}

TOOLS: tuple[dict[str, object], ...] = tuple(
    {"type": "function", "function": f}
    for f in (
        {
            "name": "find_booking",
            "description": "Look up a booking by its reference (like R-1234).",
            "parameters": {
                "type": "object",
                "properties": {"ref": {"type": "string"}},
                "required": ["ref"],
            },
        },
        {
            "name": "cancel_booking",
            "description": "Cancel a booking by its reference.",
            "parameters": {
                "type": "object",
                "properties": {"ref": {"type": "string"}},
                "required": ["ref"],
            },
        },
        {
            "name": "check_availability",
            "description": "Is a table free? date YYYY-MM-DD, time HH:MM (24h).",
            "parameters": {
                "type": "object",
                "properties": {
                    "date": {"type": "string"},
                    "time": {"type": "string"},
                    "party_size": {"type": "integer"},
                },
                "required": ["date", "time", "party_size"],
            },
        },
        {
            "name": "book_table",
            "description": "Book a table. date YYYY-MM-DD, time HH:MM (24h).",
            "parameters": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "date": {"type": "string"},
                    "time": {"type": "string"},
                    "party_size": {"type": "integer"},
                },
                "required": ["name", "date", "time", "party_size"],
            },
        },
    )
)


class Expect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    any: tuple[str, ...] = ()
    case: bool = False
    tool: str | None = None
    args: dict[str, str | int] = {}
    no_tool: bool = False


class Task(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    kind: Literal["fact", "info", "tool", "chat"]
    system: Literal["qa", "luigi"]
    user: str
    expect: Expect
    tools: bool = False

    def messages(self) -> tuple[Message, ...]:
        return (Message("system", SYSTEMS[self.system]), Message("user", self.user))


def load(path: Path = TASKS) -> list[Task]:
    decoder = msgspec.json.Decoder(Task)
    tasks = [decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip()]
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate task ids")
    return tasks


def _same(want: str | int, got: object) -> bool:
    if isinstance(want, int):
        try:
            return int(str(got).strip()) == want
        except ValueError:
            return False
    return str(got).strip().casefold() == want.casefold()


def grade(task: Task, text: str, calls: list[tuple[str, str]]) -> bool:
    """Whether a turn that said ``text`` and made ``calls`` (name, arguments) is right."""
    e = task.expect
    if e.tool is not None:
        if not calls or calls[0][0] != e.tool:
            return False
        try:
            args = json.loads(calls[0][1] or "{}")
        except json.JSONDecodeError:
            return False
        return isinstance(args, dict) and all(
            k in args and _same(v, args[k]) for k, v in e.args.items()
        )
    if e.no_tool and calls:
        return False
    flags = 0 if e.case else re.IGNORECASE
    return any(re.search(p, text, flags) for p in e.any)


def grade_trace(task: Task, trace: TurnTrace) -> bool:
    return grade(task, trace.text, [(c.name, c.arguments) for c in trace.tool_calls])
