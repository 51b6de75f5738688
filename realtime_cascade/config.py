"""Configuration: TOML decoded with msgspec into typed structs, with errors that name the field.

A config holds named cascade *profiles* (the ``model`` a client asks for) and server settings.
``default.toml`` beside this module is the embedded default: two simulated tiers, so everything
runs offline. A real endpoint is one table away::

    [[profiles.default.tiers]]
    name = "strong"
    provider = { kind = "openai", base_url = "https://api.openai.com/v1", model = "gpt-4o" }
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

from .audio.config import AudioConfig, Speech, build_speech
from .core import (
    BudgetParams,
    CascadeParams,
    ComplexityParams,
    GateParams,
    MonitorParams,
    PolicyParams,
    TierSpec,
)
from .models.manifest import UnknownModel
from .models.provider import LocalProvider, LocalProviderConfig
from .observe.config import AuditConfig, KeyConfig, KeyPolicy, MetricsConfig, TelemetryConfig
from .observe.config import check as check_ops
from .providers.base import Provider
from .providers.health import BreakerParams
from .providers.openai import MissingAPIKey, OpenAIProvider, OpenAIProviderConfig
from .providers.sim import SimProfile, SimProvider
from .runtime import AgentSpec, CascadeProfile


class ConfigError(Exception):
    """The config cannot be used; the message says where and why."""


class SimProviderConfig(
    SimProfile, frozen=True, forbid_unknown_fields=True, tag="sim", tag_field="kind"
):
    """A simulated tier (``kind = "sim"``); fields as in :class:`SimProfile`."""


class _OpenAI(
    OpenAIProviderConfig, frozen=True, forbid_unknown_fields=True, tag="openai", tag_field="kind"
):
    pass


class _Local(
    LocalProviderConfig, frozen=True, forbid_unknown_fields=True, tag="local", tag_field="kind"
):
    pass


ProviderConfig = SimProviderConfig | _OpenAI | _Local


class TierConfig(TierSpec, frozen=True, forbid_unknown_fields=True):
    provider: ProviderConfig = SimProviderConfig()


class ProfileConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tiers: tuple[TierConfig, ...]
    monitor: MonitorParams = MonitorParams()
    complexity: ComplexityParams = ComplexityParams()
    policy: PolicyParams = PolicyParams()
    gate: GateParams = GateParams()
    budgets: BudgetParams = BudgetParams()
    health: BreakerParams = BreakerParams()  # the circuit breaker of each tier's provider
    script: str | None = None  # a sim script for every sim tier of this profile ("module:attr")
    verifiers: tuple[str, ...] = ()  # correctness verifiers ("module:attr"), run at tier finish
    audio: AudioConfig | None = None  # speech-to-text and text-to-speech; None: the [audio] table
    # the agent this profile binds ("module:attr", a realtime_cascade.Agent): its instructions
    # and server-side tools, verifiers and hooks, bound afresh to each session
    agent: str | None = None

    def params(self) -> CascadeParams:
        specs = tuple(
            TierSpec(**{f: getattr(t, f) for f in TierSpec.__struct_fields__}) for t in self.tiers
        )
        return CascadeParams(
            tiers=specs,
            monitor=self.monitor,
            complexity=self.complexity,
            policy=self.policy,
            gate=self.gate,
            budgets=self.budgets,
        )


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8765
    api_keys: tuple[str, ...] = ()  # bearer keys; none = open (warned on non-loopback hosts)
    allow_unauthenticated: bool = False  # must be set to serve open on a non-loopback host
    allowed_origins: tuple[str, ...] = ()  # browser Origins allowed; empty = same host only
    # Host headers accepted ("*": any); empty = on a server without keys, loopback names only
    # (a DNS-rebinding page reaches a loopback server under its own name), else any.
    allowed_hosts: tuple[str, ...] = ()
    max_frame_bytes: int = 1 << 20
    max_sessions: int = 1000
    max_events_per_second: float = 200.0  # per session; WebSocket pings and pongs count too
    # Per client identity (its API key; its address on a server without keys); 0: no limit.
    max_sessions_per_key: int = 100
    max_events_per_second_per_key: float = 0.0
    send_queue_size: int = 1024  # events queued for a client; over it (or the bytes): 1013
    send_queue_bytes: int = 16 << 20
    idle_timeout_s: float = 600.0  # no frame from the client and no response running; 0: never
    # A session's conversation (error ``conversation_limit`` / ``item_too_large``).
    max_items: int = 2000
    max_item_bytes: int = 1 << 20
    max_conversation_bytes: int = 8 << 20
    # Seconds after a session ends before freed heap is returned to the system (glibc
    # malloc_trim; see server/heap.py); 0: never.
    heap_trim_delay_s: float = 1.0
    static_dir: str | None = None  # defaults to demos/web when present


class StateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[state]``: where per-key limits, budgets, breakers and router statistics live.

    No ``redis_url``: in this process's memory (one ``serve`` process, as before). With one,
    every worker and every machine that names the same Redis shares them (server/state.py).
    """

    redis_url: str = ""  # e.g. "redis://127.0.0.1:6379/0"; REALTIME_CASCADE_REDIS_URL overrides
    on_error: Literal["open", "closed"] = "open"  # Redis down: let clients in, or refuse them
    prefix: str = "rc"  # every Redis key starts with "PREFIX:"
    timeout_s: float = 0.25  # one Redis call; past it, the call counts as Redis being down
    sync_interval_s: float = 1.0  # breakers and router statistics are exchanged this often
    session_lease_s: float = 30.0  # a crashed worker's sessions stop counting after this
    key_budget_usd: float = 0.0  # spend per identity (all its sessions, everywhere); 0: none
    key_budget_window_s: float = 86400.0  # the key budget resets this long after its first spend


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    profiles: dict[str, ProfileConfig]
    server: ServerConfig = ServerConfig()
    state: StateConfig = StateConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    audio: AudioConfig = AudioConfig()  # every profile's speech engines, unless it has its own
    audit: AuditConfig = AuditConfig()  # one JSON line per turn (realtime_cascade.audit)
    metrics: MetricsConfig = MetricsConfig()  # GET /metrics
    telemetry: TelemetryConfig = TelemetryConfig()  # OpenTelemetry spans
    keys: dict[str, KeyConfig] = {}  # named API keys, each with a policy
    policies: dict[str, KeyPolicy] = {}  # what a key may do (realtime_cascade.governance)


