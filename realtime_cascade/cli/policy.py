"""``realtime-cascade policy check CONFIG [--json]``: validate a config, print the effective
policy of every profile and what each API key's policy leaves of it.

Exit status 0 when the config is usable (warnings, such as an API key's environment variable
unset on this machine, go to stderr), 2 when it is not: the config does not decode or check,
a script or verifier does not import, or a server with this config would refuse to start.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import msgspec

from .. import config as config_mod
from ..observe.config import DEFAULT_POLICY
from ..observe.governance import effective_policy
from ..server.app import is_loopback


def add_policy_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = subparsers.add_parser("policy", help="validate configs and show effective policies")
    sub = policy.add_subparsers(dest="policy_command", required=True)
    c = sub.add_parser(
        "check",
        help="validate a config; print the effective policy per profile and per key policy",
    )
    c.add_argument("config", metavar="CONFIG", help="TOML config")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=run_policy)


def inspect(cfg: config_mod.Config, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything ``policy check`` reports, as JSON-ready builtins (``errors`` and ``warnings``
    included)."""
    env = dict(os.environ) if environ is None else environ
    errors: list[str] = []
    warnings: list[str] = []
    server = cfg.server
    keys_by_policy: dict[str | None, list[str]] = {}
    for i, _ in enumerate(server.api_keys):
        keys_by_policy.setdefault(None, []).append(f"api_keys[{i}]")
    for name, k in cfg.keys.items():
        keys_by_policy.setdefault(k.policy, []).append(name)
        if k.key_env is not None and not env.get(k.key_env, "").strip():
            warnings.append(f"keys.{name}: environment variable {k.key_env} is not set here")
    has_keys = bool(server.api_keys or cfg.keys)
    if not has_keys and not is_loopback(server.host) and not server.allow_unauthenticated:
        errors.append(
            f"server.host {server.host!r} is not loopback and no API keys are set: serve would "
            "refuse to start (set server.api_keys or [keys], or allow_unauthenticated = true)"
        )
    if DEFAULT_POLICY in cfg.policies:
        # keys without a policy, and clients of an open server, get the default one
        keys_by_policy.setdefault(DEFAULT_POLICY, []).extend(keys_by_policy.pop(None, []))
        if not has_keys:
            keys_by_policy[DEFAULT_POLICY].append("(anyone: no keys)")
    elif not has_keys:
        keys_by_policy.setdefault(None, []).append("(anyone: no keys)")

    profiles: dict[str, Any] = {}
    for name, profile in cfg.profiles.items():
        for ref in (profile.script, *profile.verifiers):
            if ref is None:
                continue
            try:
                obj = config_mod.load_script(ref)
            except config_mod.ConfigError as exc:
                errors.append(f"profiles.{name}: {exc}")
                continue
            if ref in profile.verifiers and not callable(obj):
                errors.append(f"profiles.{name}: verifier {ref!r} is not callable")
        for tier in profile.tiers:
            var = getattr(tier.provider, "api_key_env", "")
            if var and not env.get(var, "").strip():
                warnings.append(
                    f"profiles.{name}.tiers.{tier.name}: environment variable {var} is not set here"
                )
        params = profile.params()
        access: dict[str, Any] = {}
        for policy_name, key_names in keys_by_policy.items():
            policy = cfg.policies.get(policy_name) if policy_name is not None else None
            label = policy_name if policy_name is not None else "(no policy)"
            access[label] = {**effective_policy(policy, params), "keys": key_names}
        for policy_name, policy in cfg.policies.items():
            if policy_name not in keys_by_policy:
                access[policy_name] = {**effective_policy(policy, params), "keys": []}
        profiles[name] = {
            "tiers": [
                {
                    "name": t.name,
                    "price_in": t.price_in,
                    "price_out": t.price_out,
                    "quality": t.quality,
                    "expected_ttft_ms": t.expected_ttft_ms,
                    "ttft_timeout_ms": t.ttft_timeout_ms,
                    "stall_timeout_ms": t.stall_timeout_ms,
                    "provider": _provider(t.provider),
                }
                for t in profile.tiers
            ],
            "policy": msgspec.to_builtins(profile.policy),
            "complexity": {"skip_above": profile.complexity.skip_above},
            "gate": msgspec.to_builtins(profile.gate),
            "budgets": msgspec.to_builtins(profile.budgets),
            "verifiers": list(profile.verifiers),
            "access": access,
        }
    return {
        "errors": errors,
        "warnings": warnings,
        "server": {
            "host": server.host,
            "port": server.port,
            "keys": len(server.api_keys) + len(cfg.keys),
            "open": not has_keys,
        },
        "audit": msgspec.to_builtins(cfg.audit),
        "metrics": msgspec.to_builtins(cfg.metrics),
        "telemetry": msgspec.to_builtins(cfg.telemetry),
        "profiles": profiles,
    }


