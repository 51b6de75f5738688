"""Operations config: the audit log, metrics, OpenTelemetry, API keys and their policies.

Plain structs with no heavy imports, so :mod:`realtime_cascade.config` can decode them without
pulling in prometheus-client or OpenTelemetry. Each table is optional::

    [audit]                      # one JSON line per turn (realtime_cascade.audit)
    path = "audit.jsonl"         # "-": stdout; serve --audit overrides; else REALTIME_CASCADE_AUDIT
    max_bytes = 67108864         # rotate past this size (0: never)
    backups = 5                  # audit.jsonl.1 … .5 are kept
    user_text = "keep"           # "keep" | "redact" | "hash": the user's request
    assistant_text = "keep"      # the same for what the assistant said (text, tool arguments)

    [metrics]                    # Prometheus text at GET /metrics (realtime_cascade.metrics)
    enabled = true
    require_key = false          # true: /metrics needs a bearer key like the WebSocket

    [telemetry]                  # OpenTelemetry spans (pip install 'realtime-cascade[otel]')
    exporter = "none"            # "none" | "console" | "otlp" | "global"
    endpoint = "http://localhost:4318/v1/traces"
    service_name = "realtime-cascade"

    [keys.acme]                  # a named API key; its name (never the key) is logged
    key_env = "ACME_KEY"         # or key = "…"
    policy = "basic"

    [policies.basic]             # what a key may do ("default": keys without a policy)
    tiers = ["light"]            # the tiers it may use, a contiguous run of each profile's tiers
    turn_cap_usd = 0.01          # upper bounds on the profile's (and the client's) budgets
    session_cap_usd = 0.20
    max_escalations_per_session = 3
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

AUDIT_ENV = "REALTIME_CASCADE_AUDIT"

TextMode = Literal["keep", "redact", "hash"]


class AuditConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str | None = None  # None: off; "-": stdout
    max_bytes: int = 64 << 20
    backups: int = 5
    queue_size: int = 10_000  # records waiting for the writer thread; past that they are dropped
    user_text: TextMode = "keep"
    assistant_text: TextMode = "keep"
    redact_patterns: tuple[str, ...] = ()  # extra regular expressions to scrub from every string


class MetricsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    require_key: bool = False


class TelemetryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    exporter: Literal["none", "console", "otlp", "global"] = "none"
    endpoint: str | None = None  # OTLP/HTTP traces endpoint; None: the exporter's default
    service_name: str = "realtime-cascade"


class KeyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str | None = None
    key_env: str | None = None
    policy: str | None = None  # None: the "default" policy when there is one


class KeyPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tiers: tuple[str, ...] | None = None  # None: every tier of the profile
    turn_cap_usd: float | None = None
    session_cap_usd: float | None = None
    max_escalations_per_session: int | None = None


DEFAULT_POLICY = "default"


def audit_with_env(audit: AuditConfig, environ: Mapping[str, str] | None = None) -> AuditConfig:
    """``REALTIME_CASCADE_AUDIT=PATH`` (or ``-``) turns the audit log on where the config (or
    ``serve --audit``) does not: any server in the process, the demo's included."""
    env = os.environ if environ is None else environ
    path = env.get(AUDIT_ENV)
    if path and audit.path is None:
        return msgspec.structs.replace(audit, path=path)
    return audit


def check(
    *,
    audit: AuditConfig,
    keys: Mapping[str, KeyConfig],
    policies: Mapping[str, KeyPolicy],
    profile_tiers: Mapping[str, Sequence[str]],
    api_keys: Sequence[str],
) -> list[str]:
    """What is wrong with these tables, each as ``where: what``; empty when all is well."""
    errors: list[str] = []
    if audit.max_bytes < 0:
        errors.append("audit.max_bytes: must not be negative")
    if audit.backups < 0:
        errors.append("audit.backups: must not be negative")
    if audit.queue_size < 1:
        errors.append("audit.queue_size: must be at least 1")
    for i, pattern in enumerate(audit.redact_patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            errors.append(f"audit.redact_patterns[{i}]: not a regular expression: {exc}")
    for name, k in keys.items():
        where = f"keys.{name}"
        if (k.key is None) == (k.key_env is None):
            errors.append(f"{where}: set exactly one of key or key_env")
        elif k.key is not None and not k.key.strip():
            errors.append(f"{where}.key: must not be empty")
        if k.key is not None and k.key in api_keys:
            errors.append(f"{where}.key: also listed in server.api_keys; list it once")
        if k.policy is not None and k.policy not in policies:
            known = ", ".join(sorted(policies)) or "none defined"
            errors.append(f"{where}.policy: unknown policy {k.policy!r} (policies: {known})")
    literal = [k.key for k in keys.values() if k.key is not None]
    if len(set(literal)) != len(literal):
        errors.append("keys: the same key is listed twice")
    for name, p in policies.items():
        where = f"policies.{name}"
        for field in ("turn_cap_usd", "session_cap_usd", "max_escalations_per_session"):
            value = getattr(p, field)
            if value is not None and value < 0:
                errors.append(f"{where}.{field}: must not be negative")
        if p.tiers is not None:
            if not p.tiers:
                errors.append(f"{where}.tiers: must name at least one tier")
                continue
            for profile, tiers in profile_tiers.items():
                problem = tier_range_problem(p.tiers, tiers)
                if problem is not None:
                    errors.append(f"{where}.tiers: {problem} in profile {profile!r}")
    return errors


def tier_range_problem(allowed: Sequence[str], tiers: Sequence[str]) -> str | None:
    """Why ``allowed`` is not a contiguous run of ``tiers`` (the core bounds a turn by a first
    and a last tier), or None."""
    unknown = [t for t in allowed if t not in tiers]
    if unknown:
        return f"unknown tier {unknown[0]!r} (tiers: {', '.join(tiers)})"
    idx = sorted({tiers.index(t) for t in allowed})
    if idx != list(range(idx[0], idx[-1] + 1)):
        return f"{', '.join(allowed)} is not a contiguous run of {', '.join(tiers)}"
    return None
