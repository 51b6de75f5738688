"""A session's settings and the per-response cascade overrides (``session.update``,
``response.create``'s ``cascade``), checked against the profile's tiers and the key's policy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from .. import wire
from ..audio.config import embedded as embedded_speech
from ..audio.session import AudioSettings
from ..core import (
    CascadeParams,
)
from ..runtime import CascadeProfile
from .errors import SessionError

_T = TypeVar("_T")


def pick(a: _T | None, b: _T | None) -> _T | None:
    return b if b is not None else a


def merge_overrides(
    base: wire.CascadeOverrides, top: wire.CascadeOverrides | None
) -> wire.CascadeOverrides:
    """``top`` over ``base``, field by field (nested objects merged too)."""
    if top is None:
        return base

    policy: wire.PolicyOverrides | None = base.policy
    if top.policy is not None:
        a = base.policy or wire.PolicyOverrides()
        policy = wire.PolicyOverrides(
            **{f: pick(getattr(a, f), getattr(top.policy, f)) for f in a.__struct_fields__}
        )
    budgets: wire.BudgetOverrides | None = base.budgets
    if top.budgets is not None:
        b = base.budgets or wire.BudgetOverrides()
        budgets = wire.BudgetOverrides(
            **{f: pick(getattr(b, f), getattr(top.budgets, f)) for f in b.__struct_fields__}
        )
    return wire.CascadeOverrides(
        first_tier=top.first_tier if top.first_tier is not None else base.first_tier,
        max_tier=top.max_tier if top.max_tier is not None else base.max_tier,
        policy=policy,
        budgets=budgets,
    )


@dataclass(frozen=True)
class Effective:
    """What a turn runs with once the overrides are applied to the profile."""

    params: CascadeParams
    first_tier: int
    max_tier: int | None


def _tier_index(params: CascadeParams, ref: int | str, param: str) -> int:
    names = [t.name for t in params.tiers]
    if isinstance(ref, str):
        if ref not in names:
            raise SessionError(
                "invalid_value", f"unknown tier {ref!r} (tiers: {', '.join(names)})", param=param
            )
        return names.index(ref)
    if not 0 <= ref < len(names):
        raise SessionError(
            "invalid_value", f"tier index must be in [0, {len(names) - 1}]", param=param
        )
    return ref


def apply_overrides(params: CascadeParams, o: wire.CascadeOverrides) -> Effective:
    """Validate ``o`` against the profile and build the turn's parameters."""
    where = "session.cascade"
    first = 0 if o.first_tier is None else _tier_index(params, o.first_tier, f"{where}.first_tier")
    top = None if o.max_tier is None else _tier_index(params, o.max_tier, f"{where}.max_tier")
    if top is not None and first > top:
        raise SessionError("invalid_value", "first_tier is above max_tier", param=where)
    policy = params.policy
    if o.policy is not None:
        changes = {k: v for k, v in msgspec.structs.asdict(o.policy).items() if v is not None}
        policy = msgspec.structs.replace(policy, **changes)
        if not 0.0 <= policy.preempt_below <= policy.hedge_below <= 1.0:
            raise SessionError(
                "invalid_value",
                "need 0 <= preempt_below <= hedge_below <= 1",
                param=f"{where}.policy",
            )
    budgets = params.budgets
    if o.budgets is not None:
        changes = {k: v for k, v in msgspec.structs.asdict(o.budgets).items() if v is not None}
        if "fillers" in changes:
            changes["fillers"] = tuple(changes["fillers"])
        for key, value in changes.items():
            if isinstance(value, float | int) and value < 0:
                raise SessionError(
                    "invalid_value", f"{key} must not be negative", param=f"{where}.budgets.{key}"
                )
        budgets = msgspec.structs.replace(budgets, **changes)
    return Effective(msgspec.structs.replace(params, policy=policy, budgets=budgets), first, top)


def chat_tools(tools: list[wire.FunctionTool]) -> tuple[dict[str, object], ...]:
    """Realtime's flat function tools in the chat-completions shape."""
    out: list[dict[str, object]] = []
    for t in tools:
        fn: dict[str, object] = {"name": t.name}
        if t.description is not None:
            fn["description"] = t.description
        fn["parameters"] = t.parameters if t.parameters is not None else {"type": "object"}
        out.append({"type": "function", "function": fn})
    return tuple(out)


def chat_tool_choice(choice: wire.ToolChoice) -> str | dict[str, object]:
    match choice:
        case wire.ToolChoiceFunction(name=name):
            return {"type": "function", "function": {"name": name}}
        case str():
            return choice


def check_modalities(modalities: list[wire.Modality] | None, param: str) -> None:
    # ["audio"]: spoken, with its transcript ("text" beside it changes nothing)
    if modalities is not None and (not modalities or len(set(modalities)) != len(modalities)):
        raise SessionError(
            "unsupported_modality",
            "output_modalities must be ['text'] or ['audio']",
            param=param,
        )


class Settings:
    """The session's configuration as set by ``session.update`` (partial updates merge)."""

    def __init__(self, profile: CascadeProfile) -> None:
        self.profile = profile
        self.instructions = ""
        self.tools: list[wire.FunctionTool] = []
        self.tool_choice: wire.ToolChoice = "auto"
        self.max_output_tokens: wire.MaxTokens = "inf"
        self.overrides = wire.CascadeOverrides()
        self.effective = apply_overrides(profile.params, self.overrides)
        self.output_modalities: list[wire.Modality] = ["text"]
        self.audio = AudioSettings()
        self.speech = profile.speech or embedded_speech()  # its recogniser and synthesiser
        # a key's policy vets the client's tiers (governance.Governor.check)
        self.check: Callable[[wire.CascadeOverrides, Effective], None] | None = None

    def update(self, p: wire.SessionParams) -> None:
        """All or nothing: a refused update changes nothing."""
        check_modalities(p.output_modalities, "session.output_modalities")
        if p.model is not None and p.model != self.profile.name:
            raise SessionError(
                "invalid_value",
                "the model (cascade profile) is chosen when connecting: ?model=NAME",
                param="session.model",
            )
        overrides = merge_overrides(self.overrides, p.cascade)
        effective = apply_overrides(self.profile.params, overrides)
        if self.check is not None:
            self.check(overrides, effective)
        audio = self.audio.merged(p.audio, self.speech.tts.check_voice)
        self.overrides, self.effective, self.audio = overrides, effective, audio
        if p.output_modalities is not None:
            self.output_modalities = p.output_modalities
        if p.instructions is not None:
            self.instructions = p.instructions
        if p.tools is not None:
            self.tools = p.tools
        if p.tool_choice is not None:
            self.tool_choice = p.tool_choice
        if p.max_output_tokens is not None:
            self.max_output_tokens = p.max_output_tokens

    def object(self, session_id: str) -> wire.SessionObject:
        return wire.SessionObject(
            id=session_id,
            model=self.profile.name,
            instructions=self.instructions,
            tools=self.tools,
            tool_choice=self.tool_choice,
            output_modalities=self.output_modalities,
            max_output_tokens=self.max_output_tokens,
            cascade=wire.CascadeInfo(
                profile=self.profile.name,
                tiers=[t.name for t in self.profile.params.tiers],
                overrides=self.overrides,
            ),
            audio=self.audio.params(self.speech.stt.name),
        )
