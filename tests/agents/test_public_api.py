"""The public API: importable from the package root, and lazy (the root imports nothing)."""

from __future__ import annotations

import subprocess
import sys


def test_the_root_exports_the_agent_api_lazily() -> None:
    code = (
        "import sys, realtime_cascade as rc\n"
        "assert 'realtime_cascade.agents' not in sys.modules\n"
        "assert 'realtime_cascade.runtime' not in sys.modules\n"
        "from realtime_cascade import Agent, AgentConversation, Answer, Context, Tool, tool\n"
        "from realtime_cascade import run_conversation, TurnResult, Sentences\n"
        "assert set(rc.__all__) <= set(dir(rc)) | {n for n in rc.__all__ if hasattr(rc, n)}\n"
        "try:\n    rc.nothing_here\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "has no attribute 'nothing_here'" in out.stdout