def _provider(p: object) -> str:
    kind = type(p).__name__
    model = getattr(p, "model", None)
    if model is not None:
        return f"openai {model} at {getattr(p, 'base_url', '?')}"
    skill = getattr(p, "skill", None)
    return f"sim (skill {skill})" if skill is not None else kind


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def _money(v: float) -> str:
    return f"${v:.2f}" if v >= 0.1 else f"${v:.4f}"


def render(path: str, report: dict[str, Any]) -> str:
    lines = [f"{path}: {'valid' if not report['errors'] else 'INVALID'}"]
    s = report["server"]
    auth = "open (no keys)" if s["open"] else f"{s['keys']} API key(s)"
    lines.append(f"server: {s['host']}:{s['port']}, {auth}")
    a = report["audit"]
    if a["path"]:
        rot = "no rotation"
        if a["max_bytes"]:
            rot = f"rotate at {_size(a['max_bytes'])}, keep {a['backups']}"
        lines.append(
            f"audit: {a['path']} ({rot}; user text {a['user_text']}, assistant text "
            f"{a['assistant_text']})"
        )
    else:
        lines.append("audit: off (serve --audit PATH or REALTIME_CASCADE_AUDIT turn it on)")
    m = report["metrics"]
    metrics = "off"
    if m["enabled"]:
        metrics = "GET /metrics" + (" (needs a key)" if m["require_key"] else "")
    lines.append(f"metrics: {metrics}")
    t = report["telemetry"]
    lines.append(
        "telemetry: off" if t["exporter"] == "none" else f"telemetry: {t['exporter']} spans"
    )
    for name, p in report["profiles"].items():
        lines += ["", f"profile {name}"]
        head = ["tier", "$/1M in", "$/1M out", "quality", "ttft ms", "timeout", "stall", "provider"]
        rows = [
            [
                t["name"],
                f"{t['price_in']:g}",
                f"{t['price_out']:g}",
                f"{t['quality']:g}",
                f"{t['expected_ttft_ms']:g}",
                f"{t['ttft_timeout_ms']:g}",
                f"{t['stall_timeout_ms']:g}",
                t["provider"],
            ]
            for t in p["tiers"]
        ]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        for r in [head, *rows]:
            cells = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
            lines.append(("  " + cells).rstrip())
        pol, b = p["policy"], p["budgets"]
        hedging = (
            f"hedging on, window {pol['hedge_window_ms']:g} ms" if pol["hedging"] else "hedging off"
        )
        lines += [
            f"  escalate: preempt below P(correct) {pol['preempt_below']:g}, hold and hedge "
            f"below {pol['hedge_below']:g} ({hedging}); weights quality {pol['w_quality']:g} : "
            f"cost {pol['w_cost']:g} : latency {pol['w_latency']:g}",
            f"  route: start above the first tier at complexity >= "
            f"{p['complexity']['skip_above']:g}, or when the router predicts P(preempt) >= "
            f"{pol['router_skip_above']:g} (after {pol['router_min_observations']} turns)",
            f"  budgets: first text {b['first_text_ms']:g} ms, end of turn "
            f"{b['end_of_turn_ms']:g} ms, {_money(b['turn_cap_usd'])} a turn, "
            f"{_money(b['session_cap_usd'])} a session",
        ]
        if p["verifiers"]:
            lines.append(f"  verifiers: {', '.join(p['verifiers'])}")
        lines.append("  access:")
        for label, e in p["access"].items():
            esc = e["max_escalations_per_session"]
            keys = ", ".join(e["keys"]) or "no keys"
            tiers = e["tiers"][0] if len(e["tiers"]) == 1 else f"{e['tiers'][0]}..{e['tiers'][-1]}"
            lines.append(
                f"    {label} [{keys}]: tiers {tiers}, {_money(e['turn_cap_usd'])} a turn, "
                f"{_money(e['session_cap_usd'])} a session, "
                + ("unlimited escalations" if esc is None else f"{esc} escalations a session")
            )
    return "\n".join(lines)


def run_policy(args: argparse.Namespace) -> int:
    try:
        cfg = config_mod.load(args.config)
    except config_mod.ConfigError as exc:
        sys.stderr.write(f"realtime-cascade policy: {exc}\n")
        return 2
    report = inspect(cfg)
    for w in report["warnings"]:
        sys.stderr.write(f"realtime-cascade policy: warning: {w}\n")
    for e in report["errors"]:
        sys.stderr.write(f"realtime-cascade policy: {args.config}: {e}\n")
    if args.json:
        sys.stdout.write(msgspec.json.encode({"config": args.config, **report}).decode() + "\n")
    else:
        sys.stdout.write(render(args.config, report) + "\n")
    return 2 if report["errors"] else 0
