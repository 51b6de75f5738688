"""Tools on local models: the prompt that lists them, calls parsed out of streamed text."""

from __future__ import annotations

import json

from realtime_cascade.models.toolcalls import (
    TextToolCalls,
    parse_calls,
    plain_messages,
    tool_prompt,
)
from realtime_cascade.providers.base import Chunk, Message, ToolCallDelta, Usage

FIND = {
    "type": "function",
    "function": {
        "name": "find_booking",
        "description": "Look up a booking by its reference.",
        "parameters": {
            "type": "object",
            "properties": {"ref": {"type": "string"}, "name": {"type": "string"}},
            "required": ["ref"],
        },
    },
}


def run(pieces: list[str], finish: str = "stop") -> list[Chunk]:
    parser = TextToolCalls("t")
    out: list[Chunk] = []
    for i, text in enumerate(pieces):
        out += parser.feed(Chunk(text, -0.1 * (i + 1), (-0.1 * (i + 1), -3.0)))
    out += parser.feed(Chunk(finish_reason=finish, usage=Usage(10, len(pieces))))
    return out


def test_the_prompt_lists_the_tools_as_qwens_chat_template_does() -> None:
    prompt = tool_prompt([FIND])
    assert prompt.startswith("# Tools\n\nYou may call one or more functions")
    tools = prompt.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert [json.loads(line) for line in tools.splitlines()] == [FIND]
    assert (
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        in prompt
    )
    assert prompt.endswith("reply with only the <tool_call>, no explanation.")


def test_text_passes_through_untouched_with_its_logprobs() -> None:
    out = run(["Sure", ", a table", " for two."])
    assert [c.text for c in out[:-1]] == ["Sure", ", a table", " for two."]
    assert [c.logprob for c in out[:-1]] == [-0.1, -0.2, -0.30000000000000004]
    assert out[-1].finish_reason == "stop" and out[-1].usage == Usage(10, 3)


def test_leading_whitespace_waits_for_the_first_word() -> None:
    parser = TextToolCalls("t")
    assert parser.feed(Chunk(" ", -0.5)) == []
    out = parser.feed(Chunk("Hello", -0.2))
    assert [(c.text, c.logprob) for c in out] == [(" ", -0.5), ("Hello", -0.2)]


def test_a_json_call_becomes_a_tool_call_that_keeps_every_tokens_logprob() -> None:
    pieces = ['{"name": "find', '_booking", "arguments": {"ref":', ' "R-1003"}}']
    out = run(pieces)
    calls = [c for c in out if c.tool_call is not None]
    assert not any(c.text for c in out)
    assert [c.logprob for c in calls] == [-0.1, -0.2, -0.30000000000000004]
    assert all(c.tool_call == ToolCallDelta(0) for c in calls[:-1])
    last = calls[-1].tool_call
    assert last is not None and last.name == "find_booking" and last.id == "call_t_0"
    assert json.loads(last.arguments) == {"ref": "R-1003"}
    assert out[-1].finish_reason == "tool_calls" and out[-1].usage == Usage(10, 3)


def test_fenced_and_tagged_calls_parse() -> None:
    fenced = '```json\n{"name": "find_booking", "arguments": {"ref": "R-1"}}\n```'
    assert parse_calls(fenced) == [("find_booking", '{"ref": "R-1"}')]
    tagged = '<tool_call>\n{"name": "a", "arguments": "{\\"x\\": 1}"}\n</tool_call>'
    assert parse_calls(tagged) == [("a", '{"x": 1}')]
    two = '{"name": "a", "arguments": {}}\n{"name": "b", "parameters": {"y": 2}}'
    assert parse_calls(two) == [("a", "{}"), ("b", '{"y": 2}')]
    out = run(["``", "`json\n", fenced[8:]])
    assert [c.tool_call.name for c in out if c.tool_call and c.tool_call.name] == ["find_booking"]


def test_text_that_opens_like_a_call_but_does_not_parse_is_a_malformed_call() -> None:
    out = run(['{"name": "find_booking", "arguments": {"ref": '])
    call = next(c.tool_call for c in out if c.tool_call is not None and c.tool_call.name)
    assert call is not None and call.name == "find_booking"
    assert call.arguments == '{"name": "find_booking", "arguments": {"ref": '
    assert parse_calls("{not json}") is None
    assert parse_calls('{"arguments": {}}') is None  # no name
    assert parse_calls('{"name": "a", "arguments": [1]}') is None


def test_a_tool_call_tag_after_some_words_starts_a_call_there() -> None:
    out = run(
        [
            "Let me check.",
            "<tool_call>",
            '\n{"name": "find_booking", "arguments": ',
            '{"ref": "R-9"}}',
            "\n</tool_call>",
        ]
    )
    assert [c.text for c in out if c.text] == ["Let me check."]
    named = [c.tool_call for c in out if c.tool_call is not None and c.tool_call.name]
    assert [(t.name, json.loads(t.arguments)) for t in named] == [("find_booking", {"ref": "R-9"})]
    assert out[-1].finish_reason == "tool_calls"


def test_a_brace_is_only_a_call_at_the_start_of_the_reply() -> None:
    out = run(["Your code is", " {x}."])
    assert "".join(c.text for c in out) == "Your code is {x}."
    assert all(c.tool_call is None for c in out)


def test_history_with_calls_and_results_becomes_plain_chat() -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "find_booking", "arguments": '{"ref": "R-1"}'},
    }
    history = (
        Message("system", "You are Luigi's assistant."),
        Message("user", "Where is my booking R-1?"),
        Message("assistant", None, tool_calls=(call,)),
        Message("tool", '{"time": "20:00"}', tool_call_id="c1"),
    )
    out = plain_messages(history, [FIND])
    assert out[0].role == "system" and out[0].content is not None
    assert out[0].content.startswith("You are Luigi's assistant.\n\n# Tools\n")
    assert out[2] == Message(
        "assistant",
        '<tool_call>\n{"name": "find_booking", "arguments": {"ref": "R-1"}}\n</tool_call>',
    )
    assert out[3] == Message("user", '<tool_response>\n{"time": "20:00"}\n</tool_response>')
    assert all(m.tool_calls is None and m.tool_call_id is None for m in out)
    assert plain_messages((Message("user", "hi"),), [FIND])[0].role == "system"
