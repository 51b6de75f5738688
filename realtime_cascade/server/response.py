"""One response: the core's actions turned into server events, in the Realtime order (item added →
part added → deltas → done …), keeping the assistant item's text equal to exactly what was
released — so a cancel or barge-in leaves history holding what the listener was given and
nothing more. Pure: events go to a non-blocking ``send``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from .. import wire
from ..core import (
    Action,
    Decision,
    Filler,
    FinishTurn,
    Handoff,
    Release,
    ReleaseToolCall,
    TurnTrace,
)
from .conversation import Conversation, IdFactory, new_id

Send = Callable[[bytes], None]


def usage_of(trace: TurnTrace | None, earlier: tuple[TurnTrace, ...] = ()) -> wire.Usage:
    """Tokens of every attempt, preempted and speculative ones included: they were paid for
    (``earlier``: the response's steps before ``trace``, when an agent's tools ran between)."""
    steps = (*earlier, trace) if trace is not None else earlier
    inp = sum(a.input_tokens for t in steps for a in t.attempts)
    out = sum(a.output_tokens for t in steps for a in t.attempts)
    return wire.Usage(
        total_tokens=inp + out,
        input_tokens=inp,
        output_tokens=out,
        input_token_details=wire.InputTokenDetails(text_tokens=inp),
        output_token_details=wire.OutputTokenDetails(text_tokens=out),
    )


@dataclass
class _OpenText:
    item: wire.MessageItem
    part: wire.OutputText
    output_index: int
    template: wire.TextDeltaTemplate


class ResponseBuilder:
    """The server events of one response, from the core's actions; no I/O of its own.

    ``send`` receives encoded events in order. Items are added to ``conversation`` as they
    start (unless the response is out-of-band), so ``conversation.item.retrieve`` mid-stream
    sees the text released so far.
    """

    def __init__(
        self,
        response: wire.ResponseObject,
        writer: wire.EventWriter,
        send: Send,
        conversation: Conversation | None,
        tier_names: list[str],
        ids: IdFactory = new_id,
    ) -> None:
        self.response = response
        self._writer = writer
        self._send = send
        self._conversation = conversation
        self._tiers = tier_names
        self._ids = ids
        self._open: _OpenText | None = None
        self.status: Literal["completed", "cancelled", "incomplete", "failed"] | None = None
        self.reason = ""
        self.released = ""
        self.steps: tuple[TurnTrace, ...] = ()  # earlier steps' traces (an agent's tool loop)

    @property
    def id(self) -> str:
        return self.response.id

    def _emit(self, event: wire.ServerEvent) -> None:
        self._send(self._writer.encode(event))

    def created(self) -> None:
        self._emit(wire.ResponseCreated(response=msgspec.structs.replace(self.response, output=[])))

    async def drained(self) -> None:
        """Returns once every output is out (audio mode: once it has been spoken)."""

    def stop_output(self, reason: str) -> None:
        """Barge-in: stop output still being produced after the turn (audio mode: speech)."""

    def feed(self, action: Action) -> None:
        rid = self.response.id
        match action:
            case Release(text=text):
                self._release(text)
            case ReleaseToolCall(call_id=call_id, name=name, arguments=arguments):
                self._tool_call(call_id, name, arguments)
            case Filler(text=text):
                self._emit(wire.CascadeFiller(response_id=rid, text=text))
            case Decision(record=record):
                self._emit(wire.CascadeDecision(response_id=rid, decision=record))
            case Handoff(from_tier=a, to_tier=b, released_chars=n, t_ms=t):
                self._emit(
                    wire.CascadeHandoff(
                        response_id=rid,
                        from_tier=a,
                        to_tier=b,
                        from_tier_name=self._tiers[a],
                        to_tier_name=self._tiers[b],
                        released_chars=n,
                        t_ms=t,
                    )
                )
            case FinishTurn(status=status, reason=reason):
                # Close items now, not when the runner returns: a truncate or a new item that
                # arrives right after a cancel must see the final text.
                self.status, self.reason = status, reason
                self._close_text("completed" if status == "completed" else "incomplete")
            case _:
                pass  # StartTier / CancelTier are the runtime's own

    def _add_item(self, item: wire.Item, snapshot: wire.Item) -> int:
        index = len(self.response.output)
        self.response.output.append(item)
        self._emit(
            wire.ResponseOutputItemAdded(
                response_id=self.response.id, output_index=index, item=snapshot
            )
        )
        if self._conversation is not None:
            after = self._conversation.add(item)
            self._emit(wire.ConversationItemAdded(item=snapshot, previous_item_id=after))
        return index

    def _done_item(self, item: wire.Item, index: int) -> None:
        self._emit(
            wire.ResponseOutputItemDone(response_id=self.response.id, output_index=index, item=item)
        )
        if self._conversation is not None:
            self._emit(wire.ConversationItemDone(item=item))

    def _open_message(
        self,
        part: wire.OutputText | wire.OutputAudio,
        announced: wire.OutputText | wire.OutputAudio,
    ) -> tuple[wire.MessageItem, int]:
        """Open an assistant message whose one content part is ``part`` (announced to the
        client as ``announced``, an empty copy); returns the item and its output index."""
        item_id = self._ids("item")
        item = wire.MessageItem(item_id, "assistant", [part], status="in_progress")
        snapshot = wire.MessageItem(item_id, "assistant", [], status="in_progress")
        index = self._add_item(item, snapshot)
        self._emit(
            wire.ResponseContentPartAdded(
                response_id=self.response.id,
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=announced,
            )
        )
        return item, index

    def _release(self, text: str) -> None:
        open_ = self._open
        if open_ is None:
            part = wire.OutputText("")
            item, index = self._open_message(part, wire.OutputText(""))
            item_id = item.id
            template = self._writer.text_delta_template(self.response.id, item_id, index, 0)
            open_ = self._open = _OpenText(item, part, index, template)
        open_.part.text += text
        self.released += text
        self._send(open_.template.encode(text))

    def _close_text(self, status: wire.ItemStatus) -> None:
        open_ = self._open
        if open_ is None:
            return
        self._open = None
        rid, item_id, index = self.response.id, open_.item.id, open_.output_index
        text = open_.part.text
        self._emit(
            wire.ResponseOutputTextDone(
                response_id=rid, item_id=item_id, output_index=index, content_index=0, text=text
            )
        )
        self._emit(
            wire.ResponseContentPartDone(
                response_id=rid,
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=wire.OutputText(text),
            )
        )
        open_.item.status = status
        self._done_item(open_.item, index)

    def _tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._close_text("completed")
        rid, item_id = self.response.id, self._ids("item")
        item = wire.FunctionCallItem(item_id, call_id, name, arguments, status="in_progress")
        snapshot = wire.FunctionCallItem(item_id, call_id, name, "", status="in_progress")
        index = self._add_item(item, snapshot)
        # The core releases a call only once it is whole and verified: one delta carries it.
        self._emit(
            wire.ResponseFunctionCallArgumentsDelta(
                response_id=rid,
                item_id=item_id,
                output_index=index,
                call_id=call_id,
                delta=arguments,
            )
        )
        self._emit(
            wire.ResponseFunctionCallArgumentsDone(
                response_id=rid,
                item_id=item_id,
                output_index=index,
                call_id=call_id,
                name=name,
                arguments=arguments,
            )
        )
        item.status = "completed"
        self._done_item(item, index)

    # -- server-side tools (an agent's tool loop: realtime_cascade.agents.loop)

    def tool_output(self, call_id: str, output: str) -> None:
        """A server-side call's ``function_call_output``: an item of this response (and of the
        conversation), right after the call."""
        self._close_text("completed")
        item = wire.FunctionCallOutputItem(self._ids("item"), call_id, output)
        index = self._add_item(item, item)
        self._done_item(item, index)

    def step_done(self, trace: TurnTrace) -> None:
        """A step that called tools ended and the response goes on: its trace now."""
        self.steps = (*self.steps, trace)
        self._emit(wire.CascadeTrace(response_id=self.response.id, trace=trace))

    def finish(self, trace: TurnTrace | None, error: str | None = None) -> None:
        """``cascade.trace`` (when there is one), then ``response.done`` — always."""
        if error is not None or self.status is None:
            self.status = "failed"
            self.reason = error or "the turn ended without finishing"
        self._close_text("completed" if self.status == "completed" else "incomplete")
        if trace is not None:
            self._emit(wire.CascadeTrace(response_id=self.response.id, trace=trace))
        details: wire.StatusDetails | None = None
        match self.status:
            case "cancelled" | "incomplete":
                details = wire.StatusDetails(type=self.status, reason=self.reason)
            case "failed":
                details = wire.StatusDetails(
                    type="failed",
                    error=wire.ErrorDetail(
                        type="server_error", code="turn_failed", message=self.reason
                    ),
                )
            case "completed":
                pass
        self.response.status = self.status
        self.response.status_details = details
        self.response.usage = usage_of(trace, self.steps)
        self._emit(wire.ResponseDone(response=self.response))
