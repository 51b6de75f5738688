"""A session's conversation: the ordered items and the chat messages a turn is asked with.

Pure (no I/O, no awaits). Tool-call bookkeeping: a ``function_call_output`` must answer a call
the conversation holds, once.

Limits (:class:`ConversationLimits`, from ``server.max_items`` / ``max_item_bytes`` /
``max_conversation_bytes``): a client's item must fit (:meth:`Conversation.admit`:
``item_too_large`` / ``conversation_limit``), and a response starts only while the
conversation is under its limits (:meth:`Conversation.check_room`), so the output a response
adds is bounded by what its tiers may stream. An item's size is its JSON encoding's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec

from .. import wire
from ..providers.base import Message
from .errors import SessionError


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


IdFactory = Callable[[str], str]

_SIZE = msgspec.json.Encoder()


class ConversationLimits(msgspec.Struct, frozen=True):
    max_items: int = 2000
    max_item_bytes: int = 1 << 20
    max_bytes: int = 8 << 20


DEFAULT_LIMITS = ConversationLimits()


def item_bytes(item: wire.Item) -> int:
    return len(_SIZE.encode(item))


class Conversation:
    """Ordered items; the chat messages a turn sees; which tool calls await an output."""

    def __init__(
        self, ids: IdFactory = new_id, limits: ConversationLimits = DEFAULT_LIMITS
    ) -> None:
        self._ids = ids
        self.limits = limits
        self._order: list[str] = []
        self._items: dict[str, wire.Item] = {}
        self._answered: set[str] = set()  # call_ids that have an output
        self._sizes: dict[str, int] = {}  # item id -> bytes when last measured
        self._growing: set[str] = set()  # items added in progress: measured again when checked
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        """The items' size (those still being written are measured now)."""
        for item_id in list(self._growing):
            item = self._items[item_id]
            self._measure(item_id)
            if item.status != "in_progress":
                self._growing.discard(item_id)
        return self._bytes

    def _measure(self, item_id: str) -> int:
        size = item_bytes(self._items[item_id])
        self._bytes += size - self._sizes.get(item_id, 0)
        self._sizes[item_id] = size
        return size

    def check_room(self, adding: int = 0) -> None:
        """Refuse (``conversation_limit``) unless one more item of ``adding`` bytes fits."""
        limits = self.limits
        if len(self._order) >= limits.max_items:
            raise SessionError(
                "conversation_limit",
                f"the conversation holds {len(self._order)} items, its limit "
                f"({limits.max_items}); delete items to go on",
            )
        total = self.size_bytes + adding
        if total > limits.max_bytes:
            raise SessionError(
                "conversation_limit",
                f"the conversation would hold {total} bytes, over its limit of "
                f"{limits.max_bytes}; delete items to go on",
            )

    def admit(self, item: wire.Item) -> None:
        """Refuse a client's item that is too large, or does not fit in the conversation."""
        size = item_bytes(item)
        if size > self.limits.max_item_bytes:
            raise SessionError(
                "item_too_large",
                f"the item is {size} bytes, over the limit of {self.limits.max_item_bytes}",
                param="item",
            )
        self.check_room(size)

    def __len__(self) -> int:
        return len(self._order)

    @property
    def items(self) -> list[wire.Item]:
        return [self._items[i] for i in self._order]

    @property
    def last_id(self) -> str | None:
        return self._order[-1] if self._order else None

    def get(self, item_id: str, param: str = "item_id") -> wire.Item:
        try:
            return self._items[item_id]
        except KeyError:
            raise SessionError(
                "item_not_found", f"no item with id {item_id!r}", param=param
            ) from None

    def add(self, item: wire.Item, previous_item_id: str | None = None) -> str | None:
        """Insert ``item`` after ``previous_item_id`` ("root": first; None: last).

        Returns the id of the item it now follows."""
        if item.id in self._items:
            raise SessionError(
                "duplicate_item_id", f"item {item.id!r} already exists", param="item.id"
            )
        if isinstance(item, wire.FunctionCallOutputItem):
            self.check_output(item.call_id)
        if previous_item_id is None:
            after = self.last_id
            self._order.append(item.id)
        elif previous_item_id == "root":
            after = None
            self._order.insert(0, item.id)
        else:
            self.get(previous_item_id, "previous_item_id")
            after = previous_item_id
            self._order.insert(self._order.index(previous_item_id) + 1, item.id)
        self._items[item.id] = item
        self._measure(item.id)
        if item.status == "in_progress":
            self._growing.add(item.id)
        if isinstance(item, wire.FunctionCallOutputItem):
            self._answered.add(item.call_id)
        return after

    def check_output(self, call_id: str) -> None:
        if call_id in self._answered:
            raise SessionError(
                "duplicate_call_output",
                f"call {call_id!r} already has an output",
                param="item.call_id",
            )
        for item in self._items.values():
            if isinstance(item, wire.FunctionCallItem) and item.call_id == call_id:
                return
        raise SessionError(
            "unknown_call_id",
            f"no function_call with call_id {call_id!r} in the conversation",
            param="item.call_id",
        )

    def delete(self, item_id: str) -> None:
        item = self.get(item_id)
        self._order.remove(item_id)
        del self._items[item_id]
        self._bytes -= self._sizes.pop(item_id, 0)
        self._growing.discard(item_id)
        if isinstance(item, wire.FunctionCallOutputItem):
            self._answered.discard(item.call_id)

    def truncate(self, item_id: str, content_index: int, text_end: int | None) -> None:
        item = self.get(item_id)
        if not isinstance(item, wire.MessageItem) or item.role != "assistant":
            raise SessionError(
                "invalid_item", "only assistant messages can be truncated", param="item_id"
            )
        if not 0 <= content_index < len(item.content):
            raise SessionError(
                "invalid_content_index",
                f"item has no content {content_index}",
                param="content_index",
            )
        part = item.content[content_index]
        if isinstance(part, wire.OutputAudio):  # text_end comes from the audio's timeline
            if text_end is not None:
                part.transcript = part.transcript[: max(0, text_end)]
                self._measure(item_id)
            return
        if text_end is None or not isinstance(part, wire.OutputText):
            return
        if not 0 <= text_end <= len(part.text):
            raise SessionError(
                "invalid_text_end", f"text_end must be in [0, {len(part.text)}]", param="text_end"
            )
        part.text = part.text[:text_end]
        self._measure(item_id)

    def messages(self, instructions: str) -> tuple[Message, ...]:
        """The chat messages (OpenAI shape) for a turn: instructions, then the items in order.

        Consecutive function calls join the assistant message before them, as chat APIs want
        every ``tool_calls`` of one assistant step in one message.
        """
        out: list[Message] = [Message("system", instructions)] if instructions else []
        for item in self.items:
            match item:
                case wire.MessageItem(role=role, content=content):
                    text = "".join(wire.text_of(p) for p in content)
                    if role == "assistant" and not text:
                        continue  # cancelled before anything was released
                    out.append(Message(role, text))
                case wire.FunctionCallItem(call_id=call_id, name=name, arguments=arguments):
                    call: dict[str, object] = {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                    prev = out[-1] if out else None
                    if prev is not None and prev.role == "assistant":
                        calls = (*(prev.tool_calls or ()), call)
                        out[-1] = msgspec.structs.replace(prev, tool_calls=calls)
                    else:
                        out.append(Message("assistant", None, tool_calls=(call,)))
                case wire.FunctionCallOutputItem(call_id=call_id, output=output):
                    out.append(Message("tool", output, tool_call_id=call_id))
        return tuple(out)


def item_from_param(param: wire.ItemParam, ids: IdFactory) -> wire.Item:
    match param:
        case wire.MessageParam(role=role, content=content, id=item_id):
            for i, part in enumerate(content):
                if isinstance(part, wire.InputAudio):
                    raise SessionError(
                        "audio_not_supported",
                        "input_audio content is not supported in conversation.item.create; "
                        "stream the audio with input_audio_buffer.append, or send input_text",
                        param=f"item.content[{i}]",
                    )
            return wire.MessageItem(item_id or ids("item"), role, list(content))
        case wire.FunctionCallParam(name=name, arguments=arguments, call_id=call_id, id=item_id):
            return wire.FunctionCallItem(
                item_id or ids("item"), call_id or ids("call"), name, arguments
            )
        case wire.FunctionCallOutputParam(call_id=call_id, output=output, id=item_id):
            return wire.FunctionCallOutputItem(item_id or ids("item"), call_id, output)
