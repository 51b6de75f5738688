"""Shared state: what every worker and every machine must agree on, behind one small interface.

A server's per-key session counts and event rates, per-key and per-session spend, circuit
breakers and router statistics live in one process's memory unless ``[state] redis_url`` is
set. :class:`SharedState` is what the server asks; two implementations:

- :class:`LocalState`: this process's memory (:class:`~.admission.KeyLimits`, two dicts). No
  Redis configured: single-process behaviour, unchanged.
- :class:`RedisState`: one Redis that every ``serve`` worker on every host names. Each
  decision that must be exact across workers is one atomic Lua script, on Redis's clock:

  ========================  =====================================================================
  per-key event rate        a token bucket in a hash (tokens, last µs); it outlives sessions, so
                            reconnecting buys nothing; it expires once it would be full anyway
  per-key sessions          a sorted set of session ids scored by lease expiry: a crashed
                            worker's sessions stop counting after ``session_lease_s``; live
                            ones are renewed every ``sync_interval_s``
  per-key / session spend   INCRBYFLOAT counters; the key's resets ``key_budget_window_s``
                            after its first spend
  breakers                  an open breaker is published with its remaining cooldown as TTL;
                            a worker whose breaker is closed opens it for what is left
  router                    each worker publishes its weights and observation count; each
                            sets its router to the observation-weighted mean (federated
                            averaging), so the estimate learns from every worker's turns
  ========================  =====================================================================

Redis down or slow (past ``timeout_s``): every admission call answers ``on_error`` ("open":
allowed, "closed": refused), logs a warning (at most once a second), and counts in
:attr:`SharedState.errors` (``/healthz`` shows it). Nothing raises into a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import msgspec

from .. import config as config_mod
from ..observe.observer import SessionInfo, TurnInfo
from ..runtime import CascadeProfile
from .admission import KeyLimits

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

REDIS_URL_ENV = "REALTIME_CASCADE_REDIS_URL"
_T = TypeVar("_T")


class SharedState(Protocol):
    """What the server asks about limits and spend; what it shares of breakers and routers."""

    kind: str  # "memory" or "redis"
    errors: int  # calls that failed (Redis down or slow) and were answered with on_error

    async def can_open(self, identity: str) -> bool: ...

    async def open_session(self, identity: str, session_id: str) -> bool: ...

    async def close_session(self, identity: str, session_id: str) -> None: ...

    async def take_event(self, identity: str, now: float) -> bool: ...

    def record_cost(self, identity: str, session_id: str, usd: float) -> None: ...

    async def key_budget_left(self, identity: str) -> float | None: ...

    async def start(self, profiles: Mapping[str, CascadeProfile]) -> None: ...

    async def aclose(self) -> None: ...


class LocalState:
    """This process's memory: exactly the single-process behaviour."""

    kind = "memory"

    def __init__(self, server: config_mod.ServerConfig, state: config_mod.StateConfig) -> None:
        self.limits = KeyLimits(server.max_sessions_per_key, server.max_events_per_second_per_key)
        self.errors = 0
        self._budget = state.key_budget_usd
        self._window = state.key_budget_window_s
        self._spent: dict[str, tuple[float, float]] = {}  # identity -> (spent, window start)
        self.session_spent: dict[str, float] = {}

    async def can_open(self, identity: str) -> bool:
        return self.limits.can_open(identity)

    async def open_session(self, identity: str, session_id: str) -> bool:
        return self.limits.open(identity)

    async def close_session(self, identity: str, session_id: str) -> None:
        self.limits.close(identity)
        self.session_spent.pop(session_id, None)

    async def take_event(self, identity: str, now: float) -> bool:
        return self.limits.take(identity, now)

    def record_cost(self, identity: str, session_id: str, usd: float) -> None:
        if usd <= 0:
            return
        self.session_spent[session_id] = self.session_spent.get(session_id, 0.0) + usd
        if self._budget <= 0:
            return
        now = time.monotonic()
        spent, since = self._spent.get(identity, (0.0, now))
        if now - since >= self._window:
            spent, since = 0.0, now
        self._spent[identity] = (spent + usd, since)

    async def key_budget_left(self, identity: str) -> float | None:
        if self._budget <= 0:
            return None
        spent, since = self._spent.get(identity, (0.0, 0.0))
        if time.monotonic() - since >= self._window:
            spent = 0.0
        return self._budget - spent

    async def start(self, profiles: Mapping[str, CascadeProfile]) -> None:
        pass

    async def aclose(self) -> None:
        pass


