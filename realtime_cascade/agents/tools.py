"""Tools from plain Python functions: the JSON Schema from the signature, arguments decoded and
validated with msgspec, the call run with a timeout, every failure a result the model can read.

A tool is a function, sync or async, with typed parameters and a docstring::

    def get_weather(city: str, unit: Literal["C", "F"] = "C") -> str:
        \"\"\"The weather in a city.

        Args:
            city: the city's name, e.g. "Paris"
        \"\"\"

- the schema's ``description`` is the docstring's text before ``Args:``; each parameter's is
  its line under ``Args:`` (or an ``Annotated[T, msgspec.Meta(description=...)]``);
- a parameter annotated ``Context[S]`` (any name) is not in the schema: it receives the
  session's :class:`Context` (its state, its id);
- a function whose only other parameter is a ``msgspec.Struct`` takes its arguments as that
  struct (the struct is the schema);
- the return value becomes the ``function_call_output``: a ``str`` as is, anything else as JSON.

Arguments that do not fit the schema, an exception, or a timeout become an error result
(``{"error": ..., "message": ...}``): the model sees it and can recover; nothing is raised.
Sync functions run in a worker thread, so a slow one does not stall other sessions.
"""

from __future__ import annotations

import inspect
import re
import time
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Generic, TypeVar, overload

import anyio
import msgspec

S = TypeVar("S")
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Context(Generic[S]):
    """What a tool, a verifier or a hook is given about its session."""

    session_id: str
    state: S  # the agent's ``state()`` for this session (None when it has none)


class ToolError(Exception):
    """A tool that cannot be built from its function (the message says why)."""


class ToolResult(msgspec.Struct, frozen=True):
    output: str  # what the model is given
    status: typing.Literal["ok", "error", "timeout"]
    duration_ms: float


_ARGS = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$", re.MULTILINE)
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _docstring(fn: Callable[..., object]) -> tuple[str, dict[str, str]]:
    """The description (text before ``Args:``) and each parameter's line under it."""
    doc = inspect.cleandoc(fn.__doc__ or "")
    match = _ARGS.search(doc)
    if match is None:
        return doc.strip(), {}
    described: dict[str, str] = {}
    name: str | None = None
    for line in doc[match.end() :].splitlines():
        if not line.strip():
            name = None
            continue
        m = _ARG_LINE.match(line)
        if m is not None and (name is None or len(line) - len(line.lstrip()) <= 4):
            name = m.group(1).lstrip("*")
            described[name] = m.group(2).strip()
        elif name is not None:
            described[name] = f"{described[name]} {line.strip()}".strip()
        elif not line.startswith((" ", "\t")):
            break  # the next section
    return doc[: match.start()].strip(), described


def _is_context(hint: object) -> bool:
    return hint is Context or typing.get_origin(hint) is Context


