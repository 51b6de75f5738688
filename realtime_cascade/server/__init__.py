"""The WebSocket adapter: the Realtime-compatible server, its sessions and what guards them.

``app`` serves (websockets: handshake, keys, Origin, limits, static page, health, metrics);
``session`` drives one client's session; ``conversation``, ``settings`` and ``response`` are
its pure parts; ``voice_response`` speaks a response; ``admission`` matches keys and applies
per-key limits; ``ops`` builds the operational pieces (audit, metrics, telemetry) from config.
"""

from .app import RealtimeServer

__all__ = ["RealtimeServer"]
