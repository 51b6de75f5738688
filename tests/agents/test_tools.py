"""Tools from functions: schema from signature and docstring, decoding, errors as results."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import anyio
import msgspec
import pytest

from realtime_cascade import Context, Tool, tool
from realtime_cascade.agents import ToolError

CTX: Context[list[str]] = Context("sess_test", [])


def run(t: Tool, arguments: str, timeout_s: float = 5.0) -> tuple[str, str]:
    async def main() -> tuple[str, str]:
        result = await t(arguments, CTX, timeout_s)
        return result.status, result.output

    return anyio.run(main)


def book(
    ctx: Context[list[str]],
    restaurant: str,
    time: Annotated[str, msgspec.Meta(pattern=r"^\d{2}:\d{2}$")],
    party_size: int = 2,
    seating: Literal["inside", "terrace"] = "inside",
) -> dict[str, object]:
    """Book a table.

    Args:
        restaurant: the restaurant's name,
            as the user said it
        party_size: how many people
    """
    ctx.state.append(restaurant)
    return {"ok": True, "where": restaurant, "at": time, "n": party_size, "seating": seating}


def test_the_schema_comes_from_the_signature_and_the_docstring() -> None:
    t = Tool(book)
    fn = t.definition()["function"]
    assert isinstance(fn, dict)
    assert fn["name"] == "book" and fn["description"] == "Book a table."
    params = fn["parameters"]
    assert params == {
        "type": "object",
        "properties": {
            "restaurant": {
                "type": "string",
                "description": "the restaurant's name, as the user said it",
            },
            "time": {"type": "string", "pattern": r"^\d{2}:\d{2}$"},
            "party_size": {"type": "integer", "description": "how many people", "default": 2},
            "seating": {"enum": ["inside", "terrace"], "default": "inside"},
        },
        "required": ["restaurant", "time"],
        "additionalProperties": False,
    }


def test_a_call_decodes_its_arguments_and_gets_the_context() -> None:
    t = Tool(book)
    status, output = run(t, '{"restaurant": "Sakura", "time": "19:30"}')
    assert status == "ok"
    assert msgspec.json.decode(output) == {
        "ok": True, "where": "Sakura", "at": "19:30", "n": 2, "seating": "inside"
    }
    assert CTX.state[-1] == "Sakura"


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ('{"restaurant": "Sakura", "time": "7pm"}', "$.time"),
        ('{"restaurant": "Sakura"}', "missing required field `time`"),
        ('{"restaurant": "S", "time": "19:00", "extra": 1}', "unknown field `extra`"),
        ("{not json", "malformed"),
    ],
)
def test_bad_arguments_are_a_result_for_the_model(arguments: str, fragment: str) -> None:
    t = Tool(book)
    assert t.check(arguments) is not None
    status, output = run(t, arguments)
    assert status == "error"
    body = msgspec.json.decode(output)
    assert body["error"] == "invalid_arguments" and fragment in body["message"]


def test_an_exception_and_a_timeout_are_results_too() -> None:
    def broken(x: int) -> str:
        raise KeyError(x)

    def slow(x: int) -> str:
        time.sleep(2)
        return "late"

    async def slower(x: int) -> str:
        await anyio.sleep(5)
        return "late"

    status, output = run(Tool(broken), '{"x": 1}')
    assert status == "error" and "KeyError" in msgspec.json.decode(output)["message"]
    started = time.perf_counter()
    assert run(Tool(slow), '{"x": 1}', timeout_s=0.1)[0] == "timeout"
    assert run(tool(timeout_s=0.1)(slower), '{"x": 1}')[0] == "timeout"
    assert time.perf_counter() - started < 1.5  # the sync one was abandoned, not awaited


class Search(msgspec.Struct, forbid_unknown_fields=True):
    """Search the catalog."""

    query: str
    limit: int = 3


def test_async_tools_and_struct_arguments() -> None:
    async def search(ctx: Context[list[str]], args: Search) -> list[str]:
        return [args.query] * args.limit

    t = Tool(search)
    fn = t.definition()["function"]
    assert isinstance(fn, dict) and fn["description"] == "Search the catalog."
    assert run(t, '{"query": "x", "limit": 2}') == ("ok", '["x","x"]')


def test_functions_that_cannot_be_tools_say_why() -> None:
    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    def star(*args: int) -> int:
        return 0

    with pytest.raises(ToolError, match="needs a type"):
        Tool(untyped)
    with pytest.raises(ToolError, match=r"\*args"):
        Tool(star)
    with pytest.raises(ToolError, match="tool name"):
        Tool(book, name="has space")