class Tool:
    """A function the model may call, run server-side. Build one with :func:`tool` (or pass
    the plain function to :class:`~realtime_cascade.agents.Agent`, which does)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        if not callable(fn):
            raise ToolError(f"{fn!r} is not callable")
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", ""))
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ToolError(f"tool name {self.name!r}: use 1-64 letters, digits, _ or -")
        self.timeout_s = timeout_s
        self.is_async = inspect.iscoroutinefunction(fn)
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:  # unresolvable annotations: say which function
            raise ToolError(f"tool {self.name!r}: cannot read its annotations: {exc}") from None
        text, described = _docstring(fn)
        self._context: str | None = None
        fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
        params = list(inspect.signature(fn).parameters.values())
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise ToolError(f"tool {self.name!r}: *args and **kwargs have no schema")
            hint = hints.get(p.name, Any)
            if _is_context(hint):
                self._context = p.name
                continue
            if p.name not in hints:
                raise ToolError(f"tool {self.name!r}: parameter {p.name!r} needs a type")
            if p.name in described:
                hint = Annotated[hint, msgspec.Meta(description=described[p.name])]
            if p.default is inspect.Parameter.empty:
                fields.append((p.name, hint))
            else:
                fields.append((p.name, hint, p.default))
        self._whole: str | None = None  # the one parameter that takes the whole struct
        given = [f for f in fields if f[0] != self._context]
        only = hints.get(given[0][0]) if len(given) == 1 else None
        if isinstance(only, type) and issubclass(only, msgspec.Struct):
            self._whole = given[0][0]
            self.arguments: type[msgspec.Struct] = only
            text = text or inspect.cleandoc(only.__doc__ or "")
        else:
            title = "".join(w.title() for w in re.split(r"[_-]", self.name)) + "Arguments"
            self.arguments = msgspec.defstruct(
                title, fields, kw_only=True, forbid_unknown_fields=True
            )
        self.description = description if description is not None else text
        self._decoder = msgspec.json.Decoder(self.arguments)
        self.schema = self._schema()

    def _schema(self) -> dict[str, object]:
        try:
            (ref,), defs = msgspec.json.schema_components(
                [self.arguments], ref_template="#/$defs/{name}"
            )
        except (TypeError, ValueError) as exc:
            raise ToolError(
                f"tool {self.name!r}: no JSON Schema for its parameters: {exc}"
            ) from None
        key = str(ref["$ref"]).rsplit("/", 1)[-1]
        body = dict(defs.pop(key))
        body.pop("title", None)
        body.pop("description", None)
        body.setdefault("properties", {})
        body["additionalProperties"] = False
        if defs:
            body["$defs"] = defs
        return body

    def definition(self) -> dict[str, object]:
        """The tool in the chat-completions ``tools`` shape."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.schema,
            },
        }

    def check(self, arguments: str) -> str | None:
        """What is wrong with ``arguments`` for this tool's schema, or None."""
        try:
            self._decoder.decode(arguments or "{}")
        except msgspec.ValidationError as exc:
            return f"{self.name}: invalid arguments: {exc}"
        except msgspec.DecodeError as exc:
            return f"{self.name}: arguments are not JSON: {exc}"
        return None

    def _kwargs(self, arguments: str, context: Context[Any]) -> dict[str, Any]:
        args = self._decoder.decode(arguments or "{}")
        kwargs: dict[str, Any]
        if self._whole is not None:
            kwargs = {self._whole: args}
        else:
            kwargs = {f: getattr(args, f) for f in args.__struct_fields__}
        if self._context is not None:
            kwargs[self._context] = context
        return kwargs

    async def __call__(
        self, arguments: str, context: Context[Any], timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> ToolResult:
        """Run the call; never raises (but for cancellation)."""
        t0 = time.perf_counter()

        def took() -> float:
            return round((time.perf_counter() - t0) * 1000.0, 3)

        limit = self.timeout_s if self.timeout_s is not None else timeout_s
        try:
            kwargs = self._kwargs(arguments, context)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return ToolResult(_error("invalid_arguments", f"{self.name}: {exc}"), "error", took())
        try:
            with anyio.fail_after(limit):
                if self.is_async:
                    value = await self.fn(**kwargs)
                else:
                    value = await anyio.to_thread.run_sync(
                        partial(self.fn, **kwargs), abandon_on_cancel=True
                    )
                    if inspect.isawaitable(value):  # a sync wrapper around a coroutine
                        value = await value
        except TimeoutError:
            message = f"{self.name} did not finish within {limit:g} s"
            return ToolResult(_error("timeout", message), "timeout", took())
        except Exception as exc:  # the tool's bug is the model's information, not our crash
            message = f"{self.name} failed: {type(exc).__name__}: {exc}"
            return ToolResult(_error("tool_failed", message), "error", took())
        try:
            output = value if isinstance(value, str) else msgspec.json.encode(value).decode()
        except (TypeError, msgspec.EncodeError) as exc:
            message = f"{self.name} returned what is not JSON: {exc}"
            return ToolResult(_error("tool_failed", message), "error", took())
        return ToolResult(output, "ok", took())


def _error(code: str, message: str) -> str:
    return msgspec.json.encode({"error": code, "message": message}).decode()


F = TypeVar("F", bound=Callable[..., Any])


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout_s: float | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """``@tool`` or ``@tool(name=..., timeout_s=...)``: a :class:`Tool` from a function."""
    if fn is not None:
        return Tool(fn)

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, timeout_s=timeout_s)

    return wrap


ToolLike = Tool | Callable[..., Any] | Callable[..., Awaitable[Any]]


def as_tool(value: ToolLike) -> Tool:
    return value if isinstance(value, Tool) else Tool(value)
