"""Who a client is, and what each client may use: API-key matching and per-key limits.

A client's *identity* is the API key it authenticated with (as a fingerprint, never the key
itself: identities end up in logs and metrics), or, on a server with no keys configured, its
remote address. Per identity, :class:`KeyLimits` holds

- a session cap (``server.max_sessions_per_key``): a client over it gets HTTP 429 at the
  handshake, other clients are unaffected;
- an event rate (``server.max_events_per_second_per_key``): one token bucket shared by all of
  the identity's sessions, beside each session's own (``server.max_events_per_second``), so
  opening more sessions does not buy a client more throughput.

The state lives in a :class:`KeyStore` the server owns (:class:`KeyLimits`, in-process), and
outlives sessions: a client cannot reset its rate by reconnecting.

0 turns a limit off. Per-key policy (tiers, budgets) is governance's business, not this one's.

Keys are compared in constant time: each offered key is hashed and compared with the hash of
every configured key with :func:`hmac.compare_digest`, with no early exit, so neither the
position of a match nor a key's length is observable in the response time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol


def fingerprint(key: str) -> str:
    """A stable, non-reversible name for a key (12 hex digits of its SHA-256)."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def matched_key(offered: Iterable[str], keys: Sequence[str]) -> str | None:
    """The configured key that one of ``offered`` equals, compared in constant time."""
    digests = [hashlib.sha256(k.encode()).digest() for k in keys]
    found: str | None = None
    for candidate in offered:
        c = hashlib.sha256(candidate.encode()).digest()
        for key, digest in zip(keys, digests, strict=True):
            if hmac.compare_digest(c, digest) and found is None:
                found = key
    return found


def client_identity(
    offered: Iterable[str], keys: Sequence[str], remote: object | None
) -> str | None:
    """The identity per-key limits count against; None when keys are configured and none of
    ``offered`` matched (the client is not let in at all)."""
    if keys:
        key = matched_key(offered, keys)
        return None if key is None else fingerprint(key)
    host = remote[0] if isinstance(remote, tuple) and remote else remote
    return f"addr_{host}"


class TokenBucket:
    """An event rate limit: ``rate`` a second, bursts up to ``burst``."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        return self._tokens + (now - self._last) * self.rate >= self.burst


class KeyStore(Protocol):
    """Per-identity state the server's limits need: the one interface a shared store (one
    state for several worker processes) would implement."""

    def take(self, identity: str, now: float) -> bool:
        """One event of ``identity``'s: False when over its rate (the event is refused)."""
        ...

    def can_open(self, identity: str) -> bool: ...

    def open(self, identity: str) -> bool:
        """Count a new session; False (nothing counted) when ``identity`` is at its cap."""
        ...

    def close(self, identity: str) -> None: ...

    def sessions(self, identity: str) -> int: ...


class KeyLimits:
    """Sessions and event rate per identity, in this process (a :class:`KeyStore`).

    A bucket outlives its identity's sessions: the rate is per identity, not per
    connection, so reconnecting buys nothing. It is dropped once full again (a full bucket is
    what a new one would be), so the store holds the identities seen in the last
    ``burst / rate`` seconds and no more.
    """

    def __init__(self, max_sessions: int = 0, events_per_second: float = 0.0) -> None:
        self.max_sessions = max_sessions
        self.rate = events_per_second
        self.burst = max(1.0, events_per_second)
        self._sessions: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._swept = 0

    def sessions(self, identity: str) -> int:
        return self._sessions.get(identity, 0)

    def can_open(self, identity: str) -> bool:
        return self.max_sessions <= 0 or self.sessions(identity) < self.max_sessions

    def open(self, identity: str) -> bool:
        if not self.can_open(identity):
            return False
        self._sessions[identity] = self.sessions(identity) + 1
        return True

    def close(self, identity: str) -> None:
        left = self.sessions(identity) - 1
        if left > 0:
            self._sessions[identity] = left
        else:
            self._sessions.pop(identity, None)

    def take(self, identity: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        bucket = self._buckets.get(identity)
        if bucket is None:
            if len(self._buckets) >= 2 * self._swept + 1024:
                self._sweep(now)
            bucket = self._buckets[identity] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def _sweep(self, now: float) -> None:
        """Drop the buckets of identities without sessions whose bucket has refilled."""
        for identity, bucket in list(self._buckets.items()):
            if identity not in self._sessions and bucket.full(now):
                del self._buckets[identity]
        self._swept = len(self._buckets)

    @property
    def identities(self) -> int:
        return len(self._sessions)

    @property
    def buckets(self) -> int:
        return len(self._buckets)