def _check(config: Config, source: str) -> Config:
    if not config.profiles:
        raise ConfigError(f"{source}: no profiles defined")
    for name, profile in config.profiles.items():
        if not profile.tiers:
            raise ConfigError(f"{source}: profile {name!r} has no tiers")
        seen: set[str] = set()
        for i, tier in enumerate(profile.tiers):
            where = f"{source}: profiles.{name}.tiers[{i}]"
            if tier.name in seen:
                raise ConfigError(f"{where}: duplicate tier name {tier.name!r}")
            seen.add(tier.name)
            if tier.price_in < 0 or tier.price_out < 0:
                raise ConfigError(f"{where}: prices must not be negative")
            if not 0.0 <= tier.quality <= 1.0:
                raise ConfigError(f"{where}: quality must be in [0, 1]")
        policy = profile.policy
        if not 0.0 <= policy.preempt_below <= policy.hedge_below <= 1.0:
            raise ConfigError(
                f"{source}: profiles.{name}.policy: need 0 <= preempt_below <= hedge_below <= 1"
            )
        if not 0.0 < profile.monitor.quantile < 1.0 or profile.monitor.window < 1:
            raise ConfigError(f"{source}: profiles.{name}.monitor: bad window or quantile")
    problems = check_ops(
        audit=config.audit,
        keys=config.keys,
        policies=config.policies,
        profile_tiers={n: [t.name for t in p.tiers] for n, p in config.profiles.items()},
        api_keys=config.server.api_keys,
    )
    if problems:
        raise ConfigError(f"{source}: {'; '.join(problems)}")
    return config


