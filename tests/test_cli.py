"""The acceptance examples of `realtime-cascade ask`, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

HARD = (
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, "
    "and apply my voucher unless the fare goes up."
)


def ask(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realtime_cascade", "ask", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ask_json_easy_request_stays_on_the_first_tier() -> None:
    out = ask("--json", "Book a table for two at 7pm tonight.")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["escalated"] is False and result["final_tier"] == "light"
    assert result["handoff_ms"] is None and result["text"]
    assert {
        "text",
        "final_tier",
        "escalated",
        "reason",
        "decisions",
        "tiers",
        "cost_usd",
        "ttft_ms",
        "handoff_ms",
    } <= result.keys()
    assert [d["kind"] for d in result["decisions"]] == ["route", "accept"]


def test_ask_json_hard_request_escalates_midstream() -> None:
    out = ask("--json", HARD)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["escalated"] is True and result["final_tier"] == "strong"
    preempt = [d for d in result["decisions"] if d["kind"] == "preempt"]
    assert preempt and preempt[0]["reason"].startswith("confidence")
    assert result["handoff_ms"] is not None and result["handoff_ms"] > 0
    released_before = result["handoffs"][0]["released_before"]
    assert released_before and result["text"].startswith(released_before)
    assert len(result["tiers"]) == 2 and result["tiers"][0]["end_reason"] == "preempted"


def test_ask_streams_text_then_a_readable_trace() -> None:
    out = ask(HARD)
    assert out.returncode == 0, out.stderr
    assert "preempt" in out.stdout and "decisions:" in out.stdout and "attempts:" in out.stdout


def test_bad_config_is_a_clear_error(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "bad.toml"
    path.write_text('[profiles.default]\ntiers = [{ name = "a", price_in = "free" }]\n')
    out = ask("--config", str(path), "hi")
    assert out.returncode == 2
    assert "config error" in out.stderr and "price_in" in out.stderr
