"""Governance: which API key may do what, enforced per turn through the core's own bounds.

A key (``[keys.NAME]``, or a bare ``server.api_keys`` entry) maps to a policy
(``[policies.NAME]``; keys without one get ``policies.default`` when it exists, and so do
clients of a server without keys). A policy bounds, for every turn of a session:

- **tiers**: the contiguous run of tiers the key may use. The turn's ``first_tier`` and
  ``max_tier`` (what the core routes, escalates, hedges and falls back within) are clamped to it;
  a client that *explicitly* asks for a tier outside it (``session.cascade.first_tier`` /
  ``max_tier``) is refused with ``invalid_value``.
- **budgets**: ``turn_cap_usd`` and ``session_cap_usd`` are upper bounds on the profile's and
  the client's; the core refuses whatever would break them (a traced ``refuse``, cause
  ``budget``).
- **max_escalations_per_session**: once that many responses of the session have escalated,
  later turns run with ``max_tier`` = their first tier, so the core cannot escalate them.

Every turn whose tier range a policy narrows starts with a traced decision — kind ``refuse``,
cause ``policy``, ``to_tier`` the first tier cut off — saying which policy and why, ahead of the
core's own ``route``: it is in ``cascade.decision``, in ``cascade.trace`` and in the audit log.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from .. import wire
from ..core import CascadeParams, DecisionRecord
from .config import DEFAULT_POLICY, KeyConfig, KeyPolicy


class GovernanceError(Exception):
    """A key cannot be resolved (its environment variable is unset)."""


class PolicyRefused(wire.ProtocolError):
    """A client asked for something its key's policy does not allow."""


@dataclass(frozen=True)
class Access:
    """Who a session is: the key's name (never the key itself) and its policy."""

    key: str | None = None  # None: the server has no keys
    policy_name: str | None = None
    policy: KeyPolicy | None = None


OPEN = Access()


@dataclass(frozen=True)
class _Entry:
    secret: bytes
    access: Access


class KeyTable:
    """The server's keys, each with who it is; matched in constant time."""

    def __init__(self, entries: Sequence[tuple[str, Access]], anonymous: Access = OPEN) -> None:
        self._entries = tuple(_Entry(s.encode(), a) for s, a in entries)
        self.secrets = tuple(s for s, _ in entries)
        self.anonymous = anonymous

    @classmethod
    def from_config(
        cls,
        api_keys: Sequence[str],
        keys: Mapping[str, KeyConfig],
        policies: Mapping[str, KeyPolicy],
        environ: Mapping[str, str] | None = None,
    ) -> KeyTable:
        env = os.environ if environ is None else environ
        default = policies.get(DEFAULT_POLICY)

        def access(key_name: str, policy_name: str | None) -> Access:
            if policy_name is None and default is not None:
                policy_name = DEFAULT_POLICY
            policy = policies.get(policy_name) if policy_name is not None else None
            return Access(key_name, policy_name, policy)

        entries = [(k, access(f"api_keys[{i}]", None)) for i, k in enumerate(api_keys)]
        for name, k in keys.items():
            secret = k.key
            if k.key_env is not None:
                secret = env.get(k.key_env, "").strip()
                if not secret:
                    raise GovernanceError(f"keys.{name}: environment variable {k.key_env} is unset")
            assert secret is not None
            entries.append((secret, access(name, k.policy)))
        anonymous = Access(None, DEFAULT_POLICY, default) if default is not None else OPEN
        return cls(entries, anonymous)

    def match(self, offered: Sequence[str]) -> Access | None:
        """The access of the first configured key among ``offered``; every offered key is
        compared with every configured one, with no early exit. None: no match."""
        if not self._entries:
            return self.anonymous
        found: Access | None = None
        for candidate in offered:
            c = candidate.encode()
            for entry in self._entries:
                if hmac.compare_digest(c, entry.secret) and found is None:
                    found = entry.access
        return found


@dataclass(frozen=True)
class Governed:
    """A turn's bounds once its key's policy is applied."""

    params: CascadeParams
    first_tier: int
    max_tier: int
    decision: DecisionRecord | None  # the traced refusal, when the policy narrowed the tiers