def loads(text: str | bytes, source: str = "<config>") -> Config:
    try:
        config = msgspec.toml.decode(text, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return _check(config, source)


# Configs that ship inside the package, by name: ``--config booking`` works from an installed
# wheel, where no ``demos/`` folder sits in the current directory.
PACKAGED = {
    "booking": ("realtime_cascade.demos.booking", "config.toml"),
    "booking-local": ("realtime_cascade.demos.booking", "local.toml"),  # real local tiers
}


def load(path: str | Path | None = None) -> Config:
    """Load ``path``, or a packaged config by name (``PACKAGED``), or the embedded default
    when None (``default.toml`` and the ``local`` profile of ``models/local.toml``). A file of
    that name wins over a packaged config."""
    if path is None:
        root = resources.files("realtime_cascade")
        text = root.joinpath("default.toml").read_bytes()
        # The `local` profile (real models on llama-server) lives with the models; its tiers
        # start nothing until a turn uses them, so the default stays fully offline and light.
        local = root.joinpath("models", "local.toml").read_bytes()
        return loads(text + b"\n" + local, "default.toml + models/local.toml")
    p = Path(path)
    if isinstance(path, str) and path in PACKAGED and not p.exists():
        owner, name = PACKAGED[path]
        return loads(resources.files(owner).joinpath(name).read_bytes(), f"{path} ({name})")
    try:
        data = p.read_bytes()
    except OSError as exc:
        hint = ""
        if isinstance(path, str) and not p.suffix:
            hint = f" (packaged configs: {', '.join(sorted(PACKAGED))})"
        raise ConfigError(f"{p}: cannot read: {exc.strerror}{hint}") from None
    return loads(data, str(p))


def load_script(ref: str) -> object:
    """Import an object (a sim script, a verifier, an agent) given as
    ``package.module:attribute``."""
    import importlib

    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ConfigError(f"{ref!r}: expected 'package.module:attribute'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{ref!r}: {exc}") from None


def build_providers(profile: ProfileConfig) -> list[Provider]:
    script = load_script(profile.script) if profile.script else None
    providers: list[Provider] = []
    for tier in profile.tiers:
        match tier.provider:
            case SimProviderConfig() as sim:
                fields = {f: getattr(sim, f) for f in SimProfile.__struct_fields__}
                providers.append(SimProvider(tier.name, SimProfile(**fields), script))  # type: ignore[arg-type]
            case _OpenAI() as oa:
                fields = {f: getattr(oa, f) for f in OpenAIProviderConfig.__struct_fields__}
                try:
                    providers.append(OpenAIProvider(tier.name, OpenAIProviderConfig(**fields)))
                except MissingAPIKey as exc:  # its message names the tier already
                    raise ConfigError(str(exc)) from None
            case _Local() as local:
                fields = {f: getattr(local, f) for f in LocalProviderConfig.__struct_fields__}
                try:
                    providers.append(LocalProvider(tier.name, LocalProviderConfig(**fields)))
                except UnknownModel as exc:
                    raise ConfigError(f"tier {tier.name!r}: {exc.args[0]}") from None
    return providers


def build_profile(config: Config, name: str = "default") -> CascadeProfile:
    """A ready cascade for the profile ``name`` (the ``model`` a client asks for)."""
    try:
        profile = config.profiles[name]
    except KeyError:
        known = ", ".join(sorted(config.profiles))
        raise ConfigError(f"unknown profile {name!r} (known: {known})") from None
    verifiers = [load_script(ref) for ref in profile.verifiers]
    for ref, v in zip(profile.verifiers, verifiers, strict=True):
        if not callable(v):
            raise ConfigError(f"verifier {ref!r} is not callable")
    audio = profile.audio or config.audio
    speech: Speech | None = None  # the embedded engines, shared by every profile that uses them
    if audio != AudioConfig():
        try:
            speech = build_speech(audio)
        except MissingAPIKey as exc:
            raise ConfigError(f"profile {name!r}: audio: {exc}") from None
    return CascadeProfile(
        name,
        profile.params(),
        build_providers(profile),
        verifiers=verifiers,  # type: ignore[arg-type]
        health=profile.health,
        speech=speech,
        agent=load_agent(profile.agent) if profile.agent else None,
    )


def load_agent(ref: str) -> AgentSpec:
    """The agent named ``package.module:attribute`` (a ``realtime_cascade.Agent``)."""
    agent = load_script(ref)
    if not isinstance(agent, AgentSpec):
        raise ConfigError(
            f"agent {ref!r} is a {type(agent).__name__}, not an agent "
            "(make one with realtime_cascade.Agent(instructions=..., tools=[...]))"
        )
    return agent


def with_agent(config: Config, ref: str, profiles: tuple[str, ...] = ()) -> Config:
    """``config`` with ``agent = ref`` on ``profiles`` (all of them when empty); checked now,
    so a bad reference fails before anything is served."""
    load_agent(ref)
    names = profiles or tuple(config.profiles)
    for name in names:
        if name not in config.profiles:
            known = ", ".join(sorted(config.profiles))
            raise ConfigError(f"unknown profile {name!r} (known: {known})")
    changed = {
        n: msgspec.structs.replace(p, agent=ref) if n in names else p
        for n, p in config.profiles.items()
    }
    return msgspec.structs.replace(config, profiles=changed)
