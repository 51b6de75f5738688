"""Write your own agent: instructions, server-side tools, verifiers and hooks (docs/agents.md).

``Agent`` binds to a profile (``serve --agent pkg.mod:agent`` or ``agent = "…"`` in TOML);
``tool`` makes a tool of a typed function; ``testing.AgentConversation`` runs an agent
in-process, without a socket.
"""

from .agent import Agent, AgentVerifier, SessionAgent
from .loop import Sentences, ToolLoop
from .tools import Context, Tool, ToolError, ToolResult, tool

__all__ = [
    "Agent",
    "AgentVerifier",
    "Context",
    "Sentences",
    "SessionAgent",
    "Tool",
    "ToolError",
    "ToolLoop",
    "ToolResult",
    "tool",
]
