"""The physical-limit baseline: a bare WebSocket server streaming the sim schedule, nothing else.

    python -m bench.bare --config demos/booking/config.toml --profile booking --tier light

Same library (websockets), same event loop (uvloop), same token schedule as the runtime's light
tier for the same conversation (:func:`bench.ideal.tier_schedule`: the request the sim upstream
would see), and the same clock as the bench's sim upstreams (``--clock absolute``: each token
due at the stream's start plus its scheduled offset; ``relative``: one sleep per gap, as the
stock sim-upstream). No HTTP upstream, no SSE, no monitor, no gate, no send queue: every text
token is one ``response.output_text.delta`` the moment it is due. It speaks just enough of the
protocol for the bench's client: ``session.update`` (instructions and tools),
``conversation.item.create``, ``response.create`` (``conversation: "none"`` honoured),
``response.cancel``; every response ends with ``response.done`` carrying its output items
(text and function calls) and usage. Prints ``bare on ws://HOST:PORT`` once listening.

``--upstream URL`` makes it a bare *proxy*: each response is streamed from the sim upstream at
``URL`` (``…/v1``) on the server's own HTTP client (:class:`~realtime_cascade.providers.
aiohttp_client.AiohttpUpstream`, the ``openai`` provider's default), with the request body and
headers the server would send for its first tier, and each text token of the SSE body is
forwarded as one delta the moment it is read (the SSE lines split and each ``data:`` decoded by
msgspec into just the fields used). What the server does beyond this is its own work: SSE
decoding into chunks, the cascade core, the response builder, the session.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import signal
import sys
import time
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import anyio
import msgspec
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from realtime_cascade import config as config_mod
from realtime_cascade import loop, wire
from realtime_cascade.core import TierSpec
from realtime_cascade.providers.aiohttp_client import AiohttpUpstream
from realtime_cascade.providers.base import Message
from realtime_cascade.providers.openai import OpenAIProvider, OpenAIProviderConfig
from realtime_cascade.providers.sim import SCRIPTS, SimProfile, SimStep
from realtime_cascade.providers.sim_upstream import resolve_script
from realtime_cascade.server.conversation import Conversation
from realtime_cascade.server.settings import chat_tools

from .ideal import TierSim, tier_request_for, tier_schedule


class _In(msgspec.Struct):
    type: str
    session: dict[str, Any] | None = None
    item: dict[str, Any] | None = None
    response: dict[str, Any] | None = None


_DECODE = msgspec.json.Decoder(_In)
_ENCODE = msgspec.json.Encoder()


class _Fn(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _Call(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _Fn | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_Call] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _SSEChunk(msgspec.Struct):
    choices: list[_Choice] = []


_SSE = msgspec.json.Decoder(_SSEChunk)


class BareUpstream:
    """The proxy's upstream: the server's HTTP client and request body for ``tier``."""

    def __init__(self, base_url: str, tier: str, timeout_s: float = 60.0) -> None:
        config = OpenAIProviderConfig(base_url=base_url, model=tier, api_key_env="")
        self.provider = OpenAIProvider(tier, config)  # the body and headers, built as served
        url = base_url.rstrip("/") + "/chat/completions"
        self.http = AiohttpUpstream(url, timeout_s, config.max_connections)

    def headers(self) -> Mapping[str, str]:
        return self.provider._request_headers()


def load_tier(config_path: str | None, profile: str, tier: str) -> tuple[TierSim, TierSpec]:
    cfg = config_mod.load(config_path)
    prof = cfg.profiles[profile]
    for t in prof.tiers:
        if t.name == tier:
            provider = t.provider
            if not isinstance(provider, config_mod.SimProviderConfig):
                raise SystemExit(f"bare: tier {tier!r} is not a sim tier")
            sim = SimProfile(**{f: getattr(provider, f) for f in SimProfile.__struct_fields__})
            script = resolve_script(prof.script or sim.script, SCRIPTS)
            spec = TierSpec(**{f: getattr(t, f) for f in TierSpec.__struct_fields__})
            return TierSim(t.name, sim, script), spec
    raise SystemExit(f"bare: profile {profile!r} has no tier {tier!r}")


class BareSession:
    def __init__(
        self,
        ws: ServerConnection,
        tier: TierSim,
        spec: TierSpec,
        sid: str,
        clock: str,
        upstream: BareUpstream | None = None,
    ) -> None:
        self.ws = ws
        self.upstream = upstream
        self.absolute = clock == "absolute"
        self.tier = tier
        self.spec = spec
        self.sid = sid
        self.conversation = Conversation()
        self.instructions = ""
        self.tools: tuple[dict[str, object], ...] = ()
        self.responses = 0
        self.items = 0
        self.scope: anyio.CancelScope | None = None
        self.done = anyio.Event()

    def _id(self, prefix: str) -> str:
        self.items += 1
        return f"{prefix}_{self.sid}_{self.items}"

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(_ENCODE.encode(event).decode())

    async def run(self, tg: anyio.abc.TaskGroup) -> None:
        await self.send({"type": "session.created", "session": {"id": self.sid}})
        async for message in self.ws:
            event = _DECODE.decode(message)
            match event.type:
                case "session.update":
                    s = event.session or {}
                    if "instructions" in s:
                        self.instructions = s["instructions"]
                    if "tools" in s:
                        tools = msgspec.convert(s["tools"], list[wire.FunctionTool])
                        self.tools = chat_tools(tools)
                    await self.send({"type": "session.updated", "session": {"id": self.sid}})
                case "conversation.item.create":
                    param = msgspec.convert(event.item, wire.ItemParam)
                    self.conversation.add(self._item(param))
                case "response.create":
                    params = event.response or {}
                    self.done = anyio.Event()
                    self.scope = anyio.CancelScope()
                    tg.start_soon(self.respond, params.get("conversation") != "none", self.scope)
                case "response.cancel":
                    if self.scope is not None:
                        self.scope.cancel()
                        await self.done.wait()
                    else:
                        error = {
                            "type": "invalid_request_error",
                            "code": "response_cancel_not_active",
                            "message": "there is no response in progress to cancel",
                        }
                        await self.send({"type": "error", "error": error})
                case _:
                    pass

    async def _pieces(
        self, steps: list[SimStep], messages: tuple[Message, ...], choice: str | None
    ) -> AsyncGenerator[tuple[str, _Call | None], None]:
        """Each text token or tool-call piece when it is due (scheduled) or read (proxy)."""
        if self.upstream is not None:
            request = tier_request_for(messages, self.tools, choice, None, self.spec)
            up = self.upstream
            response = await up.http.post(up.provider.request_body(request), up.headers)
            try:
                content = response.content
                buffer = b""
                while piece := await content.readany():
                    lines = (buffer + piece).split(b"\n")
                    buffer = lines.pop()
                    for line in lines:
                        if not line.startswith(b"data: "):
                            continue
                        data = line[6:].rstrip(b"\r")
                        if data == b"[DONE]":
                            return
                        for event in _SSE.decode(data).choices:
                            delta = event.delta
                            if delta is None:
                                continue
                            if delta.content:
                                yield delta.content, None
                            for call in delta.tool_calls or ():
                                yield "", call
            finally:
                response.close()
            return
        anchor: float | None = None
        due = 0.0
        for step in steps:
            delay = step.delay
            if self.absolute:  # due at start + scheduled offset (as sim-upstream does)
                now = time.monotonic()
                anchor = now if anchor is None else anchor
                due += step.delay
                delay = anchor + due - now
            if delay > 0:
                await anyio.sleep(delay)
            chunk = step.chunk
            tc = chunk.tool_call
            part = None if tc is None else _Call(tc.index, tc.id, _Fn(tc.name, tc.arguments))
            if chunk.text or part is not None:
                yield chunk.text, part

    def _item(self, param: wire.ItemParam) -> wire.Item:
        match param:
            case wire.MessageParam(role=role, content=content):
                return wire.MessageItem(self._id("item"), role, list(content))
            case wire.FunctionCallParam(name=name, arguments=arguments, call_id=call_id):
                return wire.FunctionCallItem(
                    self._id("item"), call_id or self._id("call"), name, arguments
                )
            case wire.FunctionCallOutputParam(call_id=call_id, output=output):
                return wire.FunctionCallOutputItem(self._id("item"), call_id, output)

    async def respond(self, in_conversation: bool, scope: anyio.CancelScope) -> None:
        rid = f"resp_{self.sid}_{self.responses}"
        self.responses += 1
        messages = self.conversation.messages(self.instructions)
        choice = "auto" if self.tools else None
        steps = (
            []
            if self.upstream is not None
            else tier_schedule(self.tier, messages, self.tools, choice, None, self.spec)
        )
        await self.send({"type": "response.created", "response": {"id": rid}})
        item_id = self._id("item")
        text: list[str] = []
        calls: dict[int, list[str]] = {}
        meta: dict[int, tuple[str, str]] = {}
        tokens = 0
        status = "completed"
        with scope:
            pieces = self._pieces(steps, messages, choice)
            async with contextlib.aclosing(pieces):
                async for text_piece, call in pieces:
                    if text_piece:
                        tokens += 1
                        text.append(text_piece)
                        await self.send(
                            {
                                "type": "response.output_text.delta",
                                "response_id": rid,
                                "item_id": item_id,
                                "output_index": 0,
                                "content_index": 0,
                                "delta": text_piece,
                            }
                        )
                    if call is not None:
                        tokens += 1
                        fn = call.function
                        calls.setdefault(call.index, []).append((fn.arguments or "") if fn else "")
                        name = fn.name if fn is not None else None
                        if call.id or name:
                            meta[call.index] = (call.id or "", name or "")
        if scope.cancel_called:
            status = "cancelled"
        output: list[wire.Item] = []
        joined = "".join(text)
        if joined:
            output.append(wire.MessageItem(item_id, "assistant", [wire.OutputText(joined)]))
        if status == "completed":
            for index in sorted(calls):
                call_id, name = meta.get(index, ("", ""))
                output.append(
                    wire.FunctionCallItem(
                        self._id("item"), call_id or self._id("call"), name, "".join(calls[index])
                    )
                )
        if in_conversation:
            for item in output:
                self.conversation.add(item)
        response = {
            "id": rid,
            "status": status,
            "output": msgspec.to_builtins(output),
            "usage": {"input_tokens": 0, "output_tokens": tokens, "total_tokens": tokens},
        }
        if status == "cancelled":
            response["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
        try:
            await self.send({"type": "response.done", "response": response})
        finally:
            self.scope = None
            self.done.set()


async def serve_bare(
    host: str,
    port: int,
    tier: TierSim,
    spec: TierSpec,
    *,
    clock: str = "absolute",
    upstream: str | None = None,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started(port)`` once listening."""
    counter = 0
    proxy = None if upstream is None else BareUpstream(upstream, tier.name)

    async def handler(ws: ServerConnection) -> None:
        nonlocal counter
        counter += 1
        session = BareSession(ws, tier, spec, f"bare{counter}", clock, proxy)
        try:
            async with anyio.create_task_group() as tg:
                await session.run(tg)
                tg.cancel_scope.cancel()
        except ConnectionClosed:
            pass

    try:
        async with serve(
            handler, host, port, compression=None, max_queue=8, backlog=4096
        ) as server:
            task_status.started(int(server.sockets[0].getsockname()[1]))
            await anyio.sleep_forever()
    finally:
        if proxy is not None:
            with anyio.CancelScope(shield=True):
                await proxy.provider.aclose()
                await proxy.http.aclose()