# --- Redis ----------------------------------------------------------------------------------------

# Every script reads Redis's own clock, so workers on hosts with skewed clocks agree.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(b[1])
local last = tonumber(b[2])
if tokens == nil or last == nil then tokens = burst; last = now end
tokens = math.min(burst, tokens + math.max(0, now - last) * rate / 1000000)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'last', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok
"""

_OPEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""

_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], lease)
end
return 1
"""

_SPEND = """
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
"""


class _RouterShare(msgspec.Struct, frozen=True):
    weights: list[float]
    observations: int


class RedisState:
    """Shared by every worker that names the same Redis; see the module docstring."""

    kind = "redis"

    def __init__(
        self,
        server: config_mod.ServerConfig,
        state: config_mod.StateConfig,
        url: str,
        *,
        client: Redis | None = None,
    ) -> None:
        from redis.asyncio import Redis

        self.server = server
        self.config = state
        self.url = url
        self.errors = 0
        self._redis: Redis = (
            client
            if client is not None
            else Redis.from_url(
                url, socket_timeout=state.timeout_s, socket_connect_timeout=state.timeout_s
            )
        )
        self._p = state.prefix
        self._fail_open = state.on_error == "open"
        self._take = self._redis.register_script(_TAKE)
        self._open = self._redis.register_script(_OPEN)
        self._count = self._redis.register_script(_COUNT)
        self._renew = self._redis.register_script(_RENEW)
        self._spend = self._redis.register_script(_SPEND)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._mine: dict[str, str] = {}  # session id -> identity: the leases this worker renews
        self._pending: dict[tuple[str, str], float] = {}  # (identity, session) -> usd to add
        self._wake = asyncio.Event()
        self._profiles: Mapping[str, CascadeProfile] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._last_warning = 0.0
        self._encoder = msgspec.json.Encoder()
        self._router_decoder = msgspec.json.Decoder(_RouterShare)

    def _key(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            log.warning(
                "shared state (%s): %s failed: %s: %s; answering %s",
                self.url,
                what,
                type(exc).__name__,
                exc,
                "open" if self._fail_open else "closed",
            )

    async def _call(self, what: str, fn: Callable[[], Awaitable[_T]], default: _T) -> _T:
        """One Redis call, bounded by ``timeout_s``; any failure answers ``default``."""
        from redis.exceptions import RedisError

        try:
            with anyio.fail_after(self.config.timeout_s * 2):
                return await fn()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(what, exc)
            return default

    # -- admission

    async def can_open(self, identity: str) -> bool:
        cap = self.server.max_sessions_per_key
        if cap <= 0:
            return True
        key = self._key("sessions", identity)
        n = await self._call("can_open", lambda: self._count(keys=[key]), None)
        return self._fail_open if n is None else int(n) < cap

    async def open_session(self, identity: str, session_id: str) -> bool:
        key = self._key("sessions", identity)
        cap = self.server.max_sessions_per_key
        lease = int(self.config.session_lease_s * 1000)
        ok = await self._call(
            "open_session",
            lambda: self._open(keys=[key], args=[session_id, cap, lease]),
            None,
        )
        if ok is None:
            ok = self._fail_open
        if ok:
            self._mine[session_id] = identity
        return bool(ok)

    async def close_session(self, identity: str, session_id: str) -> None:
        if self._mine.pop(session_id, None) is None:
            return
        key = self._key("sessions", identity)
        await self._call("close_session", lambda: self._redis.zrem(key, session_id), 0)

    async def take_event(self, identity: str, now: float) -> bool:
        rate = self.server.max_events_per_second_per_key
        if rate <= 0:
            return True
        key = self._key("rate", identity)
        ok = await self._call(
            "take_event", lambda: self._take(keys=[key], args=[rate, max(1.0, rate)]), None
        )
        return self._fail_open if ok is None else bool(ok)

    # -- spend

    def record_cost(self, identity: str, session_id: str, usd: float) -> None:
        if usd <= 0:
            return
        k = (identity, session_id)
        self._pending[k] = self._pending.get(k, 0.0) + usd
        self._wake.set()

    async def key_budget_left(self, identity: str) -> float | None:
        budget = self.config.key_budget_usd
        if budget <= 0:
            return None
        key = self._key("spend", "key", identity)
        down = object()
        spent: object = await self._call("key_budget_left", lambda: self._redis.get(key), down)
        if spent is down:  # Redis is down: failing closed, no budget is known to be left
            return budget if self._fail_open else 0.0
        return budget - float(spent or 0.0)  # type: ignore[arg-type]

    async def key_spent(self, identity: str) -> float:
        raw = await self._redis.get(self._key("spend", "key", identity))
        return float(raw or 0.0)

    async def session_spent(self, session_id: str) -> float:
        raw = await self._redis.get(self._key("spend", "session", session_id))
        return float(raw or 0.0)

    async def _flush_spend(self) -> None:
        pending, self._pending = self._pending, {}
        window = int(self.config.key_budget_window_s * 1000)
        day = 86_400_000
        for (identity, session_id), usd in pending.items():
            k_key = self._key("spend", "key", identity)
            s_key = self._key("spend", "session", session_id)

            async def both(k_key: str = k_key, s_key: str = s_key, usd: float = usd) -> bool:
                await self._spend(keys=[k_key], args=[usd, window])
                await self._spend(keys=[s_key], args=[usd, day])
                return True

            done = await self._call("record_cost", both, False)
            if not done:  # keep it for the next flush rather than lose the spend
                self._pending[(identity, session_id)] = (
                    self._pending.get((identity, session_id), 0.0) + usd
                )

    # -- background: leases, spend, breakers, routers

    async def start(self, profiles: Mapping[str, CascadeProfile]) -> None:
        self._profiles = profiles
        loop = asyncio.get_running_loop()
        # redis.asyncio is asyncio's: its background tasks are asyncio tasks, ended in aclose.
        self._tasks = [loop.create_task(self._sync_loop()), loop.create_task(self._spend_loop())]

    async def _spend_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush_spend()
            if self._pending:  # Redis is down: retry at the sync pace, not in a busy loop
                await asyncio.sleep(self.config.sync_interval_s)
                self._wake.set()

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.sync_interval_s)
            try:
                await self.sync()
            except Exception as exc:  # a sync bug or an outage costs one round, never the server
                self._failed("sync", exc)

    async def sync(self) -> None:
        """One round: renew this worker's session leases, share breakers and routers."""
        await self._renew_leases()
        for name, profile in self._profiles.items():
            await self._sync_breakers(name, profile)
            await self._sync_router(name, profile)

    async def _renew_leases(self) -> None:
        if not self._mine:
            return
        keys: list[str] = []
        args: list[str | int] = [int(self.config.session_lease_s * 1000)]
        for session_id, identity in self._mine.items():
            keys.append(self._key("sessions", identity))
            args.append(session_id)
        await self._call("renew_leases", lambda: self._renew(keys=keys, args=args), None)

    async def _sync_breakers(self, name: str, profile: CascadeProfile) -> None:
        health = profile.health
        now = time.monotonic()
        keys = [self._key("breaker", name, tier) for tier in health.names]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, breaker in zip(keys, health.breakers, strict=True):
                left = breaker.retry_in(now)
                if breaker.state == "open" and left is not None and left > 0.001:
                    pipe.set(key, self.worker, px=max(1, int(left * 1000)))
            for key in keys:
                pipe.pttl(key)
            replies = await pipe.execute()
        ttls = replies[-len(keys) :]
        for breaker, ttl in zip(health.breakers, ttls, strict=True):
            if breaker.params.enabled and breaker.state == "closed" and int(ttl) > 0:
                # Another worker saw this tier fail: open ours for what is left of its cooldown.
                breaker.failed(now, retry_after=int(ttl) / 1000)

    async def _sync_router(self, name: str, profile: CascadeProfile) -> None:
        router = profile.router
        index = self._key("routers", name)
        mine = self._key("router", name, self.worker)
        ttl = max(1000, int(self.config.sync_interval_s * 10_000))
        share = _RouterShare(list(router.weights), router.observations)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(mine, self._encoder.encode(share), px=ttl)
            pipe.sadd(index, self.worker)
            pipe.pexpire(index, ttl)
            pipe.smembers(index)
            replies = await pipe.execute()
        workers = sorted(w.decode() if isinstance(w, bytes) else str(w) for w in replies[-1])
        raw: list[Any] = await self._redis.mget([self._key("router", name, w) for w in workers])
        shares: list[_RouterShare] = []
        gone: list[str] = []
        for worker, blob in zip(workers, raw, strict=True):
            if blob is None:
                gone.append(worker)
                continue
            try:
                s = self._router_decoder.decode(blob)
            except msgspec.DecodeError:
                continue
            if len(s.weights) == len(share.weights):
                shares.append(s)
        if gone:
            await self._redis.srem(index, *gone)
        total = sum(s.observations for s in shares)
        if total <= 0 or len(shares) < 2:
            return
        merged = [
            sum(s.weights[i] * s.observations for s in shares) / total
            for i in range(len(share.weights))
        ]
        # The core's router has no setter (core/ is pure and owned elsewhere): the weights
        # list is replaced in place, the observation count stays this worker's own.
        router._weights[:] = merged

    async def ping(self) -> bool:
        return bool(await self._call("ping", lambda: self._redis.ping(), False))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with anyio.move_on_after(1.0):
            await self._flush_spend()
        for session_id, identity in list(self._mine.items()):
            with anyio.move_on_after(self.config.timeout_s):
                await self.close_session(identity, session_id)
        await self._redis.aclose()


def build_state(config: config_mod.Config, environ: Mapping[str, str] | None = None) -> SharedState:
    """The config's shared state: Redis when a URL is set (config or environment), else memory."""
    env = os.environ if environ is None else environ
    url = env.get(REDIS_URL_ENV) or config.state.redis_url
    if not url:
        return LocalState(config.server, config.state)
    try:
        import redis  # noqa: F401
    except ImportError:
        raise config_mod.ConfigError(
            "[state] redis_url needs the redis package: pip install 'realtime-cascade[scale]'"
        ) from None
    return RedisState(config.server, config.state, url)


class SpendRecorder:
    """An observer that adds each finished turn's cost to its identity's and session's spend."""

    def __init__(self, state: SharedState, identity_of: Callable[[str], str | None]) -> None:
        self._state = state
        self._identity_of = identity_of

    def session_started(self, info: SessionInfo) -> None:
        pass

    def turn_finished(self, turn: TurnInfo) -> None:
        if turn.trace is None:
            return
        sid = turn.session.session_id
        identity = self._identity_of(sid)
        if identity is not None:
            self._state.record_cost(identity, sid, turn.trace.cost_usd)

    def session_ended(self, info: SessionInfo) -> None:
        pass

    async def aclose(self) -> None:
        pass
