"""A server's operations side, built from its config: keys and policies, the audit log,
metrics and telemetry, behind one :class:`~realtime_cascade.observe.observer.Observer`.

The server owns one :class:`Operations` from ``start()`` to the end of ``shutdown()``; it asks
it who a connecting key is (:meth:`Operations.access`), hands its ``observer`` to every session,
answers ``GET /metrics`` with :meth:`Operations.metrics_body`, and closes it last, after every
response is done, so the audit log is drained before the process exits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import config as config_mod
from ..observe.audit import AuditLog, upstream_secrets
from ..observe.config import audit_with_env
from ..observe.governance import Access, GovernanceError, KeyTable
from ..observe.observer import Observer, Observers


class Operations:
    def __init__(
        self,
        config: config_mod.Config,
        *,
        observers: Sequence[Observer] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        try:
            self.keys = KeyTable.from_config(
                config.server.api_keys, config.keys, config.policies, environ
            )
        except GovernanceError as exc:
            raise config_mod.ConfigError(str(exc)) from None
        chain: list[Observer] = []
        self.metrics = None
        if config.metrics.enabled:
            from ..observe.metrics import Metrics

            self.metrics = Metrics()
            chain.append(self.metrics)
        audit_config = audit_with_env(config.audit, environ)
        self.audit: AuditLog | None = None
        if audit_config.path:
            m = self.metrics
            self.audit = AuditLog(
                audit_config,
                secrets=upstream_secrets(config, dict(environ) if environ is not None else None),
                on_write=None if m is None else m.audit_records.inc,
                on_drop=None if m is None else m.audit_dropped.inc,
            )
            chain.append(self.audit)
        self.telemetry = None
        if config.telemetry.exporter != "none":
            from ..observe.telemetry import Telemetry, TelemetryUnavailable

            try:
                self.telemetry = Telemetry(config.telemetry)
            except TelemetryUnavailable as exc:
                raise config_mod.ConfigError(str(exc)) from None
            chain.append(self.telemetry)
        chain.extend(observers)
        self.observer = Observers(chain)

    def access(self, offered: Sequence[str]) -> Access | None:
        """Who the offered keys make a client (None: no key matched)."""
        return self.keys.match(offered)

    def metrics_body(self, offered: Sequence[str]) -> tuple[int, bytes, str]:
        """``GET /metrics``: status, body, content type."""
        if self.metrics is None:
            return 404, b"metrics are off ([metrics] enabled = false)\n", "text/plain"
        locked = self.config.metrics.require_key and self.keys.secrets
        if locked and self.keys.match(offered) is None:
            return 401, b"missing or invalid API key (Authorization: Bearer KEY)\n", "text/plain"
        from ..observe.metrics import CONTENT_TYPE_LATEST

        return 200, self.metrics.render(), CONTENT_TYPE_LATEST

    async def aclose(self) -> None:
        await self.observer.aclose()