async def _main(
    host: str, port: int, tier: TierSim, spec: TierSpec, clock: str, upstream: str | None
) -> None:
    async with anyio.create_task_group() as tg:
        bare = functools.partial(serve_bare, clock=clock, upstream=upstream)
        bound = await tg.start(bare, host, port, tier, spec)
        print(f"bare on ws://{host}:{bound}", flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        tg.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__)
    parser.add_argument("--config", default=None, help="TOML config with sim tiers (default)")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--tier", default="light", help="which tier's schedule to stream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--clock",
        choices=["absolute", "relative"],
        default="absolute",
        help="tokens due at start + offset (as sim-upstream), or one sleep per gap "
        "(as sim-upstream --clock relative)",
    )
    parser.add_argument(
        "--upstream",
        default=None,
        metavar="URL",
        help="a bare proxy: stream each response from this sim upstream (…/v1) on the "
        "server's HTTP client (aiohttp) instead of the in-process schedule",
    )
    args = parser.parse_args(argv)
    if args.config is not None and not Path(args.config).is_file():
        print(f"bare: no config {args.config}", file=sys.stderr)
        return 2
    tier, spec = load_tier(args.config, args.profile, args.tier)
    loop.run(_main, args.host, args.port, tier, spec, args.clock, args.upstream)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
