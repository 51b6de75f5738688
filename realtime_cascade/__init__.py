"""realtime_cascade: low-latency voice agents that cascade models mid-stream.

The public API (docs/agents.md)::

    from realtime_cascade import Agent, Context, tool

- :class:`Agent`: instructions + tools (typed functions, run server-side) + verifiers + hooks;
  serve it with ``realtime-cascade serve --agent package.module:agent``;
- :func:`tool` / :class:`Tool`: a tool from a function (its schema from the signature);
- :class:`Context`: what a tool, verifier or hook gets (the session's id and state);
- :class:`AgentConversation` / :func:`run_conversation` / :class:`TurnResult`: run an agent
  in-process in a test.

Imported lazily: ``import realtime_cascade`` stays cheap for everything that imports a room.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .agents import Agent, Context, Sentences, Tool, tool
    from .agents.testing import AgentConversation, TurnResult, run_conversation
    from .core import Answer

__all__ = [
    "Agent",
    "AgentConversation",
    "Answer",
    "Context",
    "Sentences",
    "Tool",
    "TurnResult",
    "run_conversation",
    "tool",
]

_WHERE = {
    "Agent": "agents",
    "Context": "agents",
    "Sentences": "agents",
    "Tool": "agents",
    "tool": "agents",
    "AgentConversation": "agents.testing",
    "TurnResult": "agents.testing",
    "run_conversation": "agents.testing",
    "Answer": "core",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'realtime_cascade' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
