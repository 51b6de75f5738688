"""Tools for local models: described in the prompt, calls parsed back out of the streamed text.

llama-server refuses ``logprobs`` together with ``tools`` and ``stream`` (HTTP 400), and the
Qwen2.5-Coder models answer a tool request with the call as JSON in the *text* anyway
(``{"name": "find_booking", "arguments": {"ref": "R-1003"}}``, sometimes in a ```json fence or
Qwen's ``<tool_call>`` tags), never as ``tool_calls`` deltas. So for a local tier:

- :func:`tool_prompt` writes the request's tools into the system message as Qwen2.5's chat
  template does, and :func:`plain_messages` rewrites earlier tool calls and results as the
  template would (``<tool_call>`` text, ``<tool_response>`` user messages);
- :class:`TextToolCalls` (sans-I/O: chunks in, chunks out) watches the start of the reply. Text
  passes through untouched. A reply that opens like a call (``{``, a fence, ``<tool_call>``)
  is held: each of its tokens goes on as an empty tool-call piece that keeps the token's
  logprob, so the monitor judges the call's arguments as they are written, and at the end the
  whole text is parsed and the last piece carries the call's name and arguments. A
  ``<tool_call>`` tag after some words starts a call there too (the words stay spoken). Text that
  opened like a call but does not parse is passed on as a call with those unparsable
  arguments, which the cascade treats as malformed (and escalates), rather than spoken.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ..providers.base import Chunk, Message, ToolCallDelta

_OPENERS = ("{", "```", "<tool_call>", "[")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```\s*$")
_TAGS = re.compile(r"</?tool_call>")
_NAME = re.compile(r'"name"\s*:\s*"([^"]+)"')


def tool_prompt(tools: Sequence[dict[str, object]]) -> str:
    """The tools block of a system message, in the format Qwen2.5's chat template writes (the
    Hermes function-calling format, which many open models are tuned on): each tool's schema
    as JSON inside ``<tools>``, calls asked for inside ``<tool_call>`` tags."""
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        f"<tools>\n{lines}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
        # Without this line Qwen2.5-Coder-1.5B explains how to call a function instead of
        # calling it (2 of 38 booking turns right; with it, 4 of 6 in a spot check).
        "\nWhen a function fits the user's request, call it at once: reply with only the "
        "<tool_call>, no explanation."
    )


def plain_messages(
    messages: Sequence[Message], tools: Sequence[dict[str, object]]
) -> tuple[Message, ...]:
    """``messages`` with the tools block added to the first system message, earlier calls as
    ``<tool_call>`` text and tool results as ``<tool_response>`` user messages (what the chat
    template would have written, for a server that is not given the tools)."""
    out: list[Message] = []
    prompt = tool_prompt(tools) if tools else ""
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for call in m.tool_calls:
                fn = call.get("function", {})
                if isinstance(fn, dict):
                    args = fn.get("arguments", "{}")
                    try:
                        parsed = json.loads(args) if isinstance(args, str) else args
                    except json.JSONDecodeError:
                        parsed = args
                    body = json.dumps({"name": fn.get("name"), "arguments": parsed})
                    calls.append(f"<tool_call>\n{body}\n</tool_call>")
            text = "\n".join(calls)
            out.append(Message("assistant", f"{m.content}\n{text}" if m.content else text))
        elif m.role == "tool":
            out.append(Message("user", f"<tool_response>\n{m.content or ''}\n</tool_response>"))
        else:
            out.append(Message(m.role, m.content))
    if prompt:
        if out and out[0].role == "system":
            out[0] = Message("system", f"{out[0].content or ''}\n\n{prompt}")
        else:
            out.insert(0, Message("system", prompt))
    return tuple(out)


def parse_calls(text: str) -> list[tuple[str, str]] | None:
    """The ``(name, arguments JSON)`` of each call written in ``text``; None if none parses."""
    body = _TAGS.sub("\n", _FENCE.sub("", text.strip())).strip()
    values: list[object] = []
    decoder = json.JSONDecoder()
    i = 0
    while i < len(body):
        if body[i].isspace() or body[i] == ",":
            i += 1
            continue
        try:
            value, i = decoder.raw_decode(body, i)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list):
            values.extend(value)
        else:
            values.append(value)
    calls: list[tuple[str, str]] = []
    for v in values:
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            return None
        args = v.get("arguments", v.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append((v["name"], json.dumps(args, ensure_ascii=False)))
    return calls or None


class TextToolCalls:
    """One stream's chunks in, the same stream with calls written as text turned into tool-call
    chunks out. ``ids`` names the calls (``call_<prefix>_<n>``)."""

    __slots__ = ("_held", "_mode", "_pending", "_prefix", "_text")

    def __init__(self, prefix: str = "local") -> None:
        self._prefix = prefix
        self._mode = "start"  # start -> text | call
        self._held: list[Chunk] = []  # chunks of the undecided start
        self._text: list[str] = []  # the call's text
        self._pending: Chunk | None = None  # the call's last token, sent with the parsed call

    def feed(self, chunk: Chunk) -> list[Chunk]:
        out: list[Chunk] = []
        token = Chunk(chunk.text, chunk.logprob, chunk.top_logprobs) if chunk.text else None
        if chunk.tool_call is not None:  # a native call (an endpoint that supports them)
            self._flush_text(out)
            out.append(chunk)
            return out
        if token is not None:
            self._token(token, out)
        if chunk.finish_reason is not None:
            self._finish(chunk, out)
        return out

    def _token(self, token: Chunk, out: list[Chunk]) -> None:
        match self._mode:
            case "text":
                if token.text.lstrip().startswith("<tool_call>"):
                    # Qwen's tag (one special token) after some words: the call starts here
                    self._mode = "call"
                    self._call_token(token, out)
                else:
                    out.append(token)
            case "call":
                self._call_token(token, out)
            case _:
                self._held.append(token)
                start = "".join(c.text for c in self._held).lstrip()
                if not start:
                    return
                if any(start.startswith(o) for o in _OPENERS):
                    self._mode = "call"
                    held, self._held = self._held, []
                    for c in held:
                        self._call_token(c, out)
                elif not any(o.startswith(start) for o in _OPENERS):
                    self._flush_text(out)

    def _call_token(self, token: Chunk, out: list[Chunk]) -> None:
        self._text.append(token.text)
        if self._pending is not None:
            p = self._pending
            out.append(
                Chunk(logprob=p.logprob, top_logprobs=p.top_logprobs, tool_call=ToolCallDelta(0))
            )
        self._pending = token

    def _flush_text(self, out: list[Chunk]) -> None:
        self._mode = "text"
        out.extend(self._held)
        self._held = []

    def _finish(self, chunk: Chunk, out: list[Chunk]) -> None:
        final = Chunk(finish_reason=chunk.finish_reason, usage=chunk.usage)
        if self._mode != "call":
            self._flush_text(out)
            out.append(final)
            return
        text = "".join(self._text)
        calls = parse_calls(text)
        if calls is None:
            m = _NAME.search(text)
            calls = [(m.group(1) if m else "unparsed_call", text)]  # malformed: escalated
        last = self._pending
        for i, (name, arguments) in enumerate(calls):
            piece = ToolCallDelta(i, id=f"call_{self._prefix}_{i}", name=name, arguments=arguments)
            if i == 0 and last is not None:
                out.append(
                    Chunk(logprob=last.logprob, top_logprobs=last.top_logprobs, tool_call=piece)
                )
            else:
                out.append(Chunk(tool_call=piece))
        self._pending = None
        out.append(Chunk(finish_reason="tool_calls", usage=chunk.usage))
