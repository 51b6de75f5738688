"""The sim tiers served as an OpenAI-compatible HTTP endpoint, with fault injection.

So the real ``openai`` path (SDK, HTTP, SSE, error mapping) runs end to end offline, and can be
benchmarked and broken on purpose. A deliberately tiny HTTP/1.1 server on anyio streams (no new
dependency): keep-alive, ``Content-Length`` request bodies, chunked SSE responses.

    POST /v1/chat/completions   stream=true: SSE chunks in the OpenAI shape (logprobs,
                                top_logprobs, a usage chunk with stream_options.include_usage,
                                then ``data: [DONE]``); otherwise one completion JSON
    GET  /v1/models             the profiles, as models

``model`` picks a profile by name. Text and timing come from :func:`~.sim.schedule`, so a
client sees exactly what an in-process :class:`~.sim.SimProvider` would, token for token. A
stream keeps absolute time, as a model server generating on its own clock does: each token is
due at the stream's start plus its scheduled offset, so a late wake-up or a slow send makes
that token late, not every later one (``clock="relative"``, ``--clock relative``: one sleep per
gap after each send, lateness accumulating along the stream). A reply already begun is
continued: a final assistant message with ``continue_final_message`` (vLLM's assistant prefix)
or the system message of :func:`~.openai.continuation_instruction`.

Faults, per request (``"sim_fault"`` in the body, e.g. ``extra_body={"sim_fault": "status:429"}``)
or for every request (constructor / ``--fault``); several are joined with commas:

    status:N            answer HTTP N with an OpenAI-style error body (429 and 503 carry
                        Retry-After; 401 echoes the key it was sent, as some upstreams do)
    retry_after:S       the Retry-After seconds for status:429/503 (default 1)
    ttft_ms:N           the first token comes after N ms instead of the profile's draw
    stall_after:K       K tokens, then nothing, with the connection held open
    drop_after:K        K tokens, then the socket is reset (RST)
    eof_after:K         K tokens, then the socket is closed mid-body (FIN, no chunked end)
    malformed_after:K   K tokens, then a chunk that is not JSON
    error_after:K       K tokens, then an ``{"error": …}`` event
    keepalive[:MS]      only SSE comments (``: ping``) every MS ms (100), forever
    content_type        200 with an HTML body (a proxy's error page)
"""

from __future__ import annotations

from .faults import Fault, FaultError, parse_fault
from .server import (
    Clock,
    SimUpstream,
    StreamClock,
    default_profiles,
    resolve_script,
    serve_sim_upstream,
)
from .shapes import ChatRequest, ReceivedRequest, tier_request

__all__ = [
    "ChatRequest",
    "Clock",
    "Fault",
    "FaultError",
    "ReceivedRequest",
    "SimUpstream",
    "StreamClock",
    "default_profiles",
    "parse_fault",
    "resolve_script",
    "serve_sim_upstream",
    "tier_request",
]