class Governor:
    """One session's enforcement of its key's policy."""

    def __init__(self, access: Access, tier_names: Sequence[str]) -> None:
        self.access = access
        self.tier_names = tuple(tier_names)
        last = len(self.tier_names) - 1
        policy = access.policy
        lo, hi = 0, last
        if policy is not None and policy.tiers:
            idx = [self.tier_names.index(t) for t in policy.tiers if t in self.tier_names]
            if idx:
                lo, hi = min(idx), max(idx)
        self.lo, self.hi = lo, hi

    @property
    def name(self) -> str:
        return self.access.policy_name or DEFAULT_POLICY

    def _tiers(self, lo: int, hi: int) -> str:
        names = self.tier_names
        return names[lo] if lo == hi else f"{names[lo]}..{names[hi]}"

    def check(self, o: wire.CascadeOverrides, first: int, top: int | None, where: str) -> None:
        """Refuse tiers the client asked for explicitly that the policy does not allow."""
        if self.access.policy is None:
            return
        allowed = self._tiers(self.lo, self.hi)
        if o.first_tier is not None and not self.lo <= first <= self.hi:
            raise PolicyRefused(
                "invalid_value",
                f"tier {self.tier_names[first]!r} is not allowed for this API key "
                f"(policy {self.name!r}: {allowed})",
                param=f"{where}.first_tier",
            )
        if o.max_tier is not None and top is not None and not self.lo <= top <= self.hi:
            raise PolicyRefused(
                "invalid_value",
                f"tier {self.tier_names[top]!r} is not allowed for this API key "
                f"(policy {self.name!r}: {allowed})",
                param=f"{where}.max_tier",
            )

    def govern(
        self, params: CascadeParams, first: int, top: int | None, escalations: int
    ) -> Governed:
        """The bounds a turn runs with: ``first``/``top`` as the client's overrides made them,
        ``escalations`` the session's escalated responses so far."""
        last = len(self.tier_names) - 1
        wanted_top = last if top is None else top
        policy = self.access.policy
        if policy is None:
            return Governed(params, first, wanted_top, None)
        first = min(max(first, self.lo), self.hi)
        new_top = max(first, min(wanted_top, self.hi))
        reason: str | None = None
        if new_top < wanted_top:
            reason = (
                f"policy {self.name!r} allows this key {self._tiers(self.lo, self.hi)}: "
                f"no escalation to {self.tier_names[new_top + 1]}"
            )
        cap = policy.max_escalations_per_session
        if cap is not None and escalations >= cap and new_top > first:
            new_top = first
            reason = (
                f"policy {self.name!r} allows {cap} escalated response"
                f"{'' if cap == 1 else 's'} per session and {escalations} used: "
                f"this turn stays on {self.tier_names[first]}"
            )
        budgets = params.budgets
        changes: dict[str, float] = {}
        if policy.turn_cap_usd is not None and policy.turn_cap_usd < budgets.turn_cap_usd:
            changes["turn_cap_usd"] = policy.turn_cap_usd
        if policy.session_cap_usd is not None and policy.session_cap_usd < budgets.session_cap_usd:
            changes["session_cap_usd"] = policy.session_cap_usd
        if changes:
            params = msgspec.structs.replace(
                params, budgets=msgspec.structs.replace(budgets, **changes)
            )
        decision = None
        if reason is not None:
            decision = DecisionRecord(
                t_ms=0.0,
                kind="refuse",
                tier=first,
                tier_name=self.tier_names[first],
                cause="policy",
                reason=reason,
                to_tier=new_top + 1,
            )
        return Governed(params, first, new_top, decision)


def effective_policy(policy: KeyPolicy | None, params: CascadeParams) -> dict[str, object]:
    """What a policy leaves of a profile: the tiers, caps and escalations a key gets."""
    names = [t.name for t in params.tiers]
    lo, hi = 0, len(names) - 1
    if policy is not None and policy.tiers:
        idx = [names.index(t) for t in policy.tiers if t in names]
        if idx:
            lo, hi = min(idx), max(idx)
    budgets = params.budgets
    turn_cap = budgets.turn_cap_usd
    session_cap = budgets.session_cap_usd
    escalations: int | None = None
    if policy is not None:
        if policy.turn_cap_usd is not None:
            turn_cap = min(turn_cap, policy.turn_cap_usd)
        if policy.session_cap_usd is not None:
            session_cap = min(session_cap, policy.session_cap_usd)
        escalations = policy.max_escalations_per_session
    return {
        "tiers": names[lo : hi + 1],
        "turn_cap_usd": turn_cap,
        "session_cap_usd": session_cap,
        "max_escalations_per_session": escalations,
    }
