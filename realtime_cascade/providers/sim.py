"""Simulated tiers: seeded latency, text from a pluggable script, logprobs that track difficulty.

The model of difficulty: a script gives each reply as segments marked *sure* or *unsure* for the
tier that says it (a tier is unsure where the request is harder than its ``skill``). Sure tokens
get log-probabilities near 0 with a small spread and peaked top-k alternatives; unsure tokens get
log-probabilities around -1 to -3 with flat alternatives — the shape real small models show on
questions beyond them. Latency: time to first token and inter-token gaps are log-normal around
the profile's medians. Everything is drawn from a ``random.Random`` seeded by the profile, the
request and its seed, so a run is reproducible to the token and the microsecond schedule.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import AsyncGenerator, Sequence
from typing import Literal, Protocol

import anyio
import msgspec

from .base import Chunk, Message, TierRequest, ToolCallDelta, Usage

Sureness = Literal["sure", "doubt", "unsure"]


class SimProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ttft_ms: float = 150.0  # median time to first token
    ttft_sigma: float = 0.25  # log-normal spread
    itl_ms: float = 15.0  # median gap between tokens
    itl_sigma: float = 0.35
    skill: float = 0.5  # requests with difficulty above this are beyond the tier
    seed: int = 0
    script: str = "generic"  # which script writes the text (see ``SCRIPTS``)


class Segment(msgspec.Struct, frozen=True):
    text: str
    sure: Sureness = "sure"


class ScriptedCall(msgspec.Struct, frozen=True):
    name: str
    arguments: str
    sure: Sureness = "sure"


class Reply(msgspec.Struct, frozen=True):
    segments: tuple[Segment, ...]
    tool_calls: tuple[ScriptedCall, ...] = ()


class Script(Protocol):
    """Writes a tier's whole reply to the conversation (ignoring any prefix)."""

    def reply(self, request: TierRequest, skill: float, rng: random.Random) -> Reply: ...


# --- the generic script -------------------------------------------------------------------

_CONSTRAINT = re.compile(
    r"\b(and|unless|keep|but|if|earliest|latest|apply|only|except|then|while|instead|cheapest)\b",
    re.IGNORECASE,
)
_PRONOUNS = {"my": "your", "me": "you", "i": "you", "mine": "yours", "i'm": "you're", "am": "are"}
_ACKS = ("Let me check that.", "Sure, one moment.", "Okay, let me look.", "Alright, let me see.")


def difficulty(text: str) -> float:
    """How hard a request is, in [0, 1]: constraints and length make it harder."""
    constraints = len(_CONSTRAINT.findall(text)) + 0.5 * text.count(",")
    return max(0.0, min(1.0, 0.1 + 0.18 * constraints + 0.01 * len(text.split())))


def _restate(text: str) -> str:
    words = text.strip().rstrip(".!?").split()
    out = [_PRONOUNS.get(w.lower(), w) for w in words]
    if out:
        out[0] = out[0][:1].lower() + out[0][1:]
    return " ".join(out)


def last_of(messages: Sequence[Message], role: str) -> Message | None:
    for m in reversed(messages):
        if m.role == role:
            return m
    return None


class GenericScript:
    """Restates the request as done; struggles (vaguely, unsurely) when it is beyond the tier.

    With tools offered and a user message that names one, it calls that tool with what follows
    the name ("call get_weather for Paris": "Paris"; the whole request when nothing does) as its
    first string parameter (``query`` if none); after a tool result it reports it.
    """

    def reply(self, request: TierRequest, skill: float, rng: random.Random) -> Reply:
        last = request.messages[-1] if request.messages else None
        if last is not None and last.role == "tool":
            found = (last.content or "").strip().rstrip(".!?") or "nothing"
            return Reply((Segment(f"Here is what I found: {found}."),))
        user = last_of(request.messages, "user")
        text = (user.content or "") if user else ""
        for tool in request.tools:
            fn = tool.get("function")
            name = fn.get("name") if isinstance(fn, dict) else None
            if isinstance(name, str) and name in text:
                params = fn.get("parameters") if isinstance(fn, dict) else None
                subject = _after(text, name)
                args = msgspec.json.encode({_text_parameter(params): subject}).decode()
                return Reply((), (ScriptedCall(name, args),))
        ack = _ACKS[int(hashlib.blake2b(text.encode(), digest_size=2).hexdigest(), 16) % len(_ACKS)]
        margin = difficulty(text) - skill
        restated = _restate(text)
        if margin <= 0:
            body = f" I can {restated}. Shall I go ahead?"
            return Reply((Segment(ack), Segment(body)))
        sure: Sureness = "unsure" if margin > 0.2 else "doubt"
        first = re.split(r",| and | unless | but ", restated)[0]
        body = f" I think I can {first}, but I am not sure about the rest of it."
        return Reply((Segment(ack), Segment(body, sure)))


_LEAD = re.compile(r"^(?:for|in|about|on|to|with|at)\s+", re.IGNORECASE)


def _after(text: str, name: str) -> str:
    """What the user asked the tool about: the words after its name, less a leading
    preposition and the closing punctuation; the whole request when nothing follows."""
    rest = _LEAD.sub("", text.split(name, 1)[1].strip()).rstrip(" .!?")
    return rest or text


