"""Observability and governance: what a running server tells its operators.

``observer`` is the one interface the session and server call; ``audit`` the audit log;
``metrics`` Prometheus; ``telemetry`` OpenTelemetry (imported only when on); ``tracestats``
summarises traces; ``governance`` applies per-key policies; ``config`` holds their settings.
"""