def _text_parameter(schema: object) -> str:
    """The parameter the generic script puts the request in: the tool's first string property
    (``query`` when it has none), so a tool with one text parameter gets a call it accepts."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(props, dict):
        for key, prop in props.items():
            if isinstance(prop, dict) and prop.get("type") == "string":
                return str(key)
    return "query"


SCRIPTS: dict[str, Script] = {"generic": GenericScript()}


# --- tokens and logprobs ------------------------------------------------------------------

_TOKEN = re.compile(r"\s*[\w'’]+|\s*[^\w\s]|\s+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _logprobs(sure: Sureness, rng: random.Random) -> tuple[float, tuple[float, ...]]:
    if sure == "sure":
        lp = -rng.expovariate(1 / 0.04) if rng.random() > 0.03 else -rng.uniform(0.5, 1.2)
        top = (lp, -4.0 - rng.random(), -5.0 - rng.random(), -6.0 - rng.random(), -7.0)
    elif sure == "doubt":
        lp = -(0.3 + rng.expovariate(1 / 0.5))
        top = (lp, lp - 0.4, lp - 0.9, -3.0, -3.5)
    else:
        lp = -(0.8 + rng.expovariate(1 / 1.4))
        top = (lp, lp - 0.1, lp - 0.3, lp - 0.5, lp - 0.8)
    lp = max(lp, -20.0)
    return lp, tuple(sorted((max(t, -20.0) for t in top), reverse=True))


def continue_after(full: str, prefix: str) -> tuple[int, str]:
    """Where a reply continues after ``prefix``: the offset in ``full`` and a joiner.

    When the reply begins with the prefix, it continues right after it. Otherwise it continues
    after as many sentences as the prefix holds (a stand-in for a model told to go on).
    """
    p = prefix.strip()
    if not p:
        return 0, ""
    body = full.lstrip()
    lead = len(full) - len(body)
    if body.startswith(p):
        return lead + len(p), ""
    sentences = len(re.findall(r"[.!?](\s|$)", p))
    offset = lead
    for _ in range(sentences):
        m = re.compile(r"[.!?](\s|$)").search(full, offset)
        if m is None:
            return len(full), ""
        offset = m.end(0) - len(m.group(1))
    return offset, "" if full[offset : offset + 1].isspace() else " "


def _rng(profile: SimProfile, name: str, request: TierRequest) -> random.Random:
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{profile.seed}|{request.seed}|{name}|{request.prefix}".encode())
    for m in request.messages:
        h.update(f"|{m.role}:{m.content}".encode())
    return random.Random(int.from_bytes(h.digest(), "big"))


class SimStep(msgspec.Struct, frozen=True):
    delay: float  # seconds to wait before this chunk
    chunk: Chunk


def schedule(profile: SimProfile, name: str, script: Script, request: TierRequest) -> list[SimStep]:
    """The whole stream, precomputed: what each chunk says and when it is due."""
    rng = _rng(profile, name, request)
    reply = script.reply(request, profile.skill, rng)

    def ttft() -> float:
        return profile.ttft_ms / 1000.0 * math.exp(profile.ttft_sigma * rng.gauss(0.0, 1.0))

    def itl() -> float:
        return profile.itl_ms / 1000.0 * math.exp(profile.itl_sigma * rng.gauss(0.0, 1.0))

    steps: list[SimStep] = []
    full = "".join(s.text for s in reply.segments)
    offset, joiner = continue_after(full, request.prefix)
    position = 0
    first = True
    for seg in reply.segments:
        start, end = position, position + len(seg.text)
        position = end
        if end <= offset:
            continue
        text = seg.text[max(0, offset - start) :]
        if joiner and first:
            text = joiner + text.lstrip()
        for token in tokenize(text):
            lp, top = _logprobs(seg.sure, rng)
            steps.append(SimStep(ttft() if first else itl(), Chunk(token, lp, top)))
            first = False
    for index, call in enumerate(reply.tool_calls):
        pieces = tokenize(call.arguments) or [call.arguments]
        for k, piece in enumerate(pieces):
            lp, top = _logprobs(call.sure, rng)
            delta = ToolCallDelta(
                index,
                id=f"call_{rng.getrandbits(40):010x}" if k == 0 else None,
                name=call.name if k == 0 else None,
                arguments=piece,
            )
            steps.append(SimStep(ttft() if first else itl(), Chunk(logprob=lp, tool_call=delta)))
            first = False
    finish = "tool_calls" if reply.tool_calls else "stop"
    if len(steps) > request.max_tokens:
        steps = steps[: request.max_tokens]
        finish = "length"
    input_tokens = (
        sum(len(m.content or "") for m in request.messages) // 4 + len(request.prefix) // 4
    )
    usage = Usage(max(1, input_tokens), len(steps))
    steps.append(SimStep(0.0 if steps else ttft(), Chunk(finish_reason=finish, usage=usage)))
    return steps


class SimProvider:
    """A simulated tier, streaming in real time (``anyio.sleep`` between chunks)."""

    def __init__(self, name: str, profile: SimProfile, script: Script | None = None) -> None:
        self.name = name
        self.profile = profile
        self.script = script if script is not None else SCRIPTS[profile.script]

    async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        for step in schedule(self.profile, self.name, self.script, request):
            if step.delay > 0:
                await anyio.sleep(step.delay)
            yield step.chunk

    async def aclose(self) -> None:
        return None
